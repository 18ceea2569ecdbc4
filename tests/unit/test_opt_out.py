"""Opt-outs on linked records: who is removed, from when, for which purpose, and the counts."""

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from schemas.transparency import load_transparency
from transforms.identity.link import load_linkage_rules
from transforms.identity.opt_out import apply_opt_outs

REPO = Path(__file__).resolve().parents[2]
RULES = load_linkage_rules(REPO / "data_contracts" / "linkage.yaml")
PURPOSE = load_transparency(REPO / "data_contracts" / "transparency.yaml").purpose.code
AS_OF = date(2026, 10, 31)


def linked() -> pl.DataFrame:
    """Three people: p-a in three departments (NHS, NI, name tokens), p-b in one, p-c in two."""
    return pl.DataFrame(
        {
            "department": ["adult_social_care", "council_tax", "benefits", "housing",
                           "council_tax", "benefits"],
            "row_number": [1, 1, 1, 1, 2, 2],
            "tok_nhs_number": ["nhs-a", None, None, None, None, None],
            "tok_ni_number": [None, None, "ni-a", None, None, "ni-c"],
            "tok_name_postcode": ["np-a", "np-a", "np-a", "np-b", "np-c", None],
            "person_key": ["p-a", "p-a", "p-a", "p-b", "p-c", "p-c"],
        }
    )


def register(*rows: dict) -> pl.DataFrame:
    base = {"tok_nhs_number": None, "tok_ni_number": None, "tok_name_postcode": None,
            "objection_date": AS_OF - timedelta(days=30), "scope": "all"}
    return pl.DataFrame(
        [{**base, **row, "row_number": i} for i, row in enumerate(rows, start=1)],
        schema={"row_number": pl.Int64, "tok_nhs_number": pl.String, "tok_ni_number": pl.String,
                "tok_name_postcode": pl.String, "objection_date": pl.Date, "scope": pl.String},
    )


def test_every_record_of_an_objector_goes_in_every_department():
    kept, counts = apply_opt_outs(linked(), register({"tok_nhs_number": "nhs-a"}), RULES,
                                  PURPOSE, AS_OF)
    assert sorted(kept["person_key"].unique()) == ["p-b", "p-c"]
    assert counts.records_removed_by_department == {
        "adult_social_care": 1, "benefits": 1, "council_tax": 1
    }
    assert (counts.objections_received, counts.objections_matched, counts.objections_applied) == (
        1, 1, 1
    )
    assert counts.residents_removed == 1 and counts.residents_matched_only_by_weaker_rule == 0
    assert counts.objections_matched_by_rule == {"nhs_number": 1}
    assert counts.to_dict()["records_removed"] == 3


@pytest.mark.parametrize(
    ("days_before", "applied"), [(1, True), (0, True), (-1, False)], ids=["before", "on", "after"]
)
def test_an_objection_applies_from_its_date(days_before, applied):
    dated = AS_OF - timedelta(days=days_before)
    kept, counts = apply_opt_outs(
        linked(), register({"tok_ni_number": "ni-c", "objection_date": dated}), RULES, PURPOSE,
        AS_OF,
    )
    assert ("p-c" not in kept["person_key"].to_list()) is applied
    assert counts.objections_received == 1 and counts.objections_matched == 1
    assert counts.objections_applied == int(applied)
    assert counts.objections_not_yet_applicable == int(not applied)


@pytest.mark.parametrize(
    ("scope", "applied"), [("all", True), (PURPOSE, True), ("research", False)]
)
def test_an_objection_applies_to_all_sharing_or_this_purpose(scope, applied):
    kept, counts = apply_opt_outs(
        linked(), register({"tok_ni_number": "ni-c", "scope": scope}), RULES, PURPOSE, AS_OF
    )
    assert ("p-c" not in kept["person_key"].to_list()) is applied
    assert counts.objections_other_purpose == int(not applied)


def test_a_match_by_a_weaker_rule_alone_removes_the_resident_and_is_counted():
    kept, counts = apply_opt_outs(linked(), register({"tok_name_postcode": "np-b"}), RULES,
                                  PURPOSE, AS_OF)
    assert "p-b" not in kept["person_key"].to_list()
    assert counts.residents_matched_only_by_weaker_rule == 1
    assert counts.objections_matched_by_rule == {"name_postcode": 1}


def test_unmatched_and_absent_registers_remove_nobody():
    records = linked()
    kept, counts = apply_opt_outs(records, register({"tok_nhs_number": "nobody"}), RULES,
                                  PURPOSE, AS_OF)
    assert kept.equals(records)
    assert counts.objections_applicable_unmatched == 1 and counts.records_removed == 0
    kept, counts = apply_opt_outs(records, None, RULES, PURPOSE, AS_OF)
    assert kept.equals(records) and counts.objections_received == 0


def test_counts_carry_no_token():
    _, counts = apply_opt_outs(linked(), register({"tok_nhs_number": "nhs-a"}), RULES, PURPOSE,
                               AS_OF)
    text = repr(counts.to_dict())
    assert not any(token in text for token in ("nhs-a", "np-a", "ni-a", "p-a"))
