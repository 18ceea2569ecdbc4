"""The catalogue's descriptions and data dictionary come from the declarative inputs and cover
every published table, column and code."""

from pathlib import Path

import pytest

from tests.integration.demo_catalogue import demo_contracts
from transforms.disclosure.hierarchy import load_hierarchies
from transforms.release.catalogue_docs import describe_release, table_definitions

CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"


def _describe(contracts: Path, levels=None):
    cohorts = table_definitions(contracts / "cohorts.yaml")
    tables = {
        name: ["release_id", *t["dimensions"], t["unit"], "withheld"] for name, t in cohorts.items()
    }
    return cohorts, describe_release(contracts, tables, levels)


@pytest.fixture(scope="module")
def described(tmp_path_factory):
    """The cohort definitions the analysts' guide was written for."""
    return _describe(demo_contracts(tmp_path_factory.mktemp("docs")))[1]


@pytest.mark.parametrize("folder", ["real", "guide"])
def test_every_table_and_column_is_described_from_the_definitions(folder, tmp_path):
    contracts = CONTRACTS if folder == "real" else demo_contracts(tmp_path)
    cohorts, described = _describe(contracts)
    for name, table in cohorts.items():
        comment = described["tables"][name]["comment"]
        assert comment.startswith(table["title"]) and table["description"].strip() in comment
        columns = described["tables"][name]["columns"]
        assert set(columns) == {"release_id", *table["dimensions"], table["unit"], "withheld"}
        for column, dimension in table["dimensions"].items():
            # Not a placeholder: the definition's, a contract's, or the pipeline's own words.
            assert not columns[column].startswith("Dimension"), column
            explained = "Bands:" if dimension.get("bands") else f"column_name = '{column}'"
            assert explained in columns[column], column


def test_contract_descriptions_and_levels_are_used_where_a_definition_has_none(tmp_path):
    contracts = demo_contracts(tmp_path)
    (contracts / "cohorts.yaml").write_text(
        """
tables:
  - name: cohort_by_area_sex
    title: Residents by area and sex
    description: One row per area and sex.
    unit: people
    dimensions: {area: lsoa, sex: sex}
"""
    )
    columns = ["release_id", "area", "sex", "people", "withheld"]
    levels = {"cohort_by_area_sex": {"lsoa": 1}}
    described = describe_release(contracts, {"cohort_by_area_sex": columns}, levels)
    described = described["tables"]["cohort_by_area_sex"]["columns"]
    assert described["sex"].startswith("Sex as recorded")  # data_contracts/*.odcs.yaml
    assert "generalisation level 1" in described["area"]  # the level it was published at


@pytest.mark.parametrize(
    ("column", "source"),
    [("sex", "sex"), ("age_band", "age"), ("ethnic_group", "ethnicity"), ("ward", "lsoa")],
)
def test_every_hierarchy_label_is_in_the_dictionary(described, column, source):
    hierarchy = load_hierarchies(CONTRACTS / "hierarchies", [source])[source]
    codes = {r["code"] for r in described["dictionary"] if r["column_name"] == column}
    labels = {str(label) for level in hierarchy.labels for label in level}
    assert labels - codes == set()


def test_withheld_and_counts_say_null_is_not_zero(described):
    columns = described["tables"]["cohort_indicator_by_ward"]["columns"]
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
