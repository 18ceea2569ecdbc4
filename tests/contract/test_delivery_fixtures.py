"""Every malformed extract in tests/fixtures/deliveries gets exactly its expected outcome.

Spec-style: `expected.yaml` is the specification; this file only replays it. Each fixture must
end with one outcome, every row accounted for (received = accepted + quarantined), and a
rejection must be one line naming file and rule, with no cell value (the files carry the
marker SENTINEL in the cells that fail) and no traceback. The `landing:` cases are made in a
landing folder at test time and must each be named, escaped, with their reason.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from pathlib import Path

import polars as pl
import pytest
import yaml

from schemas.contract import load_contracts
from schemas.errors import DeliveryRejected
from transforms.intake.landing import discover_deliveries
from transforms.intake.registry import DeliveryRegistry
from transforms.intake.validate import receive_delivery

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "deliveries"
MANIFEST = yaml.safe_load((FIXTURES / "expected.yaml").read_text(encoding="utf-8"))
TODAY = MANIFEST["today"]
CONTRACTS = load_contracts(REPO / "data_contracts")
SENTINEL = "SENTINEL"


def _contract(case: dict):
    contract = CONTRACTS[case["department"]]
    if "format" in case:
        contract = contract.model_copy(update={"format": case["format"]})
    overrides = dict(case.get("contract", {}))
    if "limits" in overrides:
        limits = contract.limits.model_dump(by_alias=True) | overrides.pop("limits")
        overrides["limits"] = type(contract.limits).model_validate(limits)
    return contract.model_copy(update=overrides) if overrides else contract


def _receive(case: dict, root: Path):
    path = FIXTURES / case["file"]
    contract = _contract(case)
    registry = DeliveryRegistry(root)
    if case.get("process_twice"):
        first = receive_delivery(path, contract, root, TODAY, registry=registry)
        registry.record(first.outcome)
    try:
        return receive_delivery(path, contract, root, TODAY, registry=registry), None
    except DeliveryRejected as exc:
        return None, exc


def test_the_battery_is_complete():
    files = {p.name for p in FIXTURES.iterdir()} - {"build.py", "expected.yaml"}
    assert files == {case["file"] for case in MANIFEST["fixtures"]}
    assert len({case["kind"] for case in MANIFEST["fixtures"]}) >= 57
    assert len({case["kind"] for case in MANIFEST["landing"]}) >= 10


@pytest.mark.parametrize("case", MANIFEST["fixtures"], ids=lambda c: c["file"].rsplit("_", 1)[0])
def test_fixture_outcome(case, tmp_path):
    received, rejection = _receive(case, tmp_path)
    received_rows, accepted_rows, quarantined_rows = case["rows"]
    if case["status"] == "rejected":
        assert received is None, f"expected a rejection, got {received.outcome.status}"
        message = str(rejection)
        assert "\n" not in message and "Traceback" not in message
        assert message.startswith(f"{case['file']}: {case['rule']}: ")
        assert case.get("says", "") in message
        assert SENTINEL not in message
        assert rejection.exit_code == 5
        outcome = rejection.outcome
        assert outcome.status == "rejected" and outcome.rejection_rule == case["rule"]
    else:
        assert rejection is None, str(rejection)
        outcome = received.outcome
        assert outcome.status == "accepted"
        assert received.frame.height == accepted_rows
        assert received.frame.columns == ["row_number", *(c.name for c in _contract(case).columns)]
        assert received.frame["row_number"].dtype == pl.Int64
        assert outcome.quarantine_by_column == case.get("quarantine", {})
        assert list(outcome.dropped_columns) == case.get("dropped", [])
        assert outcome.renamed_columns == case.get("renamed", {})
        assert list(outcome.missing_optional_columns) == case.get("missing_optional", [])
        assert outcome.neutralised_cells == case.get("neutralised_cells", 0)
    assert (outcome.rows_received, outcome.rows_accepted, outcome.rows_quarantined) == (
        received_rows, accepted_rows, quarantined_rows
    )
    assert outcome.rows_received == outcome.rows_accepted + outcome.rows_quarantined
    assert SENTINEL not in outcome.model_dump_json()


def test_quarantine_file_names_row_rule_and_column(tmp_path):
    case = next(c for c in MANIFEST["fixtures"] if c["file"].startswith("duplicate_ids"))
    received, _ = _receive(case, tmp_path)
    quarantine = pl.read_parquet(tmp_path / received.outcome.quarantine_file)
    assert quarantine.select("row_number", "rule", "column").rows() == [
        (12, "unique", "record_id"), (13, "unique", "record_id")
    ]
    assert str(tmp_path / received.outcome.quarantine_file).startswith(
        str(tmp_path / "quarantine" / "adult_social_care")
    )


def test_a_changed_file_is_a_new_delivery(tmp_path):
    source = FIXTURES / "allowed_values_20261030.csv"
    registry = DeliveryRegistry(tmp_path)
    contract = CONTRACTS["adult_social_care"]
    first = receive_delivery(source, contract, tmp_path, TODAY, registry=registry)
    registry.record(first.outcome)
    changed = tmp_path / source.name
    changed.write_bytes(source.read_bytes().replace(b"SENTINEL-unknown", b"Female"))
    second = receive_delivery(changed, contract, tmp_path, TODAY, registry=registry)
    assert second.outcome.delivery_id != first.outcome.delivery_id
    assert second.outcome.rows_quarantined == 0


def test_today_is_a_date():
    assert isinstance(TODAY, dt.date)


# --- what a landing folder holds besides extracts ---------------------------------------------


def _make(landing: Path, case: dict, outside: Path) -> None:
    path = landing / case["path"]
    path.parent.mkdir(parents=True, exist_ok=True)
    valid = FIXTURES / "required_missing_20261030.csv"
    make = case["make"]
    if make in ("file", "unreadable"):
        shutil.copy(valid, path)
        if make == "unreadable":
            path.chmod(0)
    elif make == "fifo":
        os.mkfifo(path)
    elif make == "dir":
        path.mkdir()
    elif make == "dangling_link":
        path.symlink_to(landing / "gone.csv")
    elif make == "outside_link":
        path.symlink_to(outside)


def _discover_as_nobody(root: Path) -> dict[str, str]:
    """Discovery run by an unprivileged user: root reads any file, so only an ordinary user
    can meet a file it may not read. Forked (no exec: the interpreter may sit in a folder
    such a user cannot enter), privileges dropped in the child only."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.close(read)
        try:
            os.setgid(65534)
            os.setuid(65534)
            found = discover_deliveries(root, CONTRACTS).not_ingested
            os.write(write, json.dumps({i.path: i.reason for i in found}).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(child, 0)
    return json.loads(data)


@pytest.fixture(scope="module")
def landing_root():
    # Not under pytest's tmp_path: an unprivileged user must be able to walk into it.
    root = Path(tempfile.mkdtemp(prefix="cohortshare-landing-"))
    root.chmod(0o755)
    outside = root / "elsewhere.csv"
    shutil.copy(FIXTURES / "required_missing_20261030.csv", outside)
    for case in MANIFEST["landing"]:
        _make(root / "landing", case, outside)
    yield root
    for path in (root / "landing").rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(root)


def test_everything_in_landing_is_ingested_or_named_with_its_reason(landing_root):
    found = discover_deliveries(landing_root, CONTRACTS)
    reasons = {item.path: item.reason for item in found.not_ingested}
    if os.geteuid() == 0:
        reasons.update(_discover_as_nobody(landing_root))
    ingested = {path.name for _, path in found.deliveries}
    for case in MANIFEST["landing"]:
        if case["reason"] == "ingested":
            assert Path(case["path"]).name in ingested, case["kind"]
        else:
            assert reasons.get(case["shows"]) == case["reason"], case["kind"]
    named = [item.path for item in found.not_ingested]
    assert not any(c in "".join(named) for c in "\n\r\x1b\x07")
    # Root reads any file, so the locked one is a delivery for root and for no one else.
    readable = {"evil\n\x1b]0;title\x07_20261030.csv"} | (
        {"locked_20261030.csv"} if os.geteuid() == 0 else set()
    )
    assert ingested == readable


def test_a_hostile_name_reaches_no_message_unescaped(landing_root, tmp_path):
    [case] = [c for c in MANIFEST["landing"] if c["reason"] == "ingested"]
    path = landing_root / "landing" / case["path"]
    contract = CONTRACTS["adult_social_care"]
    received = receive_delivery(path, contract, tmp_path, TODAY, landing=landing_root / "landing")
    assert received.outcome.file_name == case["shows"]
    stale = contract.model_copy(update={"max_latency_days": 0})
    with pytest.raises(DeliveryRejected) as caught:
        receive_delivery(path, stale, tmp_path, TODAY)
    assert str(caught.value).startswith(f"{case['shows']}: freshness: ")
    assert not any(c in str(caught.value) for c in "\n\x1b\x07")


def test_a_link_out_of_landing_is_refused_even_if_offered_directly(landing_root, tmp_path):
    path = landing_root / "landing" / "adult_social_care" / "escape_20261030.csv"
    with pytest.raises(DeliveryRejected) as caught:
        receive_delivery(path, CONTRACTS["adult_social_care"], tmp_path, TODAY,
                         landing=landing_root / "landing")
    assert caught.value.outcome.rejection_rule == "outside_landing"
    fifo = landing_root / "landing" / "adult_social_care" / "pipe_20261030.csv"
    with pytest.raises(DeliveryRejected) as caught:  # must not block on the pipe
        receive_delivery(fifo, CONTRACTS["adult_social_care"], tmp_path, TODAY)
    assert caught.value.outcome.rejection_rule == "not_a_file"
