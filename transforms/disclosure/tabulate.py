"""Cohort tables from the anonymised population, with the small-number rule applied.

A published row must stand for at least `policy.min_published_count` people (the larger of k
and the small-number threshold); smaller cells are withheld entirely rather than shown as a
blank, so no published row stands for fewer than k people. Published counts are rounded to the
policy's base.

Withholding one cell is not enough when a total is known: a department's caseload, published
elsewhere, minus the published cells gives the withheld one back. So every total of a table
(over any subset of its columns, including the grand total) is treated as known, and within
each such group the withheld cells are made at least two and together at least the threshold,
by also withholding the smallest published cells of the group (secondary suppression).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import polars as pl

from schemas.policy import CohortTable, DisclosurePolicy


@dataclass(frozen=True)
class TableCounts:
    table: str
    unit: str
    rows_published: int
    cells_suppressed: int  # below the threshold, plus those withheld to protect them
    cells_suppressed_secondary: int
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
    threshold = policy.min_published_count
    cells = cells.with_columns((pl.col("_true") < threshold).alias("_withheld"))
    primary = int(cells["_withheld"].sum())
    cells = protect_against_differencing(cells, list(table.dimensions), threshold)
    keep = ~pl.col("_withheld")
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
        cells_suppressed_secondary=withheld.height - primary,
        units_in_published_cells=int(cells.filter(keep)["_true"].sum()),
        units_in_suppressed_cells=int(withheld["_true"].sum()),
    )
    return published, counts


def protect_against_differencing(
    cells: pl.DataFrame, dimensions: list[str], threshold: int
) -> pl.DataFrame:
    """Withhold more cells until, in every group of every total, the withheld cells are none,
    or at least two holding together at least `threshold` units.

    `cells` has the dimension columns, `_true` (count) and `_withheld` (bool). Each pass
    withholds the smallest published cell of every group that breaks the rule; it stops when
    no group does (each pass withholds at least one cell, so it ends).
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
                    n=pl.col("_withheld").sum(),
                    units=pl.col("_true").filter(pl.col("_withheld")).sum(),
                    published=(~pl.col("_withheld")).sum(),
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
                cells.filter(~pl.col("_withheld"))
                .join(exposed, on=keys)
                .sort(["_true", *dimensions])
                .group_by(keys, maintain_order=True)
                .first()
                .select(dimensions)
                .with_columns(pl.lit(True).alias("_partner"))
            )
            cells = (
                cells.join(partners, on=dimensions, how="left", nulls_equal=True)
                .with_columns(pl.col("_withheld") | pl.col("_partner").fill_null(False))
                .drop("_partner")
            )
            changed = True
    return cells.drop("_all")
