"""Hierarchies: tables and rules load into one validated form; bad ones fail clearly."""

from pathlib import Path

import polars as pl
import pytest

from schemas.errors import HierarchyError
from transforms.disclosure.hierarchy import (
    encode_frame,
    from_table,
    load_hierarchies,
    load_hierarchy,
)

CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts" / "hierarchies"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_table_loads_with_levels_and_leaf_counts(tmp_path):
    h = load_hierarchy(write(tmp_path, "edu.csv", "a;low;*\nb;low;*\nc;high;*\n"))
    assert h.height == 3
    assert h.domain_size == 3
    assert list(h.values) == ["a", "b", "c"]
    assert h.table()[1] == ["b", "low", "*"]
    low = list(h.labels[1]).index("low")
    assert h.leaf_counts[1][low] == 2
    assert h.leaf_counts[2].tolist() == [3]


def test_uneven_rows_are_rejected_with_line(tmp_path):
    with pytest.raises(HierarchyError, match=r"edu\.csv.*line 2"):
        load_hierarchy(write(tmp_path, "edu.csv", "a;low;*\nb;*\n"))


def test_inconsistent_parents_and_duplicates_are_all_reported(tmp_path):
    text = "a;low;*\na;low;*\nb;low;X\nc;high;*\n"
    with pytest.raises(HierarchyError) as err:
        load_hierarchy(write(tmp_path, "edu.csv", text))
    message = str(err.value)
    assert "more than once" in message
    assert "level 1 label 'low'" in message


def test_empty_cell_is_rejected(tmp_path):
    with pytest.raises(HierarchyError, match="empty level"):
        load_hierarchy(write(tmp_path, "edu.csv", "a;;*\n"))


def test_age_rules_expand_to_bands():
    h = load_hierarchy(CONTRACTS / "age.yaml")
    assert h.height == 5
    row = h.table()[h.values.tolist().index("37")]
    assert row == ["37", "35-39", "30-39", "20-39", "*"]


def test_interval_widths_must_nest(tmp_path):
    text = "type: intervals\nmin: 0\nmax: 20\nlevels: [5, 7, '*']\n"
    with pytest.raises(HierarchyError, match="multiple"):
        load_hierarchy(write(tmp_path, "age.yaml", text))


def test_unknown_rule_type(tmp_path):
    with pytest.raises(HierarchyError, match="unknown rule type"):
        load_hierarchy(write(tmp_path, "x.yaml", "type: magic\n"))


def test_postcode_rules_cover_the_data_values(tmp_path):
    h = load_hierarchy(
        write(tmp_path, "postcode.yaml", "type: postcode\nlevels: [sector, district, area, '*']\n")
    )
    assert h.is_open
    covered = h.covering(["SW1A 1AA", "SW1A 2AB", "M1 1AE"])
    assert covered.table()[1][:4] == ["SW1A 1AA", "SW1A 1", "SW1A", "SW"]
    with pytest.raises(HierarchyError, match="1 values are not UK postcodes") as err:
        h.covering(["NOT A POSTCODE"])
    assert "NOT A POSTCODE" not in str(err.value)


def test_date_rules(tmp_path):
    h = load_hierarchy(write(tmp_path, "d.yaml", "type: date\nlevels: [month, year, '*']\n"))
    assert h.covering(["2024-03-09"]).table() == [["2024-03-09", "2024-03", "2024", "*"]]


def test_contract_hierarchies_load():
    hs = load_hierarchies(CONTRACTS, ["age", "sex", "ethnicity"])
    ethnicity = hs["ethnicity"]
    assert {
        f"{g}{i}" for g, n in zip("ABMW", (5, 3, 4, 5), strict=True) for i in range(1, n + 1)
    } <= set(ethnicity.values)
    assert {"Asian", "Black", "Mixed", "White", "Other"} <= set(ethnicity.labels[1])
    assert ethnicity.labels[-1].tolist() == ["*"]


def test_missing_hierarchy_is_named(tmp_path):
    write(tmp_path, "sex.csv", "F;*\nM;*\n")
    with pytest.raises(HierarchyError, match="'age'"):
        load_hierarchies(tmp_path, ["sex", "age"])


def test_uncovered_values_are_counted_never_shown():
    h = from_table("sex", "sex.csv", [["F", "*"], ["M", "*"]])
    frame = pl.DataFrame({"sex": ["F", "Secret", "Secret2", "M"]})
    with pytest.raises(HierarchyError) as err:
        encode_frame(frame, ["sex"], [h])
    assert "2 values of column 'sex' are not covered by hierarchy sex.csv" in str(err.value)
    assert "Secret" not in str(err.value)


def test_integer_columns_match_integer_leaves():
    h = from_table("age", "age.csv", [[str(i), "*"] for i in range(10, 20)])
    codes = encode_frame(pl.DataFrame({"age": [10, 19, 15]}), ["age"], [h])
    assert codes["age"].to_list() == [0, 9, 5]
    with pytest.raises(HierarchyError, match="1 values"):
        encode_frame(pl.DataFrame({"age": [10, 99]}), ["age"], [h])


def test_interval_rules_can_declare_an_unknown_category(tmp_path):
    (tmp_path / "age.yaml").write_text(
        "type: intervals\nmin: 0\nmax: 9\nunknown: unknown\nlevels: [{width: 5}, '*']\n"
    )
    hierarchy = load_hierarchies(tmp_path)["age"]
    assert hierarchy.table()[-1] == ["unknown", "unknown", "*"]
    assert hierarchy.domain_size == 11
