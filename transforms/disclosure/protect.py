"""Protect every table of a release together, then report who is hidden.

Tables share margins (a department's residents by sex appear summed over wards in one table
and over age bands in another), and consecutive releases share most of their residents, so a
cell safe in its own table may be recovered from the others. Each table is first protected on
its own (`tabulate.protect_table`), and every cell the last release withheld is withheld
again. Then the release goes to an audit (passed in, so the judgement is made by code
independent of this module: `transforms/release/differencing.py`), which names every withheld
cell it can narrow too far from everything published, in this release and the last, and the
published cells whose constraints bound it. For each, we withhold the smallest of those; a cell
still exposed after BINDING_TRIES rounds (or with none named) gets blunter treatment: the
smallest published cell of its table that differs from it in one dimension, then one along every
dimension, then its margins in the other tables (its ward's total, say). We ask again until the
audit finds nothing, or give up and stop the release: never publish what the audit rejects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import polars as pl

from schemas.cohorts import CohortDefinitions, CohortTable
from schemas.errors import DisclosureError
from schemas.policy import DisclosurePolicy
from transforms.disclosure.hierarchy import Hierarchy
from transforms.disclosure.tabulate import (
    TRUE,
    WITHHELD,
    TableCounts,
    protect_table,
    published_frame,
    table_counts,
    true_cells,
)


class Exposure(Protocol):
    """A withheld cell the audit can narrow too far, as it names it."""

    table: str
    cell: dict[str, str | None]


Audit = Callable[[dict[str, pl.DataFrame]], Sequence[Exposure]]
MAX_ROUNDS = 40
# Times a cell exposed again is protected by freeing a constraint the audit names as binding,
# before the blunter steps (neighbours, every axis, margins) that hide more people.
BINDING_TRIES = 15


@dataclass
class ProtectedRelease:
    # What is staged: dimensions, count (null where withheld), withheld.
    tables: dict[str, pl.DataFrame]
    counts: list[TableCounts]
    rounds: int  # audit rounds until it found nothing
    cells_withheld_for_the_release: int  # beyond each table's own protection
    hidden: dict  # who is hidden: see hidden_by_group
    cells_withheld_again: int = 0  # of those, withheld because the last release withheld them


def _widen(
    cells: pl.DataFrame, table: CohortTable, cell: dict[str, str | None], every_axis: bool
) -> pl.DataFrame:
    """Withhold the named cell if it is published (a cell the previous release gives away, or
    one pinned to all or none). Otherwise withhold the smallest published cell that differs
    from it in one dimension only (so the totals it sits in gain a second unknown); with
    `every_axis`, one such cell along each dimension. Failing all, the table's smallest."""
    names = table.dimension_names
    published = ~pl.col(WITHHELD)

    def differs(name: str) -> pl.Expr:
        return pl.col(name).ne_missing(pl.lit(cell.get(name)))

    same = ~pl.any_horizontal(differs(n) for n in names)
    if cells.filter(published & same).height:
        return cells.with_columns(pl.col(WITHHELD) | same)
    targets = []
    for name in names:
        along = (
            published
            & differs(name)
            & ~pl.any_horizontal([differs(n) for n in names if n != name] or [pl.lit(False)])
        )
        candidates = cells.filter(along)
        if candidates.height:
            targets.append(candidates.sort([TRUE, *names]).row(0, named=True))
    if targets and not every_axis:
        targets = [min(targets, key=lambda t: (t[TRUE], [str(t[n]) for n in names]))]
    if not targets:
        candidates = cells.filter(published)
        if candidates.height == 0:
            return cells
        targets.append(candidates.sort([TRUE, *names]).row(0, named=True))
    hit = pl.any_horizontal(
        pl.all_horizontal(pl.col(n).eq_missing(pl.lit(t[n])) for n in names) for t in targets
    )
    return cells.with_columns(pl.col(WITHHELD) | hit)


