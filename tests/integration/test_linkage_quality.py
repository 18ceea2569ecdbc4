"""Linkage quality on the synthetic council, which knows who is who.

The council is generated, every extract is read and validated by the pipeline's own ingest
(`inspect_delivery`), pseudonymised and linked; the person keys are then compared with the
generator's ground truth. Precision and recall are over pairs of records: a pair is a true link
when both records belong to one resident.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas.contract import departments, load_contracts
from tests.leaks import landing_identifiers
from transforms.identity.geography import load_geography
from transforms.identity.keys import PseudonymisationKey
from transforms.identity.link import link, load_linkage_rules
from transforms.identity.pseudonymise import pseudonymise
from transforms.identity.secure import write_tokens
from transforms.intake.ingest import extract_date_of

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "data_contracts"
RESIDENTS = 20_000
MIN_PRECISION = 0.99
MIN_RECALL = 0.97
DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}[-/]\d{2}[-/]\d{4}")
KEY = PseudonymisationKey(b"integration-test-key-0123456789ab", source="test")


def pairwise_quality(linked: pl.DataFrame, truth: pl.DataFrame) -> tuple[float, float, int]:
    """(precision, recall, true pairs) of person keys against residents."""
    joined = linked.join(truth, on=["department", "record_id"], how="inner")
    assert joined.height == linked.height, "every record must be in the ground truth"

    def pairs(*columns: str) -> int:
        sizes = joined.group_by(*columns).len().get_column("len")
        return int((sizes * (sizes - 1) // 2).sum())

    both, predicted, actual = (
        pairs("person_key", "resident_id"), pairs("person_key"), pairs("resident_id")
    )
    return both / max(predicted, 1), both / max(actual, 1), actual


def link_council(root: Path, noise: float, residents: int = RESIDENTS, seed: int = 7,
                 write_secure: bool = False):
    """Generate, ingest, pseudonymise and link a council; return linked records with their
    department record ids (for the truth join only), counts, and the pseudonymise counts."""
    from transforms.intake.validate import inspect_delivery
    from transforms.synthetic import generate_council

    generate_council(root, residents, seed=seed, noise=noise)
    contracts = departments(load_contracts(CONTRACTS))  # the opt-out register is not linked
    rules = load_linkage_rules(CONTRACTS / "linkage.yaml")
    geography = load_geography()
    frames, record_ids, pseudonymised = [], [], []
    for department, contract in contracts.items():
        for path in sorted((root / "landing" / department).glob(contract.file_pattern)):
            received, _ = inspect_delivery(path, contract, extract_date_of(path))
            assert received.outcome.status == "accepted", received.outcome.rejection
            record_ids.append(received.frame.select(
                pl.lit(department).alias("department"), "row_number", "record_id"))
            tokens, counts = pseudonymise(received.frame, contract, KEY, geography,
                                          received.outcome.extract_date, rules)
            if write_secure:
                write_tokens(root, received.outcome, tokens, KEY.key_id, counts.to_dict())
            frames.append(tokens)
            pseudonymised.append(counts)
    linked, counts = link(pl.concat(frames, how="diagonal_relaxed"), rules)
    with_ids = linked.join(pl.concat(record_ids), on=["department", "row_number"])
    return linked, with_ids, counts, pseudonymised


@pytest.fixture(scope="module")
def council(tmp_path_factory):
    root = tmp_path_factory.mktemp("council")
    linked, with_ids, counts, pseudonymised = link_council(root, 0.02, write_secure=True)
    truth = pl.read_parquet(root / "synthetic_truth" / "truth.parquet")
    return root, linked, with_ids, counts, pseudonymised, truth


def test_precision_and_recall_on_the_default_council(council):
    _, _, with_ids, _, _, truth = council
    precision, recall, true_pairs = pairwise_quality(with_ids, truth)
    assert true_pairs > 4000
    assert precision >= MIN_PRECISION, f"precision {precision:.4f}"
    assert recall >= MIN_RECALL, f"recall {recall:.4f}"


def test_linkage_counts_add_up_for_the_report(council):
    _, linked, _, counts, _, _ = council
    c = counts.to_dict()
    assert c["records"] == linked.height
    assert sum(c["records_linked_by_rule"].values()) + c["unmatched_records"] == c["records"]
    assert c["persons"] == linked["person_key"].n_unique()
    assert sum(c["records_by_department"].values()) == c["records"]
    assert len(c["department_pairs"]) == 10  # every pair of five departments
    for pair in c["department_pairs"].values():
        assert 0.0 <= pair["match_rate_a_in_b"] <= 1.0
    # Housing and council tax both hold each household's reference person: they overlap.
    assert c["department_pairs"]["council_tax|housing"]["match_rate_b_in_a"] > 0.8
    assert c["households"] > 0 and c["records_with_household"] > 0.9 * c["records"]


def _cells_and_words(texts) -> set[str]:
    """Every text, its compact upper-case form, and every word in it (for set lookups: a
    substring scan of 10^5 identifiers over megabytes of tokens would take minutes)."""
    found: set[str] = set()
    for text in texts:
        if text is None:
            continue
        text = str(text)
        found.add(text.strip())
        found.add("".join(text.split()).upper())
        found.update(w for w in re.split(r"[^0-9A-Za-z@.'-]+", text) if w)
    return found


def test_no_identifier_value_leaves_landing_and_quarantine(council):
    root, linked, _, counts, pseudonymised, _ = council
    # Dates of birth are checked by structure below: as bare values they coincide with the
    # kept attribute dates (a referral on someone's birthday), which may be stored.
    values = {v for v in landing_identifiers(root, CONTRACTS) if not DATE.fullmatch(v)}
    assert len(values) > 10_000  # the oracle sees the identifiers it looks for
    contracts = load_contracts(CONTRACTS)
    allowed = {"department", "row_number", "age", "lsoa", "sex", "ethnicity"}
    for path in sorted((root / "secure").rglob("*.parquet")):
        keep = {c.name for c in contracts[path.parent.name].columns if c.treatment == "keep"}
        for column in pq.read_schema(path).names:
            assert column.startswith("tok_") or column in allowed | keep, column
    texts: list = []
    for path in sorted((root / "secure").rglob("*.parquet")):
        table = pq.read_table(path)
        texts += [v for column in table.columns for v in column.cast(pa.string()).to_pylist()]
        texts += [m.decode() for pair in (table.schema.metadata or {}).items() for m in pair]
    texts += [v for column in linked.cast(pl.String).get_columns() for v in column.to_list()]
    texts += [json.dumps(counts.to_dict())] + [json.dumps(c.to_dict()) for c in pseudonymised]
    assert len(texts) > 100_000
    leaked = values & _cells_and_words(texts)
    assert not leaked, f"{len(leaked)} identifier values outside landing/ and quarantine/"
