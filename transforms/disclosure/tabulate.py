"""Cohort tables from the whole linked population, with the small-number rule applied.

Every resident is counted: no record is suppressed before tabulation, because record
suppression lands on the smallest groups and would hide them from every table. Protection is
per cell instead:

- a cell below `policy.min_published_count` (the larger of k and the small-number threshold,
  raised so rounding never shows a number below k) is withheld (primary suppression);
- where a dimension is sensitive (an indicator, a care status), every group of the other
  dimensions lists every value of it, zeros included, and a group in which all or none of its
  units share one value is withheld whole (attribute disclosure);
- with the policy's `every_table_total`, every total of a table (over any subset of its
  columns) is treated as known, and within each the withheld cells are made none, or at least
  two holding together at least the threshold, by also withholding the smallest published
  cells (secondary suppression); by default secondary suppression is left to the release-wide
  audit (`protect.py`), which withholds only where what is published gives a cell away;
- published counts are rounded to the policy's base.

Withheld cells stay in the table as rows with no count and `withheld` true, so withheld is
never mistaken for zero. Protection across the tables of a release and across releases is
`protect.py`'s, driven by the independent audit.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import polars as pl

from schemas.cohorts import CohortDefinitions, CohortTable, Dimension, band_lower_bounds
from schemas.policy import DisclosurePolicy
from transforms.disclosure.hierarchy import Hierarchy

WITHHELD = "withheld"
TRUE = "_true"  # the true count: secure, never published
UNITS = "_units"  # how many units a row of `unit_groups` stands for


@dataclass(frozen=True)
class TableCounts:
    table: str
    unit: str
    cells: int
    rows_published: int
    cells_suppressed: int  # withheld for any reason
    cells_suppressed_secondary: int  # withheld only to protect other cells
    cells_attribute_disclosure: int  # withheld because a group was all or none
    units_in_published_cells: int
    units_in_suppressed_cells: int

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)


def round_to_base(counts: pl.Expr, base: int) -> pl.Expr:
    """Round half up to the nearest multiple of `base` (12 -> 10, 13 -> 15 for base 5)."""
    if base == 1:
        return counts
    return ((counts + base // 2) // base * base).cast(pl.Int64)


def _generalised(dimension: Dimension, hierarchies: dict[str, Hierarchy]) -> pl.Expr:
    source = pl.col(dimension.source)
    if dimension.level is None:
        return source
    mapping = {row[0]: row[dimension.level] for row in hierarchies[dimension.source].table()}
    return source.cast(pl.String).replace_strict(mapping, default=None)


def _banded(dimension: Dimension) -> pl.Expr:
    value = pl.col(dimension.source)
    labels = pl.lit(None, pl.String)
    for label, (lower, open_ended) in zip(
        dimension.bands, band_lower_bounds(dimension.bands), strict=True
    ):
        hit = value >= lower if open_ended else value == lower
        labels = pl.when(hit).then(pl.lit(label)).otherwise(labels)
    return labels


def _as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Boolean:
        yes_no = pl.when(pl.col(name)).then(pl.lit("yes"))
        return yes_no.when(~pl.col(name)).then(pl.lit("no")).alias(name)
    if isinstance(dtype, pl.List):
        return pl.col(name).list.join("+").alias(name)
    return pl.col(name).cast(pl.String).alias(name)


def columns_read(cohorts: CohortDefinitions, available: list[str]) -> list[str]:
    """The population columns the tables read (unit keys, dimension sources, filters,
    measures), in `available`'s order: a release reads only these (at 7M residents the other
    columns were a third of what the stage held)."""
    wanted = {"person_key", "household_key"}
    for table in cohorts.tables:
        wanted.update(d.source for d in table.dimensions)
        if table.where:
            wanted.update(pl.sql_expr(table.where).meta.root_names())
        if table.measure is not None:
            wanted.add(table.measure.attribute)
    return [c for c in available if c in wanted]


def units(
    population: pl.DataFrame, table: CohortTable, hierarchies: dict[str, Hierarchy]
) -> pl.DataFrame:
    """One row per counted unit, with one text column per dimension.

    A unit is a resident, or a household (taken from its member with the smallest person key);
    an expanded dimension repeats the unit once per member (or pair of members) of its list.
    """
    return expanded(unit_rows(population, table, hierarchies), table)


def unit_rows(
    population: pl.DataFrame,
    table: CohortTable,
    hierarchies: dict[str, Hierarchy],
    carried: tuple[str, ...] = (),
) -> pl.DataFrame:
    """One row per counted unit: its dimensions generalised or banded, not yet expanded or
    made text (`expanded` does both), and the population's `carried` columns as they are."""
    frame = population
    if table.where:
        frame = frame.filter(pl.sql_expr(table.where).fill_null(False))
    if table.unit == "households":
        # Only the columns the table reads, and each household's row picked by its smallest
        # person key (a sort of those columns alone): at 7M residents sorting every column and
        # grouping took 10 s and 5 GB.
        read = dict.fromkeys(
            ["household_key", "person_key", *(d.source for d in table.dimensions), *carried]
        )
        frame = (
            frame.filter(pl.col("household_key").is_not_null())
            .select(*read)
            .sort("person_key")
            .unique("household_key", keep="first")
        )
    pairs = [d for d in table.dimensions if d.expand == "pair"]
    columns = {}
    for d in table.dimensions:
        if d.expand == "pair":
            continue
        if d.bands is not None:
            columns[d.name] = _banded(d)
        else:
            columns[d.name] = _generalised(d, hierarchies)
    if pairs:
        first, second = pairs
        columns[first.name] = pl.col(first.source)
        columns[second.name] = pl.col(first.source)
    return frame.select(**columns, **{name: pl.col(name) for name in carried})


