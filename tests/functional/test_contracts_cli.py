"""`cohortshare contracts check|docs` and `cohortshare deliveries`, through the real CLI."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from flows.cli import main
from schemas.contract import load_contracts
from transforms.intake.registry import DeliveryRegistry
from transforms.intake.validate import receive_delivery

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "deliveries"


@pytest.fixture
def contracts(tmp_path) -> Path:
    folder = tmp_path / "repo" / "data_contracts"
    folder.mkdir(parents=True)
    for path in (REPO / "data_contracts").glob("*.odcs.yaml"):
        shutil.copy(path, folder / path.name)
    return folder


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_check_without_history_passes(contracts, capsys):
    assert main(["contracts", "check", "--contracts", str(contracts)]) == 0
    assert "no previous version in git" in capsys.readouterr().out


def test_check_reports_breaking_changes_against_git(contracts, capsys):
    repo = contracts.parent
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "contracts")
    housing = contracts / "housing.odcs.yaml"
    _edit(
        housing,
        "validValues: [Council, Housing association, Temporary accommodation, Private rented]",
        "validValues: [Council, Housing association]",
    )
    _edit(housing, "physicalName: tenure", "physicalName: tenure_type")
    _edit(
        housing,
        "{property: privacyRole, value: sensitive}",
        "{property: privacyRole, value: attribute}",
    )
    _edit(contracts / "benefits.odcs.yaml", "version: 1.0.0", "version: 1.1.0")
    code = main(["contracts", "check", "--contracts", str(contracts)])
    captured = capsys.readouterr()
    assert code == 4
    assert "housing.odcs.yaml: 1.0.0 -> 1.0.0, 3 breaking change(s)" in captured.out
    for change in [
        "column 'tenure': allowed values narrowed",
        "column 'tenure': header renamed from 'tenure' to 'tenure_type'",
        "column 'in_rent_arrears': privacy role changed from sensitive to attribute",
        "version not bumped",
    ]:
        assert change in captured.out
    assert "benefits.odcs.yaml: 1.0.0 -> 1.1.0, no breaking change" in captured.out
    assert captured.err.startswith("ContractError: 3 breaking change(s) against HEAD: ")
    assert captured.err.count("\n") == 1


def test_check_reports_every_invalid_contract(contracts, capsys):
    _edit(contracts / "housing.odcs.yaml", "value: quarantine", "value: ignore")
    _edit(contracts / "benefits.odcs.yaml", "logicalType: number", "logicalType: money")
    assert main(["contracts", "check", "--contracts", str(contracts)]) == 4
    err = capsys.readouterr().err
    assert err.startswith("ContractError: 2 problem(s) in data contracts: ")
    assert "housing.odcs.yaml" in err and "benefits.odcs.yaml" in err


def test_docs_render_a_page_per_contract(contracts, tmp_path, capsys):
    out = tmp_path / "pages"
    assert main(["contracts", "docs", "--contracts", str(contracts), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "adult_social_care.md",
        "benefits.md",
        "childrens_services.md",
        "council_tax.md",
        "housing.md",
        "index.md",
        "opt_out.md",  # the opt-out register has a contract page too
    ]
    page = (out / "adult_social_care.md").read_text(encoding="utf-8")
    assert "# Adult social care clients" in page
    assert '| **nhs_number** (`NHS Number`; also "NHS No", "NHS No.")' in page
    assert "replaced by a keyed token for linkage, then removed" in page
    assert "nhs mod11 check digit" in page
    assert "**support_not_before_birth**" in page


def test_deliveries_lists_the_registry_with_its_accounting(tmp_path, capsys):
    contract = load_contracts(REPO / "data_contracts")["adult_social_care"]
    today = dt.date(2026, 11, 2)
    outcome = receive_delivery(
        FIXTURES / "bad_postcode_20261030.csv", contract, tmp_path, today
    ).outcome
    DeliveryRegistry(tmp_path).record(outcome)
    assert main(["deliveries", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert outcome.delivery_id[:16] in out and "bad_postcode_20261030.csv" in out
    assert "quarantined: pattern:postcode x1" in out
    assert "1 deliveries: 40 rows received = 39 accepted + 1 quarantined" in out
    assert main(["deliveries", "--root", str(tmp_path), "--json"]) == 0
    assert '"rows_quarantined":1' in capsys.readouterr().out


def test_deliveries_check_rejects_in_one_line_with_exit_5(tmp_path, capsys):
    code = main(
        [
            "deliveries",
            "check",
            str(FIXTURES / "truncated_csv_20261030.csv"),
            "--department",
            "adult_social_care",
            "--today",
            "2026-11-02",
            "--root",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert code == 5
    assert err == (
        "DeliveryRejected: truncated_csv_20261030.csv: truncated: the last row is cut "
        "short (no final newline)\n"
    )
    assert not (tmp_path / "audit").exists()


def test_deliveries_check_accepts_counting_rows_and_writes_nothing(tmp_path, capsys):
    code = main([
        "deliveries", "check", str(FIXTURES / "bad_postcode_20261030.csv"),
        "--department", "adult_social_care", "--today", "2026-11-02", "--root", str(tmp_path),
    ])
    outcome = json.loads(capsys.readouterr().out)
    assert code == 0
    assert outcome["status"] == "accepted"
    assert outcome["rows_accepted"] + outcome["rows_quarantined"] == outcome["rows_received"]
    assert outcome["rows_quarantined"] > 0 and outcome["rows_accepted"] > 0
    assert list(tmp_path.iterdir()) == []
