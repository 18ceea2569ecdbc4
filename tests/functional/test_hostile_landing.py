"""No delivery can stop the run: one data root holds hostile and broken files beside valid
extracts of every department, and one real run (CLI, Prefect flow) stages a release in which
each bad delivery is rejected or quarantined under its own rule, everything not ingested is
named (escaped) with why, and the other departments carry on."""

import json
import os
import re
import shutil
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "deliveries"
TODAY = f"{date.today():%Y%m%d}"


def _contracts_without_benefits_birth_range(target: Path) -> Path:
    """The shipped contracts, but benefits declares no plausible range for dates of birth: a
    date millions of years out then reaches pseudonymisation, where Polars panics."""
    shutil.copytree(REPO / "data_contracts", target)
    contract = target / "benefits.odcs.yaml"
    text = contract.read_text(encoding="utf-8")
    contract.write_text(
        "\n".join(line for line in text.splitlines() if "plausibleRange" not in line) + "\n",
        encoding="utf-8",
    )
    return target


def _hostile_landing(root: Path) -> None:
    landing = root / "landing"
    children = landing / "childrens_services"
    for valid in children.iterdir():
        valid.unlink()  # the only children's extract is the hostile one
    shutil.copy(FIXTURES / "xlsx_used_range_to_last_cell_20261030.xlsx",
                children / f"children_used_range_{TODAY}.xlsx")
    shutil.copy(FIXTURES / "parquet_birth_in_year_5_million_20261030.parquet",
                landing / "benefits" / f"benefits_far_birth_{TODAY}.parquet")
    asc = landing / "adult_social_care"
    os.mkfifo(asc / f"pipe_{TODAY}.csv")
    (asc / f"folder_{TODAY}.csv").mkdir()
    (asc / f"dangling_{TODAY}.csv").symlink_to(landing / "gone.csv")
    shutil.copy(FIXTURES / "required_missing_20261030.csv", root / "outside.csv")
    (asc / f"escape_{TODAY}.csv").symlink_to(root / "outside.csv")
    (asc / "notes\n2026-11-02 INFO forged\x1b[2J.txt").write_text("x", encoding="utf-8")
    (landing / "parks").mkdir()
    (landing / "parks" / f"parks_{TODAY}.csv").write_text("a\n1\n", encoding="utf-8")


def test_hostile_files_stop_no_department(prefect_harness, tmp_path, demo_home, capsys):
    from flows.cli import main
    from transforms.synthetic import generate_council

    root = tmp_path / "root"
    generate_council(root, 1500, seed=13, extract_date=date.today())
    _hostile_landing(root)
    contracts = _contracts_without_benefits_birth_range(tmp_path / "contracts")

    code = main(["run", "--root", str(root), "--contracts", str(contracts), "--demo"])

    out, err = capsys.readouterr()
    assert code == 0, err
    [report_path] = (root / "reports").glob("*/anonymisation_report.json")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    outcomes = {d["file_name"]: d for d in report["deliveries"]}
    hostile = f"children_used_range_{TODAY}.xlsx"
    assert outcomes[hostile]["status"] == "rejected"
    assert outcomes[hostile]["rejection"].startswith(f"{hostile}: resource_limit: ")
    panicked = f"benefits_far_birth_{TODAY}.parquet"
    assert outcomes[panicked]["status"] == "rejected"
    assert outcomes[panicked]["rejection"].startswith(f"{panicked}: processing_failed: ")
    assert "PanicException" in outcomes[panicked]["rejection"]
    accepted = {d["department"] for d in report["deliveries"] if d["status"] == "accepted"}
    assert accepted == {"adult_social_care", "benefits", "council_tax", "housing"}
    assert report["accounting"]["balanced"] is True

    not_ingested = {item["path"]: item["reason"] for item in report["not_ingested"]}
    assert not_ingested == {
        "parks/": "no data contract for this folder",
        f"adult_social_care/pipe_{TODAY}.csv": "a named pipe, not a regular file",
        f"adult_social_care/folder_{TODAY}.csv": "a directory, not a file",
        f"adult_social_care/dangling_{TODAY}.csv": "a link to a file that does not exist",
        f"adult_social_care/escape_{TODAY}.csv": "a link to a file outside landing/",
        "adult_social_care/notes\\n2026-11-02 INFO forged\\x1b[2J.txt":
            "matches no file pattern of the contract ('*.csv')",
    }
    for path, reason in not_ingested.items():
        assert f"not ingested: landing/{path}: {reason}" in out
    # Nothing a file name holds can forge a line or reach the terminal as a control code.
    assert "\x1b" not in out + err
    assert not re.search(r"^2026-11-02 INFO forged", out + err, re.MULTILINE)
