"""Cell-key perturbation of every table of a release, as the ONS protected Census 2021 tables.

- Every unit carries a record key 0..255 taken from its keyed pseudonym (the last two hex digits
  of `person_key`, or `household_key` for household tables: both are SHA-256 output, so the
  digits are uniform, and stable across releases under one key).
- A cell's key is the sum of its members' record keys mod 256 (a resident in several cells of
  an `expand` table adds their key to each).
- The published count is the true count plus the noise the perturbation table
  (`policy.perturbation`, from data_contracts/) gives for (true count, cell key).

The same people give the same cell key, so the same cell gets the same noise in every table and
every release: differencing two tables, or two releases, cancels no noise. A group of a table
with a sensitive dimension that is all or none of one value is still withheld (a true zero
publishes as zero, so perturbation alone would show it).

Tables share margins, so the noise of one cell can sometimes be narrowed from the intervals of
the others. With an `audit` (the independent one, transforms/release/differencing.py), a cell
it can still narrow too far is protected exactly as suppression does
(`protect.withhold_until_audit_passes`), until the audit finds nothing. Nobody is withheld
otherwise; the people "hidden" are those in withheld cells and in cells published as 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from schemas.cohorts import CohortDefinitions, CohortTable
from schemas.policy import DisclosurePolicy, PerturbationTable
from transforms.disclosure.hierarchy import Hierarchy
from transforms.disclosure.protect import (
    Audit,
    ProtectedRelease,
    hidden_by_group,
    withhold_until_audit_passes,
)
from transforms.disclosure.tabulate import (
    TRUE,
    WITHHELD,
    TableCounts,
    all_or_none,
    cells_of,
    table_counts,
    unit_groups,
)

RECORD_KEY = "_record_key"
CELL_KEY = "_cell_key"
PUBLISHED = "_published"
UNIT_KEY = {"people": "person_key", "households": "household_key"}


@dataclass(frozen=True)
class PerturbedTableCounts(TableCounts):
    cells_perturbed: int = 0  # published value differs from the true count
    cells_published_as_zero: int = 0  # someone in it, published 0


def record_key(pseudonym: pl.Expr) -> pl.Expr:
    """0..255 from the last two hex digits of a keyed pseudonym."""
    return pseudonym.str.slice(-2).str.to_integer(base=16, strict=True).cast(pl.Int64)


def noise_frame(ptable: PerturbationTable) -> pl.DataFrame:
    """(row, cell key, noise) for every row of the table and every one of its 256 keys: keys
    are allotted to published values in increasing order, cell key 0 first."""
    rows, keys, noise = [], [], []
    for row in ptable.rows:
        key = 0
        for published in sorted(row.to):
            for _ in range(row.to[published]):
                rows.append(row.count)
                keys.append(key)
                noise.append(published - row.count)
                key += 1
    return pl.DataFrame(
        {"_row": rows, CELL_KEY: keys, "_noise": noise},
        schema={"_row": pl.Int64, CELL_KEY: pl.Int64, "_noise": pl.Int64},
    )


def _cells_with_keys(
    population: pl.DataFrame, table: CohortTable, hierarchies: dict[str, Hierarchy]
) -> pl.DataFrame:
    """`true_cells` with every occupied cell's cell key: the record keys of its members (each
    counted as often as the member counts in the cell), summed mod 256."""
    keyed = population.with_columns(record_key(pl.col(UNIT_KEY[table.unit])).alias(RECORD_KEY))
    return cells_of(
        unit_groups(keyed, table, hierarchies, summed=(RECORD_KEY,)),
        table,
        (pl.col(RECORD_KEY).sum() % 256).alias(CELL_KEY),
    )


def perturb_table(
    population: pl.DataFrame,
    table: CohortTable,
    ptable: PerturbationTable,
    hierarchies: dict[str, Hierarchy],
    noise: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The table's cells with `_true`, `_cell_key`, `_published` and `withheld` (all-or-none
    groups of a sensitive dimension); `_primary`/`_attribute` as tabulate's counts expect."""
    names = table.dimension_names
    noise = noise_frame(ptable) if noise is None else noise
    cells = _cells_with_keys(population, table, hierarchies)
    cells = (
        cells.with_columns(
            pl.col(CELL_KEY).fill_null(0),
            pl.min_horizontal(pl.col(TRUE), pl.lit(ptable.largest_row)).alias("_row"),
        )
        .join(noise, on=["_row", CELL_KEY], how="left")
        .with_columns((pl.col(TRUE) + pl.col("_noise")).alias(PUBLISHED))
        .drop("_row", "_noise")
    )
    return (
        cells.with_columns(_primary=pl.lit(False), _attribute=all_or_none(cells, table))
        .with_columns(pl.col("_attribute").alias(WITHHELD))
        .sort(names)
    )


def staged_frame(cells: pl.DataFrame, table: CohortTable) -> pl.DataFrame:
    """What is staged: dimensions, the perturbed count (null where withheld), `withheld`."""
    return cells.select(
        *table.dimension_names,
        pl.when(pl.col(WITHHELD))
        .then(None)
        .otherwise(pl.col(PUBLISHED))
        .cast(pl.Int64)
        .alias(table.unit),
        pl.col(WITHHELD),
    )


def perturbed_counts(cells: pl.DataFrame, table: CohortTable) -> PerturbedTableCounts:
    shown = cells.filter(~pl.col(WITHHELD))
    zeroed = shown.filter((pl.col(TRUE) > 0) & (pl.col(PUBLISHED) == 0))
    counts = table_counts(cells, table).to_dict()
    return PerturbedTableCounts(
        **counts,
        cells_perturbed=shown.filter(pl.col(PUBLISHED) != pl.col(TRUE)).height,
        cells_published_as_zero=zeroed.height,
    )


def perturb_release(
    population: pl.DataFrame,
    cohorts: CohortDefinitions,
    policy: DisclosurePolicy,
    hierarchies: Mapping[str, Hierarchy],
    audit: Audit | None = None,
) -> ProtectedRelease:
    """Every table of the release perturbed, in the shape `protect.protect_release` returns."""
    if policy.perturbation is None:
        raise ValueError("cell-key perturbation needs the policy's perturbation table")
    ptable = policy.perturbation
    noise = noise_frame(ptable)
    by_name = {t.name: t for t in cohorts.tables}
    cells = {
        t.name: perturb_table(population, t, ptable, dict(hierarchies), noise)
        for t in cohorts.tables
    }
    own = {name: int(frame[WITHHELD].sum()) for name, frame in cells.items()}
    rounds = withhold_until_audit_passes(
        cells, by_name, audit, lambda c: {n: staged_frame(f, by_name[n]) for n, f in c.items()}
    )
    # Who is hidden: people in withheld cells and in cells published as 0.
    hidden_view = {
        name: frame.with_columns(pl.col(WITHHELD) | ((pl.col(TRUE) > 0) & (pl.col(PUBLISHED) == 0)))
        for name, frame in cells.items()
    }
    return ProtectedRelease(
        tables={t.name: staged_frame(cells[t.name], t) for t in cohorts.tables},
        counts=[perturbed_counts(cells[t.name], t) for t in cohorts.tables],
        rounds=rounds,
        cells_withheld_for_the_release=sum(
            int(c[WITHHELD].sum()) - own[n] for n, c in cells.items()
        ),
        hidden=hidden_by_group(hidden_view, cohorts),
    )
