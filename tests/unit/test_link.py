"""Linkage on hand-made token frames: transitivity, conflicts, stable keys, quality counts."""

from pathlib import Path

import polars as pl
import pytest

from schemas.errors import LinkageError
from transforms.identity.link import LinkageRules, link, load_linkage_rules

REPO = Path(__file__).resolve().parents[2]

RULES = LinkageRules.model_validate(
    {
        "rules": [
            {"name": "nhs", "fields": [{"identifier": "nhs_number"}]},
            {"name": "ni", "fields": [{"identifier": "ni_number"}]},
            {"name": "demo", "fields": [{"identifier": "surname"},
                                        {"identifier": "date_of_birth"}]},
        ],
        "household": {"name": "household", "fields": [{"identifier": "uprn"}]},
        "conflicts": {"unique_per_person": ["nhs", "ni"]},
    }
)


def frame(rows: list[tuple]) -> pl.DataFrame:
    """rows: (department, nhs, ni, demo, uprn); tokens are short stand-ins."""
    return pl.DataFrame(
        rows,
        schema={"department": pl.String, "tok_nhs": pl.String, "tok_ni": pl.String,
                "tok_demo": pl.String, "tok_household": pl.String},
        orient="row",
    ).with_row_index("row_number").with_columns(pl.col("row_number").cast(pl.Int64))


def people(linked: pl.DataFrame) -> list[set[int]]:
    groups = linked.group_by("person_key").agg(pl.col("row_number"))
    return sorted((set(g) for g in groups["row_number"].to_list()), key=min)


def test_the_shipped_rules_load():
    rules = load_linkage_rules(REPO / "data_contracts" / "linkage.yaml")
    assert [r.name for r in rules.rules][:2] == ["nhs_number", "ni_number"]
    assert rules.household is not None and rules.conflicts.unique_per_person


def test_invalid_rules_report_every_problem(tmp_path):
    path = tmp_path / "linkage.yaml"
    path.write_text(
        "rules:\n  - name: a\n    fields: [{identifier: shoe_size}]\n"
        "  - name: b\n    fields: [{identifier: surname, part: sector}]\n"
        "conflicts: {unique_per_person: [zz]}\n"
    )
    with pytest.raises(LinkageError) as caught:
        load_linkage_rules(path)
    message = str(caught.value)
    assert "problem(s)" in message and "rules.0" in message and "rules.1" in message


def test_links_are_transitive_across_rules():
    tokens = frame([
        ("asc", "N1", None, "D1", None),  # 0
        ("hsg", None, "I1", "D1", "U1"),  # 1: same person as 0 via demo
        ("ben", None, "I1", None, None),  # 2: same as 1 via NI
        ("ctx", None, None, "D9", "U1"),  # 3: someone else at the same address
    ])
    linked, counts = link(tokens, RULES)
    assert people(linked) == [{0, 1, 2}, {3}]
    assert linked["household_key"].null_count() == 0  # 0 and 2 take their person's UPRN
    assert linked["household_key"].n_unique() == 1
    c = counts.to_dict()
    assert c["records"] == 4 and c["persons"] == 2 and c["unmatched_records"] == 1
    assert c["records_linked_by_rule"] == {"nhs": 0, "ni": 2, "demo": 1}
    assert sum(c["records_linked_by_rule"].values()) + c["unmatched_records"] == c["records"]
    assert c["department_pairs"]["asc|hsg"]["match_rate_a_in_b"] == 1.0
    assert c["department_pairs"]["ctx|hsg"]["persons_in_both"] == 0


def test_two_nhs_numbers_joined_by_a_weaker_rule_is_a_counted_conflict():
    tokens = frame([
        ("asc", "N1", None, "D1", None),
        ("csc", "N2", None, "D1", None),  # same surname and DOB, different NHS number: twins?
        ("hsg", None, None, "D1", None),  # ambiguous: could be either
        ("ben", "N1", None, None, None),
    ])
    linked, counts = link(tokens, RULES)
    assert people(linked) == [{0, 3}, {1}, {2}]
    assert counts.conflicts_by_rule["demo"] == 1
    assert counts.conflicts_by_identifier == {"nhs": 1}
    assert counts.records_in_conflict_by_rule["demo"] == 3
    assert counts.to_dict()["conflicts"] == 1


def test_only_the_ambiguous_group_is_refused_and_a_clean_group_in_the_same_rule_links():
    # D1 spans two people (NHS N1, and N2): refused as a whole. D2 spans N1's person and a
    # record without an NHS number: clean, so it links, though both groups are the same rule's.
    tokens = frame([
        ("asc", "N1", None, "D1", None),  # 0
        ("csc", "N2", None, "D1", None),  # 1
        ("ben", "N1", None, "D1", None),  # 2: one person with 0 (NHS)
        ("hsg", None, None, "D2", None),  # 3
        ("ctx", "N1", None, "D2", None),  # 4: one person with 0 and 2 (NHS)
    ])
    linked, counts = link(tokens, RULES)
    assert people(linked) == [{0, 2, 3, 4}, {1}]
    assert counts.conflicts_by_rule["demo"] == 1
    assert counts.records_in_conflict_by_rule["demo"] == 3


def test_department_pairs_count_records_matched_in_the_other_department():
    tokens = frame([
        ("asc", "N1", None, None, None),
        ("asc", "N2", None, None, None),
        ("ben", "N1", None, None, None),
        ("ben", "N1", None, None, None),
        ("ben", "N3", None, None, None),
        ("ctx", "N3", None, None, None),
    ])
    pairs = link(tokens, RULES)[1].to_dict()["department_pairs"]
    assert pairs["asc|ben"] == {
        "records_a": 2, "records_b": 3, "a_records_matched_in_b": 1,
        "b_records_matched_in_a": 2, "match_rate_a_in_b": 0.5,
        "match_rate_b_in_a": 0.6667, "persons_in_both": 1,
    }
    assert pairs["ben|ctx"]["a_records_matched_in_b"] == 1
    assert pairs["ben|ctx"]["b_records_matched_in_a"] == 1
    assert pairs["asc|ctx"]["persons_in_both"] == 0


