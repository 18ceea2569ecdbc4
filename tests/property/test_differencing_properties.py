"""Properties of the release audit on random small releases (real DuckDB, real HiGHS):
every interval holds the true count; the quick audit (cells shown wide enough together) fails
exactly the cells the exact one does; withholding more never makes a release fail."""

import itertools

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.cohorts import CohortDefinitions, CohortTable, Dimension
from schemas.policy import DisclosurePolicy
from transforms.release.differencing import Auditor

POLICIES = {
    rule: DisclosurePolicy(
        name=rule, k=10, max_suppression=0.05, small_number_rule=rule, quasi_identifiers=("age",)
    )
    for rule in ("ons_threshold_10", "nhs_england")
}
COMBOS = list(itertools.product(["W1", "W2", "W3"], ["F", "M"], ["0-19", "20-39"]))
TABLES = tuple(
    CohortTable(
        name=f"cohort_{a}_{b}",
        title="t",
        description="t",
        question="t",
        unit="people",
        dimensions=(Dimension(name=a, source=a), Dimension(name=b, source=b)),
    )  # fmt: skip
    for a, b in (("ward", "sex"), ("ward", "age"), ("sex", "age"))
)
COHORTS = CohortDefinitions(tables=TABLES)


def release(counts: list[int], extra: list[bool], policy: DisclosurePolicy):
    counts = [max(1, n) if i == 0 else n for i, n in enumerate(counts)]  # never empty
    rows = [
        {"ward": w, "sex": s, "age": a}
        for (w, s, a), n in zip(COMBOS, counts, strict=True)
        for _ in range(n)
    ]
    population = pl.DataFrame(rows).with_row_index("i")
    population = population.with_columns(
        person_key=pl.format("p{}", "i"), household_key=pl.lit(None, pl.String)
    ).drop("i")
    base, floor = policy.rule.round_to, policy.min_published_count
    tables, flips = {}, iter(extra * 3)
    for table in TABLES:
        names = table.dimension_names
        counted = population.group_by(names).agg(pl.len().cast(pl.Int64).alias("people"))
        counted = counted.sort(names).with_columns(
            withheld=(pl.col("people") < floor) | pl.Series([next(flips) for _ in counted.rows()])
        )
        tables[table.name] = counted.with_columns(
            pl.when(pl.col("withheld"))
            .then(None)
            .otherwise((pl.col("people") + base // 2) // base * base)
            .alias("people")
        )
    return population, tables


@settings(max_examples=15, deadline=None)
@given(
    counts=st.lists(
        st.sampled_from([0, 1, 2, 3, 5, 8, 9, 10, 12, 15, 25]), min_size=12, max_size=12
    ),
    extra=st.lists(st.booleans(), min_size=12, max_size=12),
    rule=st.sampled_from(sorted(POLICIES)),
)
def test_intervals_hold_the_truth_and_the_quick_audit_agrees_with_the_exact_one(
    counts, extra, rule
):
    policy = POLICIES[rule]
    population, tables = release(counts, extra, policy)
    auditor = Auditor(population, COHORTS, {}, policy)
    quick = auditor.audit(tables)
    exact = auditor.audit(tables, exact=True)
    assert [(f.table, f.cell, f.kind) for f in quick.failures] == [
        (f.table, f.cell, f.kind) for f in exact.failures
    ]
    truth = {
        (t.name, row[:-1]): row[-1]
        for t in TABLES
        for row in population.group_by(t.dimension_names).len().rows()
    }
    for table in TABLES:
        frame = tables[table.name].filter("withheld")
        for row in frame.select(table.dimension_names).rows():
            low, high = auditor.interval_of(
                table.name, dict(zip(table.dimension_names, row, strict=True))
            )
            assert low - 1e-6 <= truth[(table.name, row)] <= high + 1e-6

    # Withholding every cell of the first table too loosens the system: never a new failure.
    looser = dict(tables)
    looser[TABLES[0].name] = tables[TABLES[0].name].with_columns(
        withheld=pl.lit(True), people=pl.lit(None, pl.Int64)
    )
    after = {(f.table, tuple(f.cell.values())) for f in auditor.audit(looser, exact=True).failures}
    before = {(f.table, tuple(f.cell.values())) for f in exact.failures if f.kind != "small"}
    assert after - before <= {
        (TABLES[0].name, row)
        for row in tables[TABLES[0].name].filter(~pl.col("withheld")).select("ward", "sex").rows()
    }
