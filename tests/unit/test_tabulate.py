"""Cohort tables: the small-number rule at its boundaries (k-1, k, k+1), rounding, withheld
rows, and each kind of dimension (level, bands, expand each and pair, where, sensitive)."""

import polars as pl
import pytest

from schemas.cohorts import CohortDefinitions, CohortTable, Dimension, Measure
from schemas.policy import SMALL_NUMBER_RULES, DisclosurePolicy
from transforms.disclosure.hierarchy import from_table
from transforms.disclosure.tabulate import columns_read, round_to_base, tabulate


def _table(*dimensions: Dimension, unit: str = "people", where: str | None = None):
    return CohortTable(
        name="cohort_test", title="t", description="d", question="q", unit=unit, where=where,
        dimensions=dimensions,
    )


AREA = _table(Dimension(name="area", source="lsoa"))


def _policy(k: int, rule: str, secondary: str = "every_table_total") -> DisclosurePolicy:
    return DisclosurePolicy(
        name="test", k=k, max_suppression=0.0, small_number_rule=rule, quasi_identifiers=("lsoa",),
        secondary_suppression=secondary,
    )


def _population(sizes: dict[str, int]) -> pl.DataFrame:
    areas = [area for area, n in sizes.items() for _ in range(n)]
    return pl.DataFrame({"person_key": [f"p{i}" for i in range(len(areas))], "lsoa": areas})


def _published(frame: pl.DataFrame, unit: str = "people") -> dict:
    dims = [c for c in frame.columns if c not in (unit, "withheld")]
    shown = frame.filter(~pl.col("withheld"))
    return {row[:-1] if len(dims) > 1 else row[0]: row[-1]
            for row in shown.select(*dims, unit).rows()}


@pytest.mark.parametrize("rule", sorted(SMALL_NUMBER_RULES))
@pytest.mark.parametrize("k", [5, 10, 11])
def test_cells_below_the_threshold_are_withheld_at_the_boundary(rule, k):
    policy = _policy(k, rule)
    m = policy.min_published_count
    # Two small cells, so the withheld ones already protect each other.
    sizes = {"a": m - 1, "a2": m - 1, "b": m, "c": m + 1}
    staged, counts = tabulate(_population(sizes), AREA, policy)
    assert sorted(_published(staged)) == ["b", "c"]
    # Withheld cells stay in the table, marked, with no count: never mistaken for zero.
    withheld = staged.filter(pl.col("withheld"))
    assert withheld["area"].to_list() == ["a", "a2"] and withheld["people"].null_count() == 2
    assert counts.cells_suppressed == 2 and counts.units_in_suppressed_cells == 2 * (m - 1)
    assert counts.cells_suppressed_secondary == 0
    assert counts.units_in_published_cells == 2 * m + 1
    assert staged.filter(~pl.col("withheld"))["people"].min() >= k


def test_a_lone_small_cell_takes_the_smallest_other_cell_with_it():
    policy = _policy(10, "ons_threshold_10")
    staged, counts = tabulate(_population({"a": 3, "b": 12, "c": 40}), AREA, policy)
    assert _published(staged) == {"c": 40}
    assert counts.cells_suppressed_secondary == 1
    # Left to the release audit, the table alone withholds only the small cell: its total is
    # published nowhere, so nothing gives the 3 back.
    staged, counts = tabulate(_population({"a": 3, "b": 12, "c": 40}), AREA,
                              _policy(10, "ons_threshold_10", "release_audit"))
    assert _published(staged) == {"b": 12, "c": 40} and counts.cells_suppressed_secondary == 0


def test_nhs_england_withholds_one_to_seven_and_rounds_to_five():
    policy = _policy(2, "nhs_england")
    staged, _ = tabulate(_population({"a": 7, "a2": 7, "b": 8, "c": 12, "d": 13}), AREA, policy)
    assert _published(staged) == {"b": 10, "c": 10, "d": 15}


def test_ons_threshold_publishes_exact_counts_from_ten():
    policy = _policy(2, "ons_threshold_10")
    staged, _ = tabulate(_population({"a": 9, "a2": 9, "b": 10, "c": 13}), AREA, policy)
    assert _published(staged) == {"b": 10, "c": 13}


@pytest.mark.parametrize(("count", "rounded"), [(10, 10), (12, 10), (13, 15), (17, 15), (18, 20)])
def test_round_half_up_to_base_five(count, rounded):
    assert pl.select(round_to_base(pl.lit(count), 5)).item() == rounded


def _people(**columns) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    return pl.DataFrame({"person_key": [f"p{i:03d}" for i in range(n)], **columns})