def test_chains_of_clean_groups_that_join_two_nhs_numbers_are_refused():
    tokens = frame([
        ("asc", "N1", None, "D1", None),
        ("hsg", None, "I1", "D1", None),
        ("ben", None, "I1", "D2", None),
        ("csc", "N2", None, "D2", None),
    ])
    linked, counts = link(tokens, RULES)
    keys = linked["person_key"].to_list()
    assert keys[0] != keys[3]
    assert counts.conflicts == 1


def test_a_stronger_rule_overrides_a_weaker_identifier():
    # Same NHS number, different NI numbers (a keying error): NHS is trusted, one person.
    # Another resident holding one of each, on two records, is not counted as conflicting.
    tokens = frame([
        ("asc", "N1", "I1", None, None),
        ("ben", "N1", "I2", None, None),
        ("asc", "N2", "I3", None, None),
        ("ben", "N2", "I3", None, None),
    ])
    linked, counts = link(tokens, RULES)
    assert linked["person_key"].n_unique() == 2
    assert counts.conflicts == 0 and counts.persons_with_conflicting_identifiers == 1


def test_a_person_already_holding_two_values_is_joined_unless_a_third_comes_in():
    # 0 and 1: one person by NHS, holding NI numbers I1 and I2. A weaker rule bringing in a
    # record with no NI number, or with one of those two, gains no value: it links. One
    # bringing in a third NI number is a conflict, refused.
    tokens = frame([
        ("asc", "N1", "I1", "D1", None),  # 0
        ("ben", "N1", "I2", None, None),  # 1
        ("hsg", None, None, "D1", None),  # 2: no NI number
        ("ctx", None, "I2", "D1", None),  # 3: I2 (also joined to 1 by NI)
    ])
    linked, counts = link(tokens, RULES)
    assert people(linked) == [{0, 1, 2, 3}]
    assert counts.conflicts == 0 and counts.persons_with_conflicting_identifiers == 1
    tokens = frame([
        ("asc", "N1", "I1", "D1", None),  # 0
        ("ben", "N1", "I2", None, None),  # 1
        ("hsg", None, "I3", "D1", None),  # 2: a third NI number
    ])
    linked, counts = link(tokens, RULES)
    assert people(linked) == [{0, 1}, {2}]
    assert counts.conflicts_by_identifier == {"ni": 1}


def test_person_keys_do_not_depend_on_row_order():
    tokens = frame([
        ("asc", "N1", None, "D1", "U1"),
        ("hsg", None, "I1", "D1", None),
        ("ben", None, "I1", None, "U2"),
        ("ctx", None, None, None, None),
    ])
    linked, _ = link(tokens, RULES)
    shuffled, _ = link(tokens.reverse(), RULES)
    key = ["department", "row_number", "person_key", "household_key"]
    assert linked.select(key).sort("row_number").equals(shuffled.select(key).sort("row_number"))
    assert all(k.startswith("p-") for k in linked["person_key"])


def test_missing_token_columns_mean_no_links_and_missing_columns_are_refused():
    tokens = frame([("asc", None, None, None, None)] * 2).drop("tok_ni")
    linked, counts = link(tokens, RULES)
    assert linked["person_key"].n_unique() == 2 and counts.unmatched_records == 2
    with pytest.raises(LinkageError):
        link(tokens.drop("department"), RULES)


def test_a_veto_stops_a_rule_joining_records_whose_birth_dates_differ():
    rules = LinkageRules.model_validate(
        {
            "rules": [{"name": "name_postcode", "fields": [{"identifier": "surname"},
                                                          {"identifier": "postcode"}],
                       "vetoed_by": ["date_of_birth"]}],
        }
    )
    assert rules.token_columns() == ["tok_name_postcode", "tok_veto_date_of_birth"]
    tokens = pl.DataFrame(
        {
            "department": ["asc", "hsg", "ctx", "ben"],
            "tok_name_postcode": ["A", "A", "B", "B"],
            # father and son of one name at one address; the other pair lacks one birth date
            "tok_veto_date_of_birth": ["D1", "D2", "D3", None],
            "row_number": [0, 1, 2, 3],
        }
    )
    linked, counts = link(tokens, rules)
    assert people(linked) == [{0}, {1}, {2, 3}]
    assert counts.conflicts_by_identifier == {"date_of_birth": 1}


def test_a_record_without_a_household_takes_its_persons_most_frequent_then_smallest():
    tokens = frame([
        ("asc", "N1", None, None, "U2"),  # 0  person A moved: U2 twice, U1 once
        ("hsg", "N1", None, None, "U1"),  # 1
        ("ben", "N1", None, None, "U2"),  # 2
        ("ctx", "N1", None, None, None),  # 3  takes U2, A's most frequent
        ("asc", "N2", None, None, "U4"),  # 4  person B: U3 and U4 once each
        ("hsg", "N2", None, None, "U3"),  # 5
        ("ben", "N2", None, None, None),  # 6  takes U3, the smaller of the tie
        ("ctx", "N3", None, None, None),  # 7  person C holds no household token
    ])
    linked, counts = link(tokens, RULES)
    key = dict(zip(linked["row_number"], linked["household_key"], strict=True))
    assert key[3] == key[0] == key[2] != key[1]  # own tokens kept, the gap filled with U2
    assert key[6] == key[5] != key[4]
    assert key[7] is None
    assert counts.households == 4 and counts.records_with_household == 7