def expanded(rows: pl.DataFrame, table: CohortTable) -> pl.DataFrame:
    """`unit_rows` (or groups of them) with each expanded dimension's list exploded, every
    dimension as text and the `only` filters applied; other columns are carried along. Row by
    row: a group of equal rows expands as each of its rows would."""
    frame = rows
    for d in table.dimensions:
        if d.expand == "each":
            frame = frame.explode(d.name, empty_as_null=False, keep_nulls=False)
    pairs = [d for d in table.dimensions if d.expand == "pair"]
    if pairs:
        first, second = pairs
        frame = frame.explode(first.name, empty_as_null=False, keep_nulls=False)
        frame = frame.explode(second.name, empty_as_null=False, keep_nulls=False)
        frame = frame.filter(pl.col(first.name) <= pl.col(second.name))
    names = set(table.dimension_names)
    frame = frame.select(
        _as_text(name, dtype) if name in names else pl.col(name)
        for name, dtype in frame.schema.items()
    )
    for d in table.dimensions:
        if d.only:
            frame = frame.filter(pl.col(d.name).is_in(d.only))
    return frame


def true_cells(
    population: pl.DataFrame, table: CohortTable, hierarchies: dict[str, Hierarchy]
) -> pl.DataFrame:
    """The true count of every cell, as `_true`; a sensitive dimension's zeros included."""
    return cells_of(unit_groups(population, table, hierarchies), table)


def unit_groups(
    population: pl.DataFrame,
    table: CohortTable,
    hierarchies: dict[str, Hierarchy],
    summed: tuple[str, ...] = (),
) -> pl.DataFrame:
    """`units`, with the units of equal dimension values as one row: `UNITS` of them, and the
    sum of each of the population's `summed` columns over them.

    Grouped before the lists are expanded: a group expands as each of its units would, so its
    count goes to the same cells. Residents hold a few dozen department sets, so the
    department-overlap table's pairs are made for the groups, not for every pair of a
    resident's departments (10M-row council: 11M pairs; the 13 tables' cells with their cell
    keys 14.1 s -> 8.8 s, the same cells)."""
    rows = unit_rows(population, table, hierarchies, carried=summed)
    groups = rows.group_by([c for c in rows.columns if c not in summed]).agg(
        pl.len().alias(UNITS), *(pl.col(c).sum() for c in summed)
    )
    return expanded(groups, table)


def cells_of(groups: pl.DataFrame, table: CohortTable, *more: pl.Expr) -> pl.DataFrame:
    """`true_cells` from the table's `unit_groups`, with `more` aggregations of them per cell
    (null in a sensitive dimension's zero cells)."""
    names = table.dimension_names
    cells = groups.group_by(names).agg(pl.col(UNITS).sum().cast(pl.Int64).alias(TRUE), *more)
    for d in table.dimensions:
        if not d.sensitive:
            continue
        others = [n for n in names if n != d.name]
        groups = cells.select(others).unique() if others else pl.DataFrame({"_g": [0]})
        grid = groups.join(cells.select(d.name).unique(), how="cross").drop("_g", strict=False)
        cells = grid.join(cells, on=names, how="left", nulls_equal=True).with_columns(
            pl.col(TRUE).fill_null(0)
        )
    return cells.sort(names)


