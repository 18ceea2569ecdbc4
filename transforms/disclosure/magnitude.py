"""Sums and medians published beside a cohort table's count, with magnitude-cell checks.

A count says how many residents are in a cell; a sum says how much they hold between them, and
one large contribution can dominate it: publishing "£1,240 a week" for a ward where one
resident receives £1,100 tells their neighbour roughly what that resident receives. So each
cell's contributions are checked as ACRO and tau-Argus do (parameters and their source in
`schemas.policy.MagnitudeRules`):

- p% rule: sensitive when sum - x1 - x2 < p/100 * x1, x1 >= x2 the two largest contributions
  (the second-largest contributor, subtracting their own, learns the largest within p%);
- (n,k) dominance: sensitive when the n largest contributions exceed k% of the sum;
- a zero sum is sensitive (it says everyone in the cell has nothing);
- a median also needs at least `median_min_distinct` distinct values, so that it does not say
  what everyone (or all but one) in the cell holds; it is rounded.

A row whose count is withheld shows no measure; a row whose measure is sensitive is withheld
whole (count too), so `withheld` keeps one meaning for analysts. A withheld sum could still be
worked out from the tables' other sums (a ward total minus the published cells), so
`protect_sums` withholds more, asking an audit independent of this module
(`transforms/release/magnitude_audit.py`) which withheld sums it can narrow too far.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Protocol

import polars as pl

from schemas.cohorts import CohortDefinitions, CohortTable, Dimension
from schemas.errors import DisclosureError
from schemas.policy import DisclosurePolicy, MagnitudeRules
from transforms.disclosure.hierarchy import Hierarchy
from transforms.disclosure.protect import hidden_by_group
from transforms.disclosure.tabulate import TRUE, WITHHELD, TableCounts, units

VALUE = "measure_value_"  # the unit's value of the attribute, carried beside its dimensions
MAX_AUDITS = 400  # each a few LPs over the magnitude tables only

# Per cell (secure, never published): count, sum, the largest contributions, distinct values.
N, SUM, X1, X2, TOP_N, DISTINCT, MEDIAN = (
    "_n", "_sum", "_x1", "_x2", "_top_n", "_distinct", "_median",
)  # fmt: skip
REASONS = ("count", "p_percent", "dominance", "zero_sum", "few_distinct", "secondary")


@dataclass(frozen=True)
class MeasureCounts:
    """Per magnitude table: cells and why measures are withheld (counts of cells only)."""

    table: str
    measure: str
    kind: str
    attribute: str
    cells: int
    cells_published: int
    withheld_with_the_count: int  # the count was withheld by the small-number protection
    withheld_p_percent: int
    withheld_dominance: int
    withheld_zero_sum: int
    withheld_few_distinct: int
    withheld_secondary: int
    # fewer people than the smallest publishable count, where the count itself is published
    # (cell-key perturbation publishes small counts; a sum over them is still withheld)
    withheld_small_count: int = 0  # withheld so that a withheld sum cannot be worked out

    def to_dict(self) -> dict:
        return asdict(self)


def contributions(
    population: pl.DataFrame, table: CohortTable, hierarchies: dict[str, Hierarchy]
) -> pl.DataFrame:
    """One row per counted unit: its dimension values (text) and its value of the measure."""
    carried = Dimension.model_construct(
        name=VALUE, source=table.measure.attribute, description="", level=None, bands=None,
        expand=None, only=None, sensitive=False,
    )  # fmt: skip
    # Reuse the tabulation's reading of the definition (filters, households, expansion), so the
    # measure is over exactly the units the count counts.
    with_value = table.model_copy(update={"dimensions": (*table.dimensions, carried)})
    frame = units(population, with_value, hierarchies)
    return frame.with_columns(pl.col(VALUE).cast(pl.Float64))


def cell_statistics(frame: pl.DataFrame, names: list[str], rules: MagnitudeRules) -> pl.DataFrame:
    """Per cell: count, sum, the two largest contributions, the n largest together, the number
    of distinct values and the median (nulls: no value, add nothing, not in the median)."""
    value = pl.col(VALUE)
    ranked = value.fill_null(0.0).sort(descending=True)
    return frame.group_by(names).agg(
        pl.len().cast(pl.Int64).alias(N),
        value.fill_null(0.0).sum().alias(SUM),
        ranked.get(0, null_on_oob=True).fill_null(0.0).alias(X1),
        ranked.get(1, null_on_oob=True).fill_null(0.0).alias(X2),
        ranked.head(rules.dominance_n).sum().alias(TOP_N),
        value.drop_nulls().n_unique().cast(pl.Int64).alias(DISTINCT),
        value.median().alias(MEDIAN),
    )


def p_percent_sensitive(total: pl.Expr, x1: pl.Expr, x2: pl.Expr, p: float) -> pl.Expr:
    """sum - x1 - x2 < p/100 * x1 (ACRO's `agg_p_percent`, tau-Argus's p% rule)."""
    return (total - x1 - x2) < (p / 100.0) * x1


def dominance_sensitive(total: pl.Expr, top_n: pl.Expr, k_percent: float) -> pl.Expr:
    """The n largest contributions exceed k% of the sum (ACRO's `agg_nk`)."""
    return top_n > (k_percent / 100.0) * total


def _round(values: pl.Expr, base: int) -> pl.Expr:
    """Half up to a multiple of `base` (pounds)."""
    return ((values / base + 0.5).floor() * base).cast(pl.Float64)


def assess(stats: pl.DataFrame, table: CohortTable, rules: MagnitudeRules) -> pl.DataFrame:
    """Flags for the primary reasons (`_p_percent`, `_dominance`, `_zero_sum`,
    `_few_distinct`), the count's own `withheld` left as it is."""
    total, x1 = pl.col(SUM), pl.col(X1)
    few = pl.lit(False)
    if table.measure.kind == "median":
        few = pl.col(DISTINCT) < rules.median_min_distinct
    return stats.with_columns(
        _p_percent=p_percent_sensitive(total, x1, pl.col(X2), rules.p_percent),
        _dominance=dominance_sensitive(total, pl.col(TOP_N), rules.dominance_k_percent),
        _zero_sum=total <= 0,
        _few_distinct=few,
    )


def measured_table(
    staged: pl.DataFrame,
    population: pl.DataFrame,
    table: CohortTable,
    policy: DisclosurePolicy,
    hierarchies: dict[str, Hierarchy],
) -> pl.DataFrame:
    """The staged count table joined to its cells' statistics and primary flags (secure:
    holds true sums). `_count_withheld` is the count protection's decision."""
    names = table.dimension_names
    stats = cell_statistics(contributions(population, table, hierarchies), names, policy.magnitude)
    cells = staged.join(stats, on=names, how="left", nulls_equal=True).with_columns(
        pl.col(N).fill_null(0), pl.col(SUM).fill_null(0.0), pl.col(X1).fill_null(0.0),
        pl.col(X2).fill_null(0.0), pl.col(TOP_N).fill_null(0.0), pl.col(DISTINCT).fill_null(0),
    )  # fmt: skip
    cells = assess(cells, table, policy.magnitude).with_columns(
        _small_count=(pl.col(N) > 0) & (pl.col(N) < policy.min_published_count)
    )
    primary = pl.any_horizontal(
        "_p_percent", "_dominance", "_zero_sum", "_few_distinct", "_small_count"
    )
    return cells.with_columns(
        pl.col(WITHHELD).alias("_count_withheld"),
        _primary=primary & ~pl.col(WITHHELD),
        _secondary=pl.lit(False),
    ).with_columns((pl.col(WITHHELD) | pl.col("_primary")).alias(WITHHELD))


def published(cells: pl.DataFrame, table: CohortTable, policy: DisclosurePolicy) -> pl.DataFrame:
    """What is staged: dimensions, count, measure (null where withheld), withheld."""
    rules = policy.magnitude
    measure = table.measure
    value = (
        _round(pl.col(SUM), rules.sum_round_to)
        if measure.kind == "sum"
        else _round(pl.col(MEDIAN), rules.median_round_to)
    )
    return cells.select(
        *table.dimension_names,
        pl.when(pl.col(WITHHELD)).then(None).otherwise(pl.col(table.unit)).alias(table.unit),
        pl.when(pl.col(WITHHELD)).then(None).otherwise(value).alias(measure.column),
        pl.col(WITHHELD),
    ).sort(table.dimension_names)


def measure_counts(cells: pl.DataFrame, table: CohortTable) -> MeasureCounts:
    newly = cells.filter(~pl.col("_count_withheld"))

    def flagged(column: str) -> int:
        return newly.filter(pl.col(column)).height

    return MeasureCounts(
        table=table.name,
        measure=table.measure.column,
        kind=table.measure.kind,
        attribute=table.measure.attribute,
        cells=cells.height,
        cells_published=cells.filter(~pl.col(WITHHELD)).height,
        withheld_with_the_count=cells.filter(pl.col("_count_withheld")).height,
        withheld_p_percent=flagged("_p_percent"),
        withheld_dominance=flagged("_dominance"),
        withheld_zero_sum=flagged("_zero_sum"),
        withheld_few_distinct=flagged("_few_distinct"),
        withheld_secondary=flagged("_secondary"),
        withheld_small_count=flagged("_small_count"),
    )


class Exposure(Protocol):
    """A withheld sum the audit can narrow too far, as it names it."""

    table: str
    cell: dict[str, str | None]


SumAudit = Callable[[dict[str, pl.DataFrame]], Sequence[Exposure]]


def _neighbours(cells: pl.DataFrame, table: CohortTable, cell: dict) -> list[dict]:
    """Along each dimension, the line of cells that differ from `cell` in that dimension only
    (its ward's other cells, its band's other wards): the line's published cell with the
    smallest sum, for lines with no other withheld cell (those give the cell a second unknown
    in the line's total), by sum; failing that, for every line; failing that, the table's."""
    names = table.dimension_names
    open_ = ~pl.col(WITHHELD)

    def differs(name: str) -> pl.Expr:
        return pl.col(name).ne_missing(pl.lit(cell.get(name)))

    lines = [
        differs(n) & ~pl.any_horizontal([differs(m) for m in names if m != n] or [pl.lit(False)])
        for n in names
    ]
    bare = [line for line in lines if cells.filter(line & ~open_).height == 0]
    targets = []
    for line in bare or lines:
        candidates = cells.filter(open_ & line)
        if candidates.height:
            targets.append(candidates.sort([SUM, *names]).row(0, named=True))
    if not targets and cells.filter(open_).height:
        targets.append(cells.filter(open_).sort([SUM, *names]).row(0, named=True))
    return sorted(targets, key=lambda t: (t[SUM], [str(t[n]) for n in names]))


def _withhold(cells: pl.DataFrame, table: CohortTable, targets: list[dict]) -> pl.DataFrame:
    names = table.dimension_names
    hit = pl.any_horizontal(
        [pl.all_horizontal(pl.col(n).eq_missing(pl.lit(t[n])) for n in names) for t in targets]
        or [pl.lit(False)]
    )
    return cells.with_columns(
        (pl.col("_secondary") | hit).alias("_secondary"), (pl.col(WITHHELD) | hit).alias(WITHHELD)
    )


def protect_sums(
    cells: dict[str, pl.DataFrame],
    cohorts: CohortDefinitions,
    policy: DisclosurePolicy,
    audit: SumAudit,
) -> int:
    """Withhold more cells of the sum tables until the audit finds no withheld sum it can narrow
    to less than p% of its value. For each exposed cell, its neighbours (`_neighbours`) are
    tried one at a time, smallest sum first, and the first that the audit says protects it is
    kept; when none does alone, all are withheld. Updates `cells`; returns the audits run."""
    by_name = {t.name: t for t in cohorts.tables}
    audits = 0

    def exposed() -> list[Exposure]:
        nonlocal audits
        audits += 1
        if audits > MAX_AUDITS:
            raise DisclosureError(
                f"magnitude protection: withheld sums still recoverable after {MAX_AUDITS} "
                "audits; coarsen the magnitude tables"
            )
        return list(audit({n: published(c, by_name[n], policy) for n, c in cells.items()}))

    while exposures := exposed():
        for exposure in exposures:
            table = by_name.get(exposure.table)
            if table is None or table.name not in cells:
                continue
            key = (exposure.table, sorted(exposure.cell.items(), key=str))
            if not any((e.table, sorted(e.cell.items(), key=str)) == key for e in exposed()):
                continue  # an earlier exposure's protection protected this one too
            before = cells[table.name]
            targets = _neighbours(before, table, exposure.cell)
            for target in targets:
                cells[table.name] = _withhold(before, table, [target])
                still = exposed()
                if not any((e.table, sorted(e.cell.items(), key=str)) == key for e in still):
                    break
            else:
                cells[table.name] = _withhold(before, table, targets)
    return audits


@dataclass
class MeasuredRelease:
    tables: dict[str, pl.DataFrame]  # every staged table, magnitude tables with their measure
    measures: list[MeasureCounts]
    rounds: int  # sum audits run by the protection
    hidden: dict  # who is hidden in the magnitude tables (protect.hidden_by_group's shape)
    counts: list[TableCounts]  # the release's table counts, magnitude tables recounted


def measure_tables(
    staged: dict[str, pl.DataFrame],
    population: pl.DataFrame,
    cohorts: CohortDefinitions,
    policy: DisclosurePolicy,
    hierarchies: dict[str, Hierarchy],
    counts: Sequence[TableCounts] = (),
    audit: SumAudit | None = None,
) -> MeasuredRelease:
    """Add each magnitude table's measure to its staged count table (protected counts in,
    counts and measures protected together out)."""
    measured = [t for t in cohorts.tables if t.measure is not None and t.name in staged]
    cells = {
        t.name: measured_table(staged[t.name], population, t, policy, hierarchies)
        for t in measured
    }
    rounds = 0
    if audit is not None and cells:
        rounds = protect_sums(cells, cohorts, policy, audit)
    out = dict(staged)
    for table in measured:
        out[table.name] = published(cells[table.name], table, policy)
    as_counted = {n: c.rename({N: TRUE}) for n, c in cells.items()}
    hidden = hidden_by_group(as_counted, CohortDefinitions(tables=tuple(measured))) if cells else {}
    return MeasuredRelease(
        tables=out,
        measures=[measure_counts(cells[t.name], t) for t in measured],
        rounds=rounds,
        hidden=hidden,
        counts=[_recounted(c, as_counted.get(c.table)) for c in counts],
    )


def _recounted(counts: TableCounts, cells: pl.DataFrame | None) -> TableCounts:
    """A magnitude table's counts after its measure withheld more cells."""
    if cells is None:
        return counts
    withheld = cells.filter(pl.col(WITHHELD))
    newly = withheld.filter(~pl.col("_count_withheld")).height
    return replace(
        counts,
        rows_published=cells.height - withheld.height,
        cells_suppressed=withheld.height,
        cells_suppressed_secondary=counts.cells_suppressed_secondary + newly,
        units_in_published_cells=int(cells.filter(~pl.col(WITHHELD))[TRUE].sum()),
        units_in_suppressed_cells=int(withheld[TRUE].sum()),
    )


def magnitude_rules(rules: MagnitudeRules) -> dict[str, str]:
    """The rules in plain words, for the report."""
    p, n, k = rules.p_percent, rules.dominance_n, rules.dominance_k_percent
    return {
        "p% rule": (
            f"a sum or median is withheld where, after taking away the two largest amounts, "
            f"what is left is less than {p:g}% of the largest: the second-largest contributor "
            f"could then work out the largest to within {p:g}%"
        ),
        "(n,k) dominance": (
            f"withheld where the {n} largest amounts make up more than {k:g}% of the sum"
        ),
        "zero sum": "withheld where nobody in the cell has any amount",
        "median": (
            f"published only where the count is publishable, neither rule above applies and "
            f"the cell holds at least {rules.median_min_distinct} different amounts; rounded "
            f"to the nearest {rules.median_round_to}"
        ),
        "sum": f"rounded to the nearest {rules.sum_round_to}",
        "secondary protection": (
            f"more sums are withheld until no withheld sum can be worked out from the "
            f"published ones to within {p:g}% of its value (checked by linear programming)"
        ),
        "source": rules.source,
    }
