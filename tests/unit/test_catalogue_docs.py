"""The catalogue's descriptions and data dictionary come from the declarative inputs and cover
every published table, column and code."""

from pathlib import Path

import pytest

from transforms.disclosure.hierarchy import load_hierarchies
from transforms.release.catalogue_docs import describe_release, table_definitions

CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"
COHORTS = table_definitions(CONTRACTS / "cohorts.yaml")


@pytest.fixture(scope="module")
def described():
    tables = {
        name: ["release_id", *t["dimensions"], t["unit"], "withheld"] for name, t in COHORTS.items()
    }
    levels = {name: {"age": 3, "lsoa": 1} for name in COHORTS}
    return describe_release(CONTRACTS, tables, levels)


def test_every_cohort_table_is_described_from_cohorts_yaml(described):
    for name, table in COHORTS.items():
        comment = described["tables"][name]["comment"]
        assert comment.startswith(table["title"]) and table["description"] in comment


def test_every_column_has_its_own_description(described):
    for name, table in COHORTS.items():
        columns = described["tables"][name]["columns"]
        assert set(columns) == {"release_id", *table["dimensions"], table["unit"], "withheld"}
        for column in table["dimensions"]:
            # Not a placeholder: from a contract, or the pipeline's own words for what it derives.
            assert not columns[column].startswith("Dimension"), column
            assert f"column_name = '{column}'" in columns[column]


def test_contract_descriptions_are_used_where_a_contract_has_the_column(described):
    sex = described["tables"]["cohort_people_by_department_area"]["columns"]["sex"]
    assert sex.startswith("Sex as recorded")  # data_contracts/*.odcs.yaml, column sex
    area = described["tables"]["cohort_households_by_area"]["columns"]["area"]
    assert "generalisation level 1" in area  # the level the release was published at


@pytest.mark.parametrize(
    ("column", "source"),
    [("sex", "sex"), ("age_band", "age"), ("ethnic_group", "ethnicity"), ("area", "lsoa")],
)
def test_every_hierarchy_label_is_in_the_dictionary(described, column, source):
    hierarchy = load_hierarchies(CONTRACTS / "hierarchies", [source])[source]
    codes = {r["code"] for r in described["dictionary"] if r["column_name"] == column}
    labels = {str(label) for level in hierarchy.labels for label in level}
    assert labels - codes == set()


def test_withheld_and_counts_say_null_is_not_zero(described):
    columns = described["tables"]["cohort_department_overlap"]["columns"]
    assert "not zero" in columns["withheld"] and "NULL" in columns["people"]


def test_a_table_missing_from_cohorts_yaml_is_still_described():
    described = describe_release(CONTRACTS, {"cohort_other": ["a", "people"]})
    columns = described["tables"]["cohort_other"]["columns"]
    assert described["tables"]["cohort_other"]["comment"] and all(columns.values())


def test_dimensions_declared_as_a_list_use_their_own_description_and_level(tmp_path):
    import shutil

    contracts = tmp_path / "data_contracts"
    shutil.copytree(CONTRACTS, contracts)
    (contracts / "cohorts.yaml").write_text(
        """
tables:
  - name: cohort_pairs
    title: Pairs of departments
    description: Residents known to both departments of each pair.
    question: Which departments share the most residents?
    unit: people
    dimensions:
      - {name: department_a, source: departments, expand: pair}
      - {name: department_b, source: departments, expand: pair}
      - {name: area, source: lsoa, level: 1, description: Ward of the home address.}
      - {name: indicators, source: indicator_count, bands: ["0", "1", "2+"]}
"""
    )
    columns = ["release_id", "department_a", "department_b", "area", "indicators", "people"]
    described = describe_release(contracts, {"cohort_pairs": columns + ["withheld"]})
    table = described["tables"]["cohort_pairs"]
    assert "Which departments share the most residents?" in table["comment"]
    assert table["columns"]["area"].startswith("Ward of the home address.")
    assert "generalisation level 1" in table["columns"]["area"]
    assert "2+" in table["columns"]["indicators"]
    codes = {(r["column_name"], r["code"]) for r in described["dictionary"]}
    assert ("department_a", "housing") in codes and ("department_b", "benefits") in codes