def all_or_none(cells: pl.DataFrame, table: CohortTable) -> pl.Expr:
    """Cells in a group (of the non-sensitive dimensions) whose units all share one value of a
    sensitive dimension: the group tells everyone's value, so the whole group is withheld."""
    names = table.dimension_names
    flagged = pl.lit(False)
    for d in table.dimensions:
        if d.sensitive:
            others = [n for n in names if n != d.name] or [pl.lit(0)]
            values_held = (pl.col(TRUE) > 0).sum().over(others)
            flagged = flagged | (values_held <= 1)
    return flagged


def protect_table(
    cells: pl.DataFrame, table: CohortTable, policy: DisclosurePolicy
) -> pl.DataFrame:
    """Mark withheld cells: primary, attribute disclosure, then secondary within the table."""
    threshold = policy.min_published_count
    cells = cells.with_columns(
        _primary=(pl.col(TRUE) > 0) & (pl.col(TRUE) < threshold),
        _attribute=all_or_none(cells, table),
    ).with_columns((pl.col("_primary") | pl.col("_attribute")).alias(WITHHELD))
    if policy.secondary_suppression == "every_table_total":
        cells = protect_against_differencing(cells, table.dimension_names, threshold)
    return cells


def published_frame(cells: pl.DataFrame, table: CohortTable, policy: DisclosurePolicy):
    """What is staged: dimensions, the rounded count (null where withheld), `withheld`."""
    count = round_to_base(pl.col(TRUE), policy.rule.round_to)
    return cells.select(
        *table.dimension_names,
        pl.when(pl.col(WITHHELD)).then(None).otherwise(count).cast(pl.Int64).alias(table.unit),
        pl.col(WITHHELD),
    ).sort(table.dimension_names)


def table_counts(cells: pl.DataFrame, table: CohortTable) -> TableCounts:
    withheld = cells.filter(pl.col(WITHHELD))
    kept = cells.filter(~pl.col(WITHHELD))
    first_reason = pl.col("_primary") | pl.col("_attribute")
    return TableCounts(
        table=table.name,
        unit=table.unit,
        cells=cells.height,
        rows_published=kept.height,
        cells_suppressed=withheld.height,
        cells_suppressed_secondary=withheld.filter(~first_reason).height,
        cells_attribute_disclosure=withheld.filter(pl.col("_attribute")).height,
        units_in_published_cells=int(kept[TRUE].sum()),
        units_in_suppressed_cells=int(withheld[TRUE].sum()),
    )


def tabulate(
    population: pl.DataFrame,
    table: CohortTable,
    policy: DisclosurePolicy,
    hierarchies: dict[str, Hierarchy] | None = None,
) -> tuple[pl.DataFrame, TableCounts]:
    """One table protected on its own (no audit): (staged frame, counts). Releases are
    protected by `protect.protect_release`."""
    cells = protect_table(true_cells(population, table, hierarchies or {}), table, policy)
    return published_frame(cells, table, policy), table_counts(cells, table)


def protect_against_differencing(
    cells: pl.DataFrame, dimensions: list[str], threshold: int
) -> pl.DataFrame:
    """Withhold more cells until, in every group of every total, the withheld cells are none,
    or at least two holding together at least `threshold` units.

    `cells` has the dimension columns, `_true` (count) and `withheld` (bool). Each pass
    withholds the smallest published cell of every group that breaks the rule; it stops when
    no group does (each pass withholds at least one cell, so it ends). Zero cells count as
    cells: a withheld zero protects like any other (the reader cannot tell it from a small one).
    """
    groupings = [
        list(combo) or ["_all"]
        for size in range(len(dimensions))
        for combo in itertools.combinations(dimensions, size)
    ]
    cells = cells.with_columns(pl.lit(0).alias("_all"))
    changed = True
    while changed:
        changed = False
        for keys in groupings:
            exposed = (
                cells.group_by(keys)
                .agg(
                    n=pl.col(WITHHELD).sum(),
                    units=pl.col(TRUE).filter(pl.col(WITHHELD)).sum(),
                    published=(~pl.col(WITHHELD)).sum(),
                )
                .filter(
                    (pl.col("n") >= 1)
                    & ((pl.col("n") == 1) | (pl.col("units") < threshold))
                    & (pl.col("published") > 0)
                )
                .select(keys)
            )
            if exposed.height == 0:
                continue
            partners = (
                cells.filter(~pl.col(WITHHELD))
                .join(exposed, on=keys)
                .sort([TRUE, *dimensions])
                .group_by(keys, maintain_order=True)
                .first()
                .select(dimensions)
                .with_columns(pl.lit(True).alias("_partner"))
            )
            cells = (
                cells.join(partners, on=dimensions, how="left", nulls_equal=True)
                .with_columns(pl.col(WITHHELD) | pl.col("_partner").fill_null(False))
                .drop("_partner")
            )
            changed = True
    return cells.drop("_all")
