"""Every malformed extract in tests/fixtures/deliveries gets exactly its expected outcome.

Spec-style: `expected.yaml` is the specification; this file only replays it. Each fixture must
end with one outcome, every row accounted for (received = accepted + quarantined), and a
rejection must be one line naming file and rule, with no cell value (the files carry the
marker SENTINEL in the cells that fail) and no traceback.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import yaml

from schemas.contract import load_contracts
from schemas.errors import DeliveryRejected
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
    return contract


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
    assert len({case["kind"] for case in MANIFEST["fixtures"]}) >= 25


@pytest.mark.parametrize("case", MANIFEST["fixtures"], ids=lambda c: c["file"].rsplit("_", 1)[0])
def test_fixture_outcome(case, tmp_path):
    received, rejection = _receive(case, tmp_path)
    received_rows, accepted_rows, quarantined_rows = case["rows"]
    if case["status"] == "rejected":
        assert received is None, f"expected a rejection, got {received.outcome.status}"
        message = str(rejection)
        assert "\n" not in message and "Traceback" not in message
        assert message.startswith(f"{case['file']}: {case['rule']}: ")
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