def _withhold_binding(
    cells: dict[str, pl.DataFrame], by_name: dict[str, CohortTable], exposure: Exposure
) -> bool:
    """Withhold the smallest of the published cells the audit names as bounding the exposed
    cell's interval (its LP's binding constraints): freeing one of them is what widens it.
    False when the audit named none that is still published."""
    best = None
    for name, cell in getattr(exposure, "binding", ()):
        table = by_name.get(name)
        if table is None:
            continue
        names = table.dimension_names
        hit = pl.all_horizontal(pl.col(n).eq_missing(pl.lit(cell.get(n))) for n in names)
        found = cells[name].filter(hit & ~pl.col(WITHHELD))
        if found.height:
            rank = (int(found[TRUE][0]), name, [str(cell.get(n)) for n in names])
            if best is None or rank < best[0]:
                best = (rank, name, hit)
    if best is None:
        return False
    _, name, hit = best
    cells[name] = cells[name].with_columns(pl.col(WITHHELD) | hit)
    return True


def _withhold_again(cells: pl.DataFrame, table: CohortTable, last: pl.DataFrame) -> pl.DataFrame:
    """Withhold every cell of `cells` that the last release's `last` table withheld."""
    names = table.dimension_names
    if WITHHELD not in last.columns or not set(names) <= set(last.columns):
        return cells  # redefined since: the audit still compares the two
    was = last.filter(pl.col(WITHHELD)).select(names).unique().with_columns(_was=pl.lit(True))
    again = cells.join(was, on=names, how="left", nulls_equal=True, maintain_order="left")
    return again.with_columns(pl.col(WITHHELD) | pl.col("_was").fill_null(False)).drop("_was")


def _widen_margins(
    cells: dict[str, pl.DataFrame], by_name: dict[str, CohortTable], exposure: Exposure
) -> None:
    """For a cell still exposed after its own table was widened: in every other table sharing
    a dimension with it, withhold the smallest published cell that agrees with it on the shared
    dimensions (the margin that gives it away, such as its ward's total)."""
    for name, table in by_name.items():
        if name == exposure.table:
            continue
        shared = [n for n in table.dimension_names if n in exposure.cell]
        if not shared:
            continue
        agrees = pl.all_horizontal(pl.col(n).eq_missing(pl.lit(exposure.cell[n])) for n in shared)
        candidates = cells[name].filter(~pl.col(WITHHELD) & agrees)
        if candidates.height:
            target = candidates.sort([TRUE, *table.dimension_names]).row(0, named=True)
            hit = pl.all_horizontal(
                pl.col(n).eq_missing(pl.lit(target[n])) for n in table.dimension_names
            )
            cells[name] = cells[name].with_columns(pl.col(WITHHELD) | hit)


def protect_release(
    population: pl.DataFrame,
    cohorts: CohortDefinitions,
    policy: DisclosurePolicy,
    hierarchies: Mapping[str, Hierarchy],
    audit: Audit | None = None,
    previous: Mapping[str, pl.DataFrame] | None = None,
) -> ProtectedRelease:
    """`previous`: the last published release's tables (dimensions and `withheld`). Its
    withheld cells are withheld again from the start: a cell that was secondary last month and
    is published now gives last month's primary away, and covering it afresh hides more."""
    by_name = {t.name: t for t in cohorts.tables}
    cells = {
        t.name: protect_table(true_cells(population, t, dict(hierarchies)), t, policy)
        for t in cohorts.tables
    }
    own = {name: int(frame[WITHHELD].sum()) for name, frame in cells.items()}
    for name, last in (previous or {}).items():
        if name in cells:
            cells[name] = _withhold_again(cells[name], by_name[name], last)
    again = sum(int(frame[WITHHELD].sum()) - own[name] for name, frame in cells.items())
    rounds = withhold_until_audit_passes(
        cells,
        by_name,
        audit,
        lambda c: {n: published_frame(f, by_name[n], policy) for n, f in c.items()},
    )
    staged = {n: published_frame(c, by_name[n], policy) for n, c in cells.items()}
    extra = sum(int(c[WITHHELD].sum()) - own[n] for n, c in cells.items())
    return ProtectedRelease(
        tables=staged,
        counts=[table_counts(cells[t.name], t) for t in cohorts.tables],
        rounds=rounds,
        cells_withheld_for_the_release=extra,
        cells_withheld_again=again,
        hidden=hidden_by_group(cells, cohorts),
    )