def test_expand_each_counts_a_resident_once_in_each_department():
    population = _people(departments=[["housing", "benefits"]] * 12 + [["housing"]] * 3)
    table = _table(Dimension(name="department", source="departments", expand="each"))
    staged, _ = tabulate(population, table, _policy(2, "ons_threshold_10"))
    assert _published(staged) == {"benefits": 12, "housing": 15}


def test_expand_pair_counts_each_pair_once_with_caseloads_on_the_diagonal():
    population = _people(departments=[["benefits", "housing"]] * 12 + [["housing"]] * 10)
    table = _table(
        Dimension(name="department_a", source="departments", expand="pair"),
        Dimension(name="department_b", source="departments", expand="pair"),
    )
    staged, _ = tabulate(population, table, _policy(2, "ons_threshold_10"))
    assert _published(staged) == {
        ("benefits", "benefits"): 12, ("benefits", "housing"): 12, ("housing", "housing"): 22,
    }


def test_bands_and_where_filter():
    population = _people(indicator_count=[0] * 10 + [1] * 10 + [2] * 6 + [3] * 5 + [4] * 6)
    table = _table(
        Dimension(name="held", source="indicator_count", bands=("1", "2+")),
        where="indicator_count >= 1",
    )
    staged, _ = tabulate(population, table, _policy(2, "ons_threshold_10"))
    assert _published(staged) == {"1": 10, "2+": 17}


def test_level_generalises_along_the_hierarchy():
    rows = [["L1", "W1", "*"], ["L2", "W1", "*"], ["L3", "W2", "*"]]
    hierarchy = from_table("lsoa", "test", rows)
    population = _people(lsoa=["L1"] * 6 + ["L2"] * 6 + ["L3"] * 12)
    table = _table(Dimension(name="ward", source="lsoa", level=1))
    staged, _ = tabulate(population, table, _policy(2, "ons_threshold_10"), {"lsoa": hierarchy})
    assert _published(staged) == {"W1": 12, "W2": 12}


def test_households_are_counted_once_from_their_first_member():
    # Each household's two members live in different areas (records disagree); the member
    # with the smaller person key decides, whatever the rows' order.
    population = pl.DataFrame({
        "person_key": [f"p{i:02d}" for i in range(30)],
        "household_key": [f"h{i // 2}" for i in range(24)] + [None] * 6,
        "lsoa": ["L1", "L2"] * 15,
    }).reverse()
    staged, _ = tabulate(population, _table(Dimension(name="area", source="lsoa"),
                                            unit="households"), _policy(2, "ons_threshold_10"))
    assert _published(staged, "households") == {"L1": 12}


@pytest.mark.parametrize(("in_arrears", "withheld"), [(0, True), (20, True), (10, False)])
def test_all_or_none_of_a_group_sharing_a_sensitive_value_is_withheld(in_arrears, withheld):
    # Ward W1 has 20 tenants: all, none, or half in arrears; ward W2 is always mixed.
    arrears = [True] * in_arrears + [False] * (20 - in_arrears) + [True] * 15 + [False] * 15
    wards = ["W1"] * 20 + ["W2"] * 30
    table = _table(
        Dimension(name="in_rent_arrears", source="in_rent_arrears", sensitive=True),
        Dimension(name="ward", source="ward"),
    )
    staged, counts = tabulate(_people(in_rent_arrears=arrears, ward=wards), table,
                              _policy(5, "ons_threshold_10"))
    w1 = staged.filter(pl.col("ward") == "W1")
    # Both values of the sensitive dimension are listed, zeros included, so a missing row
    # cannot tell "none" either.
    assert sorted(w1["in_rent_arrears"]) == ["no", "yes"]
    assert w1["withheld"].all() is withheld
    assert (counts.cells_attribute_disclosure == 2) is withheld


def test_a_release_reads_the_columns_its_tables_use_and_no_other():
    measured = _table(Dimension(name="area", source="lsoa"), where="in_rent_arrears AND age >= 18")
    measured = measured.model_copy(update={
        "name": "cohort_award",
        "measure": Measure(kind="sum", attribute="weekly_amount", unit="pounds per week"),
    })
    households = _table(Dimension(name="size", source="household_size"), unit="households")
    cohorts = CohortDefinitions(tables=(measured, households))
    available = ["person_key", "household_key", "age", "sex", "lsoa", "in_rent_arrears",
                 "weekly_amount", "household_size", "support_reason", "tenure"]
    # Dimensions, filters, measures and both unit keys, in the population's order.
    assert columns_read(cohorts, available) == [
        "person_key", "household_key", "age", "lsoa", "in_rent_arrears", "weekly_amount",
        "household_size",
    ]
