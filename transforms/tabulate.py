"""Cohort tables from the anonymised population, with the small-number rule applied.

A published row must stand for at least `policy.min_published_count` people (the larger of k
and the small-number threshold); smaller cells are withheld entirely rather than shown as a
blank, so no published row stands for fewer than k people. Published counts are rounded to the
policy's base, which also blurs what a sum of published rows could reveal about withheld ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import polars as pl

from schemas.policy import CohortTable, DisclosurePolicy


@dataclass(frozen=True)
class TableCounts:
    table: str
    unit: str
    rows_published: int
    cells_suppressed: int
    units_in_published_cells: int
    units_in_suppressed_cells: int

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)


def round_to_base(counts: pl.Expr, base: int) -> pl.Expr:
    """Round half up to the nearest multiple of `base` (12 -> 10, 13 -> 15 for base 5)."""
    if base == 1:
        return counts
    return ((counts + base // 2) // base * base).cast(pl.Int64)


def _units(population: pl.DataFrame, table: CohortTable) -> pl.DataFrame:
    """One row per counted unit (a resident, or a resident per department, or a household)."""
    frame = population
    if table.per_department:
        frame = frame.explode("departments").rename({"departments": "department"})
    if table.unit == "households":
        frame = (
            frame.filter(pl.col("household_key").is_not_null())
            .sort("person_key")
            .group_by("household_key")
            .agg(pl.all().exclude("household_key").first())
        )
    list_columns = [name for name, dtype in frame.schema.items() if dtype == pl.List(pl.String)]
    return frame.with_columns(pl.col(c).list.join("+") for c in list_columns)


def tabulate(
    population: pl.DataFrame, table: CohortTable, policy: DisclosurePolicy
) -> tuple[pl.DataFrame, TableCounts]:
    sources = list(table.dimensions.values())
    cells = (
        _units(population, table)
        .group_by(sources)
        .agg(pl.len().cast(pl.Int64).alias("_true"))
        .rename({src: out for out, src in table.dimensions.items()})
        .with_columns(pl.col(c).cast(pl.String) for c in table.dimensions)
    )
    keep = pl.col("_true") >= policy.min_published_count
    published = (
        cells.filter(keep)
        .with_columns(round_to_base(pl.col("_true"), policy.rule.round_to).alias(table.unit))
        .select(*table.dimensions, table.unit)
        .sort(list(table.dimensions))
    )
    withheld = cells.filter(~keep)
    counts = TableCounts(
        table=table.name,
        unit=table.unit,
        rows_published=published.height,
        cells_suppressed=withheld.height,
        units_in_published_cells=int(cells.filter(keep)["_true"].sum()),
        units_in_suppressed_cells=int(withheld["_true"].sum()),
    )
    return published, counts
