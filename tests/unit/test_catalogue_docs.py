"""The catalogue's descriptions and data dictionary come from the declarative inputs and cover
every published table, column and code."""

from pathlib import Path

import pytest

from schemas.policy import load_cohorts
from transforms.disclosure.hierarchy import load_hierarchies
from transforms.release.catalogue_docs import describe_release

CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"
COHORTS = load_cohorts(CONTRACTS / "cohorts.yaml").tables


@pytest.fixture(scope="module")
def described():
    tables = {t.name: ["release_id", *t.dimensions, t.unit, "withheld"] for t in COHORTS}
    levels = {t.name: {"age": 3, "lsoa": 1} for t in COHORTS}
    return describe_release(CONTRACTS, tables, levels)


def test_every_cohort_table_is_described_from_cohorts_yaml(described):
    for table in COHORTS:
        comment = described["tables"][table.name]["comment"]
        assert comment.startswith(table.title) and table.description in comment


def test_every_column_has_its_own_description(described):
    for table in COHORTS:
        columns = described["tables"][table.name]["columns"]
        assert set(columns) == {"release_id", *table.dimensions, table.unit, "withheld"}
        for column in table.dimensions:
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
