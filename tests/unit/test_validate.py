"""Validation: the compiled GX suites, chunked runs, the registry, and what must never leak."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import re
import shutil
import threading
from pathlib import Path

import polars as pl
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from schemas.contract import load_contracts
from schemas.errors import DeliveryRejected
from transforms.intake import validate
from transforms.intake.registry import DeliveryRegistry
from transforms.intake.validate import (
    arrow_friendly_regex,
    compile_suite,
    receive_delivery,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "deliveries"
MANIFEST = yaml.safe_load((FIXTURES / "expected.yaml").read_text(encoding="utf-8"))
CONTRACTS = load_contracts(REPO / "data_contracts")
TODAY = dt.date(2026, 11, 2)
SENTINEL = "SENTINEL"


def _expectations(suite) -> set[tuple[str, str, str]]:
    return {
        (type(e).__name__, e.meta["rule"], e.meta["column"]) for e in suite.expectations
    }


def test_gx_logs_nothing_below_error_into_the_operators_log():
    validate._batch_definition()  # the ephemeral context: GX's modules are all loaded by now
    noisy = [
        name for name, logger in logging.root.manager.loggerDict.items()
        if name.startswith("great_expectations") and isinstance(logger, logging.Logger)
        and logger.getEffectiveLevel() < logging.ERROR
    ]
    assert noisy == []


def test_the_row_suite_covers_every_declared_rule():
    found = _expectations(compile_suite(CONTRACTS["adult_social_care"]))
    for expected in [
        ("ExpectColumnValuesToNotBeNull", "required", "forename"),
        ("ExpectColumnValuesToBeUnique", "unique", "record_id"),
        ("ExpectColumnValuesToBeInSet", "allowed_values", "sex"),
        ("ExpectColumnValuesToMatchRegex", "pattern", "postcode"),
        ("ExpectColumnValuesToBeInSet", "nhs_mod11", "nhs_number"),
        ("ExpectColumnValuesToBeInTypeList", "type", "date_of_birth"),
        ("ExpectColumnPairValuesAToBeGreaterThanB", "support_not_before_birth",
         "support_start_date"),
    ]:
        assert expected in found
    assert ("ExpectColumnValuesToBeInSet", "plausible_range", "date_of_birth") in found
    housing = _expectations(compile_suite(CONTRACTS["housing"]))
    assert ("ExpectColumnValuesToBeBetween", "range", "household_size") in housing
    assert ("ExpectColumnValuesToBeInSet", "hmrc_ni_prefix", "ni_number") in housing


def test_the_delivery_suite_holds_row_count_freshness_and_quarantine_limit():
    suite = validate.compile_delivery_suite(CONTRACTS["housing"])
    assert {e.meta["rule"] for e in suite.expectations} == {
        "row_count", "freshness", "quarantine_limit"
    }


@given(st.text(alphabet=st.sampled_from(list("0123 \t-ab\n9")), max_size=14))
def test_arrow_friendly_patterns_agree_with_python_on_ascii(value):
    for pattern in (r"^\s*\d{3}[\s-]?\d{3}[\s-]?\d{4}\s*$", r"^\d{1,12}$"):
        assert bool(re.search(pattern, value)) == bool(
            re.search(arrow_friendly_regex(pattern), value)
        )


@pytest.mark.parametrize("name", ["duplicate_ids_20261030.csv", "bad_postcode_20261030.csv"])
def test_small_chunks_give_the_same_outcome_as_one(name, tmp_path):
    contract = CONTRACTS["adult_social_care"]
    whole, _ = validate.inspect_delivery(FIXTURES / name, contract, TODAY)
    # Chunks of 12 rows put the duplicated ids (rows 12 and 13) in different chunks.
    chunked, _ = validate.inspect_delivery(FIXTURES / name, contract, TODAY, chunk_rows=12)
    assert chunked.outcome.quarantine_by_column == whole.outcome.quarantine_by_column
    assert chunked.frame.equals(whole.frame)


def test_receiving_twice_writes_one_quarantine_file(tmp_path):
    contract = CONTRACTS["adult_social_care"]
    path = FIXTURES / "allowed_values_20261030.csv"
    first = receive_delivery(path, contract, tmp_path, TODAY)
    second = receive_delivery(path, contract, tmp_path, TODAY)
    assert first.outcome.quarantine_file == second.outcome.quarantine_file
    assert len(list((tmp_path / "quarantine").rglob("*"))) == 2  # the folder and one file


def test_registry_records_atomically_and_answers_is_processed(tmp_path):
    contract = CONTRACTS["adult_social_care"]
    registry = DeliveryRegistry(tmp_path)
    accepted = receive_delivery(FIXTURES / "required_missing_20261030.csv", contract, tmp_path,
                                TODAY).outcome
    with pytest.raises(DeliveryRejected) as caught:
        receive_delivery(FIXTURES / "stale_extract_20260801.csv", contract, tmp_path, TODAY)
    rejected = caught.value.outcome
    threads = [threading.Thread(target=registry.record, args=(o,))
               for o in [accepted, rejected] * 5]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(registry.all()) == 10
    assert registry.is_processed(accepted.delivery_id)
    assert registry.is_processed(rejected.delivery_id, "1.0.0")
    assert not registry.is_processed(rejected.delivery_id, "1.1.0")
    assert not registry.is_processed("0" * 64)
    assert [p.name for p in (tmp_path / "audit").iterdir() if p.suffix == ".tmp"] == []


def test_no_cell_value_leaves_the_quarantine(tmp_path, caplog, capsys):
    """Sentinel values sit in failing cells of every fixture; after receiving them all and
    recording every outcome, they may appear in quarantine files and nowhere else."""
    caplog.set_level(logging.DEBUG)
    root = tmp_path / "root"
    registry = DeliveryRegistry(root)
    messages = []
    for case in MANIFEST["fixtures"]:
        contract = CONTRACTS[case["department"]]
        if "format" in case:
            contract = contract.model_copy(update={"format": case["format"]})
        landing = root / "landing" / case["department"]
        landing.mkdir(parents=True, exist_ok=True)
        path = shutil.copy(FIXTURES / case["file"], landing / case["file"])
        try:
            outcome = receive_delivery(Path(path), contract, root, TODAY).outcome
        except DeliveryRejected as exc:
            messages.append(str(exc))
            outcome = exc.outcome
        registry.record(outcome)
    shutil.rmtree(root / "landing")
    assert not any(SENTINEL in m for m in messages)
    outside = [p for p in root.rglob("*") if p.is_file() and "quarantine" not in p.parts]
    assert outside, "the registry at least must exist"
    for path in outside:
        assert SENTINEL.encode() not in path.read_bytes(), path
    inside = pl.concat(
        [pl.read_parquet(p).select(pl.all().cast(pl.String)) for p in
         (root / "quarantine").rglob("*.parquet")],
        how="diagonal",
    )
    assert inside.select(pl.any_horizontal(pl.all().str.contains(SENTINEL)).any()).item()
    captured = capsys.readouterr()
    assert SENTINEL not in captured.out + captured.err + caplog.text


def test_the_synthetic_council_is_accepted_and_every_row_accounted_for(tmp_path):
    from transforms.synthetic import DEFAULT_EXTRACT_DATE, generate_council

    summary = generate_council(tmp_path, residents=3000, seed=11)
    registry = DeliveryRegistry(tmp_path)
    for department, contract in CONTRACTS.items():
        path = next((tmp_path / "landing" / department).glob(contract.file_pattern))
        received = receive_delivery(path, contract, tmp_path, DEFAULT_EXTRACT_DATE,
                                    registry=registry)
        outcome = received.outcome
        registry.record(outcome)
        assert outcome.status == "accepted"
        # The opt-out register is received by the same intake; its rows are objections.
        expected = (
            summary.objections if contract.delivery_type == "opt_out" else summary.rows[department]
        )
        assert outcome.rows_received == expected
        assert outcome.rows_received == outcome.rows_accepted + outcome.rows_quarantined
        assert received.frame.height == outcome.rows_accepted
        assert outcome.dropped_columns == () and outcome.renamed_columns == {}
    assert len(registry.all()) == len(CONTRACTS)


def test_nhs_mod11_check_column():
    values = ["943 476 5919", "9434765918", "123", None, "401-023-2137", "4010232138"]
    checked = validate.ingest.nhs_mod11_valid(pl.Series(values))
    assert checked.to_list() == [True, False, None, None, True, False]


class Recording:
    """An `AcceptedRows` keeping what reaches it, and how often it was told to start again."""

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []
        self.restarts = 0

    def write(self, frame: pl.DataFrame) -> None:
        self.frames.append(frame)

    def restart(self) -> None:
        self.frames.clear()
        self.restarts += 1


@pytest.mark.parametrize(("name", "restarts"), [
    ("duplicate_ids_20261030.csv", 1),  # ids repeated in rows 12 and 13: known at the end
    ("bad_postcode_20261030.csv", 0),
])
def test_accepted_rows_leave_a_chunk_at_a_time(name, restarts):
    """Given `accepted_to`, no frame of the delivery is kept: its accepted rows leave chunk by
    chunk, and, when duplicates split across chunks are found at the end, once more without
    them. What arrives is exactly the rows accepted in one piece."""
    contract = CONTRACTS["adult_social_care"]
    whole, _ = validate.inspect_delivery(FIXTURES / name, contract, TODAY)
    recording, opened = Recording(), []

    def accepted_to(delivery_id, extract_date):
        opened.append((delivery_id, extract_date))
        return contextlib.nullcontext(recording)

    streamed, _ = validate.inspect_delivery(
        FIXTURES / name, contract, TODAY, chunk_rows=12, accepted_to=accepted_to
    )
    assert streamed.frame is None
    assert opened == [(whole.outcome.delivery_id, whole.outcome.extract_date)]
    assert recording.restarts == restarts
    assert max(frame.height for frame in recording.frames) <= 12
    assert pl.concat(recording.frames).equals(whole.frame)
    assert streamed.outcome.rows_accepted == whole.outcome.rows_accepted == whole.frame.height
    assert streamed.outcome.quarantine_by_column == whole.outcome.quarantine_by_column


def _token_files(root: Path) -> list[Path]:
    return sorted((root / "secure").rglob("*"))


def test_a_streamed_token_file_is_the_pseudonymised_accepted_rows(tmp_path):
    """The flow's way: tokens written as rows pass, in 12-row chunks with a late duplicate,
    equal the accepted rows pseudonymised in one piece; a rejected delivery leaves no file."""
    from transforms.identity import (
        load_geography,
        load_linkage_rules,
        pseudonymise,
        read_metadata,
        token_file,
    )
    from transforms.identity.keys import PseudonymisationKey

    contract = CONTRACTS["adult_social_care"]
    key = PseudonymisationKey(b"B" * 32, source="test")
    geography = load_geography()
    rules = load_linkage_rules(REPO / "data_contracts" / "linkage.yaml")

    def tokens_to(root: Path, name: str):
        return functools.partial(token_file, root, contract=contract, key=key,
                                 geography=geography, rules=rules, file_name=name)

    path = FIXTURES / "duplicate_ids_20261030.csv"
    received = receive_delivery(path, contract, tmp_path, TODAY, chunk_rows=12,
                                accepted_to=tokens_to(tmp_path, path.name))
    whole, _ = validate.inspect_delivery(path, contract, TODAY)
    expected, counts = pseudonymise(whole.frame, contract, key, geography,
                                    whole.outcome.extract_date, rules)
    [written] = [p for p in _token_files(tmp_path) if p.is_file()]
    assert pl.read_parquet(written).equals(expected)
    assert read_metadata(written)["pseudonymisation"] == counts.to_dict()
    assert received.outcome.rows_accepted == expected.height

    stale, other = FIXTURES / "stale_extract_20260801.csv", tmp_path / "other"
    with pytest.raises(DeliveryRejected):
        receive_delivery(stale, contract, other, TODAY, accepted_to=tokens_to(other, stale.name))
    assert [p for p in _token_files(other) if p.is_file()] == []


def test_rows_that_fail_where_they_are_sent_reject_the_delivery_counting_them(tmp_path):
    """A failure of what takes the accepted rows (pseudonymisation, say) rejects the delivery
    with its one-line reason, every row read so far held back as quarantined."""
    from transforms.intake.checks import failure

    contract = CONTRACTS["adult_social_care"]
    path = FIXTURES / "bad_postcode_20261030.csv"

    class Failing(Recording):
        def write(self, frame: pl.DataFrame) -> None:
            if self.frames:
                raise failure(path.name, "pseudonymisation", RuntimeError())
            super().write(frame)

    with pytest.raises(DeliveryRejected) as caught:
        receive_delivery(path, contract, tmp_path, TODAY, chunk_rows=12,
                         accepted_to=lambda *_: contextlib.nullcontext(Failing()))
    outcome = caught.value.outcome
    assert outcome.status == "rejected" and outcome.rejection_rule == "processing_failed"
    assert outcome.rejection.startswith(f"{path.name}: processing_failed: pseudonymisation failed")
    assert outcome.rows_received == outcome.rows_quarantined == 24  # two chunks read
    assert outcome.rows_accepted == 0
    assert not (tmp_path / "quarantine").exists()
