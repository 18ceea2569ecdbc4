"""Small-number rules and the k threshold at their boundaries: (k-1, k, k+1)."""

import polars as pl
import pytest

from schemas.policy import SMALL_NUMBER_RULES, CohortTable, DisclosurePolicy
from transforms.disclosure.tabulate import round_to_base, tabulate

TABLE = CohortTable(
    name="cohort_test", title="t", description="d", unit="people", dimensions={"area": "lsoa"}
)


def _policy(k: int, rule: str) -> DisclosurePolicy:
    return DisclosurePolicy(
        name="test", k=k, max_suppression=0.0, small_number_rule=rule, quasi_identifiers=("lsoa",)
    )


def _population(sizes: dict[str, int]) -> pl.DataFrame:
    areas = [area for area, n in sizes.items() for _ in range(n)]
    return pl.DataFrame({"person_key": [f"p{i}" for i in range(len(areas))], "lsoa": areas})


@pytest.mark.parametrize("rule", sorted(SMALL_NUMBER_RULES))
@pytest.mark.parametrize("k", [5, 10, 11])
def test_cells_below_the_threshold_are_withheld_at_the_boundary(rule, k):
    policy = _policy(k, rule)
    m = policy.min_published_count
    # Two small cells, so the withheld ones already protect each other (see differencing below).
    sizes = {"a": m - 1, "a2": m - 1, "b": m, "c": m + 1}
    published, counts = tabulate(_population(sizes), TABLE, policy)
    assert published["area"].to_list() == ["b", "c"]
    assert counts.cells_suppressed == 2 and counts.units_in_suppressed_cells == 2 * (m - 1)
    assert counts.cells_suppressed_secondary == 0
    assert counts.units_in_published_cells == 2 * m + 1
    assert published["people"].min() >= k


def test_nhs_england_withholds_one_to_seven_and_rounds_to_five():
    policy = _policy(2, "nhs_england")
    sizes = {"a": 7, "a2": 7, "b": 8, "c": 12, "d": 13}
    published, _ = tabulate(_population(sizes), TABLE, policy)
    assert dict(published.iter_rows()) == {"b": 10, "c": 10, "d": 15}


def test_ons_threshold_publishes_exact_counts_from_ten():
    policy = _policy(2, "ons_threshold_10")
    published, _ = tabulate(_population({"a": 9, "a2": 9, "b": 10, "c": 13}), TABLE, policy)
    assert dict(published.iter_rows()) == {"b": 10, "c": 13}


@pytest.mark.parametrize(("count", "rounded"), [(10, 10), (12, 10), (13, 15), (17, 15), (18, 20)])
def test_round_half_up_to_base_five(count, rounded):
    assert pl.select(round_to_base(pl.lit(count), 5)).item() == rounded


def test_per_department_tables_count_a_resident_once_in_each_department():
    table = CohortTable(
        name="cohort_d",
        title="t",
        description="d",
        unit="people",
        per_department=True,
        dimensions={"department": "department"},
    )
    population = pl.DataFrame(
        {
            "person_key": [f"p{i}" for i in range(12)],
            "departments": [["housing", "benefits"]] * 12,
        }
    )
    published, counts = tabulate(population, table, _policy(10, "ons_threshold_10"))
    assert dict(published.iter_rows()) == {"benefits": 12, "housing": 12}
    assert counts.units_in_published_cells == 24


def test_household_tables_count_households_not_people():
    table = CohortTable(
        name="cohort_h", title="t", description="d", unit="households", dimensions={"area": "lsoa"}
    )
    population = pl.DataFrame(
        {
            "person_key": [f"p{i}" for i in range(30)],
            "household_key": [f"h{i // 3}" for i in range(30)],
            "lsoa": ["a"] * 30,
        }
    )
    published, _ = tabulate(population, table, _policy(10, "ons_threshold_10"))
    assert dict(published.iter_rows()) == {"a": 10}


def test_threshold_rises_until_rounding_cannot_show_less_than_k():
    assert _policy(11, "nhs_england").min_published_count == 13
    assert _policy(10, "nhs_england").min_published_count == 10
    assert _policy(3, "ons_threshold_10").min_published_count == 10


def test_a_lone_withheld_cell_takes_the_smallest_published_cell_with_it():
    # Without the partner, the grand total (known, say, from an annual report) minus the
    # published cells would give the withheld 3 back exactly.
    policy = _policy(10, "ons_threshold_10")
    published, counts = tabulate(_population({"a": 3, "b": 11, "c": 40}), TABLE, policy)
    assert dict(published.iter_rows()) == {"c": 40}
    assert counts.cells_suppressed == 2 and counts.cells_suppressed_secondary == 1
    assert counts.units_in_suppressed_cells == 14


def test_withheld_cells_are_protected_in_every_total_of_the_table():
    table = CohortTable(name="cohort_t", title="t", description="d", unit="people",
                        dimensions={"area": "lsoa", "sex": "sex"})
    sizes = {("a", "F"): 4, ("a", "M"): 30, ("b", "F"): 25, ("b", "M"): 26, ("c", "F"): 12,
             ("c", "M"): 50}
    rows = [(area, sex) for (area, sex), n in sizes.items() for _ in range(n)]
    population = pl.DataFrame({"person_key": [f"p{i}" for i in range(len(rows))],
                               "lsoa": [r[0] for r in rows], "sex": [r[1] for r in rows]})
    published, _ = tabulate(population, table, _policy(10, "ons_threshold_10"))
    shown = {(r[0], r[1]): r[2] for r in published.iter_rows()}
    withheld = {cell: n for cell, n in sizes.items() if cell not in shown}
    assert ("a", "F") in withheld
    # Every total (by area, by sex, grand) leaves no withheld cell alone or below 10.
    for group in [lambda c: c[0], lambda c: c[1], lambda c: 0]:
        for key in {group(c) for c in sizes}:
            hidden = [n for c, n in withheld.items() if group(c) == key]
            assert len(hidden) != 1 and (not hidden or sum(hidden) >= 10), key