def withhold_until_audit_passes(
    cells: dict[str, pl.DataFrame],
    by_name: dict[str, CohortTable],
    audit: Audit | None,
    stage: Callable[[dict[str, pl.DataFrame]], dict[str, pl.DataFrame]],
) -> int:
    """Withhold more of `cells` (each with TRUE and WITHHELD) until `audit`, shown the tables
    as `stage` makes them, finds nothing. Returns the audit rounds; stops the release when the
    audit still finds exposures after MAX_ROUNDS."""
    rounds = 0
    seen: dict[tuple, int] = {}
    blunt: dict[tuple, int] = {}
    while audit is not None:
        exposures = audit(stage(cells))
        rounds += 1
        if not exposures:
            break
        if rounds >= MAX_ROUNDS:
            raise DisclosureError(
                f"release protection: the audit still finds {len(exposures)} withheld or "
                f"perturbed cell(s) it can narrow too far after {MAX_ROUNDS} rounds (first: "
                f"table {exposures[0].table}); coarsen the cohort definitions or raise the "
                "policy's threshold"
            )
        for exposure in exposures:
            # A cell of the previous release is protected by withholding around the same cell
            # of this one: that is where the new numbers give it away.
            table = by_name.get(exposure.table)
            if table is None:
                continue
            key = (table.name, tuple(sorted(exposure.cell.items(), key=str)))
            # Free one binding constraint at a time (the audit checks each); then escalate for
            # a cell exposed again: its smallest neighbour, then one along every dimension, then
            # its margins in the other tables. Each step hides more people than the one before.
            seen[key] = seen.get(key, 0) + 1
            if seen[key] <= BINDING_TRIES and _withhold_binding(cells, by_name, exposure):
                continue
            blunt[key] = blunt.get(key, 0) + 1
            cells[table.name] = _widen(cells[table.name], table, exposure.cell, blunt[key] > 1)
            if blunt[key] > 2:
                _widen_margins(cells, by_name, exposure)
    return rounds


def hidden_by_group(cells: dict[str, pl.DataFrame], cohorts: CohortDefinitions) -> dict:
    """Who is hidden: for every table and dimension, per value, how many units the table
    counts and how many sit in withheld cells.

    `{table: {"unit": "people", "dimensions": {dimension: {value: {"units": n, "hidden": h}}}}}`
    """
    out: dict = {}
    for table in cohorts.tables:
        frame = cells[table.name]
        dims: dict = {}
        for name in table.dimension_names:
            per_value = (
                frame.group_by(name)
                .agg(
                    units=pl.col(TRUE).sum(),
                    hidden=pl.col(TRUE).filter(pl.col(WITHHELD)).sum(),
                )
                .sort(name)
            )
            dims[name] = {
                str(row[name]): {"units": int(row["units"]), "hidden": int(row["hidden"])}
                for row in per_value.iter_rows(named=True)
            }
        out[table.name] = {"unit": table.unit, "dimensions": dims}
    return out


def worst_hidden_share(hidden: dict, dimension_sources: dict[str, set[str]]) -> dict:
    """For each group of interest, the largest share of a value's units hidden in any table
    where it is a dimension: `{group: {value: (share, table)}}`. `dimension_sources` maps a group
    name (e.g. "department") to the published dimension names that carry it."""
    worst: dict = {}
    for table, entry in hidden.items():
        for dimension, values in entry["dimensions"].items():
            for group, names in dimension_sources.items():
                if dimension not in names:
                    continue
                for value, n in values.items():
                    share = n["hidden"] / n["units"] if n["units"] else 0.0
                    if share >= worst.setdefault(group, {}).get(value, (-1.0, ""))[0]:
                        worst[group][value] = (round(share, 4), table)
    return worst
