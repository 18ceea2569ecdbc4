"""The release gates at their boundaries (k-1, k, k+1; threshold-1, threshold), on real Parquet
files and real DuckDB: every published row stands for at least the policy's minimum count, the
population is k-anonymous and l-diverse, withheld rows publish nothing, the row account adds up."""

import polars as pl
import pytest

from schemas.cohorts import CohortDefinitions, CohortTable, Dimension
from schemas.errors import DisclosureError
from schemas.policy import DisclosurePolicy
from transforms.release import catalogue
from transforms.release.gates import account_rows, check_release, require_balanced

TABLE = CohortTable(
    name="cohort_by_area", title="t", description="d", question="q", unit="people",
    dimensions=(Dimension(name="area", source="lsoa"),),
)
COHORTS = CohortDefinitions(tables=(TABLE,))


def policy(k: int = 10, rule: str = "ons_threshold_10", **more) -> DisclosurePolicy:
    return DisclosurePolicy(
        name="t",
        k=k,
        max_suppression=0.0,
        small_number_rule=rule,
        quasi_identifiers=("lsoa",),
        **more,
    )


def population(tmp_path, sizes: dict[str, int], flags: dict[str, list[int]] | None = None):
    areas = [a for a, n in sizes.items() for _ in range(n)]
    flag = [v for a, n in sizes.items() for v in (flags or {}).get(a, [0] * n)]
    path = tmp_path / "population.parquet"
    pl.DataFrame(
        {"person_key": [f"p{i}" for i in range(len(areas))], "lsoa": areas, "flag": flag}
    ).write_parquet(path)
    return path


def staged(tmp_path, rows: list[tuple[str, int | None, bool]]):
    table = pl.DataFrame(
        {
            "area": [r[0] for r in rows],
            "people": pl.Series([r[1] for r in rows], dtype=pl.Int64),
            "withheld": [r[2] for r in rows],
        }
    )
    release = f"r{len(list(tmp_path.glob('staging/*')))}"
    return catalogue.stage_release(tmp_path, release, {TABLE.name: table}, {})


@pytest.mark.parametrize(("shown", "passes"), [(9, False), (10, True)])
def test_per_table_gate_uses_the_policys_minimum_published_count_not_k(tmp_path, shown, passes):
    """k = 5 but the ONS rule withholds below 10: the threshold, not k, is the bar. (The true
    count behind each row is the differencing audit's to recount: tests/unit/test_differencing.)"""
    chosen = policy(k=5)
    assert chosen.min_published_count == 10
    pop = population(tmp_path, {"a": 20, "b": 20})
    files = staged(tmp_path, [("a", 20, False), ("b", shown, False)])
    if passes:
        check_release(files, pop, COHORTS, chosen)
    else:
        with pytest.raises(DisclosureError, match="fewer than 10 people"):
            check_release(files, pop, COHORTS, chosen)


@pytest.mark.parametrize(("smallest", "passes"), [(9, False), (10, True), (11, True)])
def test_population_gate_at_k(tmp_path, smallest, passes):
    """Area b is withheld in the table, so only the population gate can see its class size."""
    pop = population(tmp_path, {"a": 20, "b": smallest})
    files = staged(tmp_path, [("a", 20, False), ("b", None, True)])
    if passes:
        counts = check_release(files, pop, COHORTS, policy(k=10))
        assert counts.population_classes_below_k == 0 and counts.rows_withheld == 1
    else:
        with pytest.raises(DisclosureError, match="1 quasi-identifier class.*smaller than k=10"):
            check_release(files, pop, COHORTS, policy(k=10))


@pytest.mark.parametrize(("shown", "passes"), [(9, False), (10, True), (11, True)])
def test_a_published_count_below_k_is_refused_even_when_the_truth_is_large(tmp_path, shown, passes):
    """What the row shows, k-1, k, k+1, whatever the true count behind it."""
    pop = population(tmp_path, {"a": 20, "b": 20})
    files = staged(tmp_path, [("a", 20, False), ("b", shown, False)])
    if passes:
        check_release(files, pop, COHORTS, policy(k=10))
    else:
        with pytest.raises(DisclosureError, match="1 .*row"):
            check_release(files, pop, COHORTS, policy(k=10))


def test_withheld_rows_publish_no_count_and_are_not_gated_but_unmarked_ones_are(tmp_path):
    pop = population(tmp_path, {"a": 20, "b": 3})
    lenient = policy(k=2)  # population classes of 3 are fine; the table row is the question
    check_release(staged(tmp_path, [("a", 20, False), ("b", None, True)]), pop, COHORTS, lenient)
    with pytest.raises(DisclosureError, match="fewer than 10 people"):
        check_release(staged(tmp_path, [("a", 20, False), ("b", 5, False)]), pop, COHORTS, lenient)


@pytest.mark.parametrize(("values", "passes"), [([0] * 12, False), ([0] * 11 + [1], True)])
def test_population_gate_checks_the_policys_l_diversity(tmp_path, values, passes):
    chosen = policy(k=10, l_diversity=2, sensitive="flag")
    pop = population(tmp_path, {"a": 12, "b": 12}, {"a": [0] * 6 + [1] * 6, "b": values})
    files = staged(tmp_path, [("a", 12, False), ("b", 12, False)])
    if passes:
        assert check_release(files, pop, COHORTS, chosen).population_classes_below_l == 0
    else:
        with pytest.raises(DisclosureError, match="fewer than l=2 values of flag"):
            check_release(files, pop, COHORTS, chosen)


def _account(**changes):
    figures = dict(
        received=100,
        quarantined=4,
        accepted=96,
        removed_by_opt_out=6,
        linked_records=90,
        people={"people": 80, "people_incomplete": 2},
        people_counted=78,
    )
    return account_rows(**{**figures, **changes})


def test_a_balanced_account_passes():
    account = _account()
    assert account["balanced"] is True
    require_balanced(account)


@pytest.mark.parametrize(
    "changes",
    [
        {"received": 101},
        {"linked_records": 95},
        {"people_counted": 77},
        {"removed_by_opt_out": 5},
    ],
)
def test_an_unbalanced_account_stops_staging(changes):
    account = _account(**changes)
    assert account["balanced"] is False
    with pytest.raises(DisclosureError, match="does not balance"):
        require_balanced(account)
