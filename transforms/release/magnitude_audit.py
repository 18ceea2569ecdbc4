"""The independent checks of sums and medians (cohorts.yaml `measure`), sibling of the count
audit in `differencing.py`, whose DuckDB recount and HiGHS model it reuses. It shares no code
with `transforms/disclosure/magnitude.py`, which decides what to withhold.

Two checks:

- `check_measures` (a gate): recounts every magnitude table's cells from the population in
  DuckDB and refuses a published sum or median from a sensitive cell (count below the
  policy's smallest publishable count, p% rule, (n,k) dominance, zero sum, or for a median too
  few distinct values), or a withheld row that shows a measure.
- `SumAuditor` (differencing): the attacker's linear system for sums. For every group of sum
  tables over one attribute and unit, an *atom* is a distinct combination of the columns those
  tables depend on, and its sum s >= 0 a variable (sums are of non-negative amounts); every cell
  is the sum of its atoms' sums. A published sum r (rounded to base b) is [r - b/2, r + b/2];
  a withheld sum is only >= 0; cells shared between tables (a ward total and the ward's cells
  by age band) are one system, so margins act as equalities. Count tables' constraints are
  not used (they say nothing certain about amounts). For every withheld sum the LP bounds
  [min, max] must be at least p% of its true value apart (tau-Argus's protection level for the
  p% rule, as an absolute width); a failure names the table and the cell, never a value.
This release only: sums are not compared with the previous release's (see README).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy import sparse

from schemas.errors import DisclosureError
from transforms.release.differencing import (
    UNIT_KEY,
    _finest_levels,
    _Recount,
    _System,
    _unit_source,
    _where_columns,
)

EPSILON = 1e-6
# HiGHS's bounds are right to within its tolerances, not exactly (8e-5 off on the 10M council's
# count systems, `differencing.WHOLE`). A withheld sum whose interval is exactly p% of its value
# passes the rule; with a comparison to 1e-6, a solve a little off failed it. A width within
# SLACK of p%, in the measure's unit (a tenth of a penny for amounts in pounds), counts as p%.
SLACK = 1e-3


@dataclass(frozen=True)
class SumFailure:
    table: str
    cell: dict[str, str | None]  # dimension -> code or band, never a value
    kind: str = "interval"


@dataclass
class SumAuditResult:
    cells_audited: int = 0
    cells_withheld: int = 0
    failures: list[SumFailure] = field(default_factory=list)
    linear_programs: int = 0
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failed": len(self.failures)}


def _sum_tables(cohorts: Any) -> list[Any]:
    return [t for t in cohorts.tables if t.measure is not None and t.measure.kind == "sum"]


def _columns(tables: list[Any], recount: _Recount) -> list[str]:
    columns = []
    for table in tables:
        columns += [d.source for d in table.dimensions]
        columns += _where_columns(table.where, recount.columns)
    return list(dict.fromkeys(c for c in columns if c not in UNIT_KEY.values()))


class SumAuditor:
    """Builds the attacker's system for the sums once; `audit(tables)` checks the tables as
    they stand (which cells are withheld)."""

    def __init__(self, population: pl.DataFrame, cohorts: Any, hierarchies: dict, policy: Any):
        self.policy = policy
        self.tables = {t.name: t for t in _sum_tables(cohorts)}
        self.index: dict[tuple[str, tuple], int] = {}
        self.meta: list[tuple[str, tuple]] = []
        self.true: list[float] = []
        self.systems: list[tuple[_System, list[int]]] = []  # one per attribute and unit
        groups: dict[tuple[str, str], list[Any]] = {}
        for table in self.tables.values():
            groups.setdefault((table.unit, table.measure.attribute), []).append(table)
        recount = _Recount(population, hierarchies, "current")
        try:
            for (unit, attribute), tables in groups.items():
                system = self._system(recount, unit, attribute, tables)
                if system[1]:  # a table no unit reaches (a department missing) has no cells
                    self.systems.append(system)
        finally:
            recount.con.close()

    def _system(self, recount: _Recount, unit: str, attribute: str, tables: list[Any]):
        # A sensitive dimension lists zero cells, withheld as all-or-none: the attacker does not
        # know they are empty, so every atom gets variants in each sensitive column (sum 0).
        varied = list(dict.fromkeys(d.source for t in tables for d in t.dimensions if d.sensitive))
        recount.coarsen(_finest_levels(tables, recount.columns))
        units, atoms_table = recount.atoms(unit, _columns(tables, recount), varied)
        recount.register("unit_atoms", units)
        source = _unit_source(unit)
        key = UNIT_KEY[unit]
        sums = recount.con.sql(
            f'SELECT u.atom, sum(coalesce(CAST(s."{attribute}" AS DOUBLE), 0)) AS s, '
            f'min(CAST(s."{attribute}" AS DOUBLE)) AS low FROM unit_atoms u '
            f"JOIN {source} s ON s.{key} = u.unit_key GROUP BY u.atom"
        ).pl()
        if sums.height and (sums["low"].min() or 0) < 0:
            raise DisclosureError(
                f"magnitude audit: '{attribute}' has negative values; sums of them cannot be "
                "audited as sums of non-negative amounts"
            )
        atom_sum = dict(zip(sums["atom"].to_list(), sums["s"].to_list(), strict=True))
        rows, cols, vals, first = [], [], [], len(self.meta)
        for table in tables:
            names = table.dimension_names
            # In value order, not the order DuckDB's threads return the groups: one LP.
            member = recount.cells(table, atoms_table).sort([*names, "atom"], nulls_last=True)
            for record in member.iter_rows(named=True):
                cell = (table.name, tuple(record[n] for n in names))
                if cell not in self.index:
                    self.index[cell] = len(self.meta)
                    self.meta.append(cell)
                    self.true.append(0.0)
                row = self.index[cell]
                self.true[row] += record["mult"] * atom_sum.get(record["atom"], 0.0)
                rows.append(row - first)
                cols.append(record["atom"])
                vals.append(float(record["mult"]))
        n_rows = len(self.meta) - first
        n_cols = (max(cols) + 1) if cols else 0
        if n_rows == 0:
            return None, []
        matrix = sparse.csc_matrix((vals, (rows, cols)), shape=(n_rows, n_cols))
        return _System(matrix), list(range(first, len(self.meta)))

    def audit(self, tables: dict[str, pl.DataFrame]) -> SumAuditResult:
        started = time.perf_counter()
        base = self.policy.magnitude.sum_round_to
        share = self.policy.magnitude.p_percent / 100.0
        n = len(self.meta)
        lower, upper = np.zeros(n), np.full(n, math.inf)
        withheld: list[int] = []
        shown: set[int] = set()
        for name, table in self.tables.items():
            frame = tables.get(name)
            if frame is None:
                continue
            names = table.dimension_names
            keys = frame.select(pl.col(c).cast(pl.String) for c in names).rows()
            values = frame[table.measure.column].to_list()
            for key, value, flag in zip(keys, values, frame["withheld"].to_list(), strict=True):
                row = self.index.get((name, key))
                if row is None:
                    continue  # a cell no unit reaches (a listed zero): its sum is 0
                shown.add(row)
                if flag or value is None:
                    withheld.append(row)
                else:
                    lower[row], upper[row] = max(value - base / 2, 0.0), value + base / 2
        unseen = [self.meta[r][0] for r in range(n) if r not in shown and self.meta[r][0] in tables]
        true = np.asarray(self.true)
        off = np.flatnonzero((true < lower - EPSILON) | (true > upper + EPSILON))
        if unseen or off.size:
            raise DisclosureError(
                f"magnitude audit: {len(unseen) + off.size} sum cell(s) disagree with the "
                "audit's own count of the population; it cannot vouch for this release"
            )
        result = SumAuditResult(cells_audited=n, cells_withheld=len(withheld))
        for system, rows in self.systems:
            system.set_row_bounds(lower[rows], upper[rows])
            position = {row: i for i, row in enumerate(rows)}
            for row in withheld:
                if row not in position or true[row] <= 0:
                    continue
                top = system.bound([position[row]], maximise=True)
                result.linear_programs += 1
                if math.isinf(top) or top - true[row] >= share * true[row]:
                    continue  # its minimum is at most its true value: wide enough
                low = system.bound([position[row]], maximise=False)
                result.linear_programs += 1
                if top - low < share * true[row] - SLACK:
                    name, key = self.meta[row]
                    names = self.tables[name].dimension_names
                    result.failures.append(SumFailure(name, dict(zip(names, key, strict=True))))
        result.seconds = round(time.perf_counter() - started, 3)
        return result


def raise_on_sum_failures(result: SumAuditResult) -> None:
    if result.passed:
        return
    first = result.failures[0]
    cell = ", ".join(f"{k}={v}" for k, v in first.cell.items())
    raise DisclosureError(
        f"magnitude audit: {len(result.failures)} withheld sum(s) can be worked out to within "
        f"the policy's p% from what is published; first: table {first.table}, cell ({cell})"
    )


# ----------------------------------------------------------------------------------------
# The gate: no published measure from a sensitive cell


def _cell_statistics(recount: _Recount, table: Any) -> pl.DataFrame:
    """Per cell, from one atom per unit: count, sum, contributions in descending order,
    distinct values."""
    attribute = table.measure.attribute
    columns = [d.source for d in table.dimensions] + _where_columns(table.where, recount.columns)
    columns = [c for c in dict.fromkeys(columns) if c not in UNIT_KEY.values()]
    atoms_table = recount.units_as_atoms(table.unit, [*columns, attribute])
    member = recount.cells(table, atoms_table)
    recount.register("member", member)
    names = ", ".join(f'm."{n}"' for n in table.dimension_names)
    return recount.con.sql(
        f"SELECT {names}, count(*) AS n, sum(coalesce(a.\"{attribute}\", 0)) AS total, "
        f"list_sort(list(coalesce(CAST(a.\"{attribute}\" AS DOUBLE), 0)), 'DESC') AS ranked, "
        f'count(DISTINCT a."{attribute}") AS distinct_values '
        f"FROM member m JOIN {atoms_table} a ON a.atom = m.atom GROUP BY ALL"
    ).pl()


def check_measures(
    staged: dict[str, pl.DataFrame], population: pl.DataFrame, cohorts: Any, policy: Any,
    hierarchies: dict,
) -> dict[str, int]:
    """Refuse (DisclosureError) a published measure from a sensitive cell or a withheld row
    showing one; returns counts of what was checked."""
    rules = policy.magnitude
    problems: list[str] = []
    checked = published = 0
    recount = _Recount(population, hierarchies, "current")
    try:
        for table in cohorts.tables:
            if table.measure is None or table.name not in staged:
                continue
            frame = staged[table.name]
            column = table.measure.column
            names = table.dimension_names
            if column not in frame.columns:
                problems.append(f"{table.name}: the measure column {column} is missing")
                continue
            shown = frame.select(
                *(pl.col(n).cast(pl.String) for n in names), pl.col(column).alias("_shown"),
                "withheld",
            )  # fmt: skip
            stats = _cell_statistics(recount, table)
            ranked = pl.col("ranked")
            x1 = ranked.list.get(0, null_on_oob=True).fill_null(0.0)
            x2 = ranked.list.get(1, null_on_oob=True).fill_null(0.0)
            top_n = ranked.list.head(rules.dominance_n).list.sum()
            sensitive = (
                (pl.col("n") < policy.min_published_count)
                | ((pl.col("total") - x1 - x2) < rules.p_percent / 100.0 * x1)
                | (top_n > rules.dominance_k_percent / 100.0 * pl.col("total"))
                | (pl.col("total") <= 0)
            )
            if table.measure.kind == "median":
                sensitive = sensitive | (pl.col("distinct_values") < rules.median_min_distinct)
            stats = stats.select(*names, sensitive.alias("_sensitive"))
            joined = shown.join(stats, on=names, how="left", nulls_equal=True)
            with_value = joined.filter(pl.col("_shown").is_not_null())
            checked += joined.height
            published += with_value.height
            from_sensitive = with_value.filter(pl.col("_sensitive").fill_null(True)).height
            if from_sensitive:
                problems.append(
                    f"{table.name}: {from_sensitive} published {column} value(s) from a "
                    "sensitive cell (small count, p% rule, dominance, zero sum or few values)"
                )
            leaked = with_value.filter(pl.col("withheld")).height
            if leaked:
                problems.append(f"{table.name}: {leaked} withheld row(s) show {column}")
    finally:
        recount.con.close()
    if problems:
        raise DisclosureError("release failed its magnitude checks: " + "; ".join(problems))
    return {"measure_cells_checked": checked, "measure_values_published": published}


def audit_measures(
    staged: dict[str, pl.DataFrame], population: pl.DataFrame, cohorts: Any, policy: Any,
    hierarchies: dict, auditor: SumAuditor | None = None,
) -> dict[str, Any]:
    """Both checks, as the release gates run them: sensitive cells, then the sums' audit
    (`auditor`: one already built for this population and these cohorts, else a new one)."""
    if not any(t.measure is not None for t in cohorts.tables):
        return {}
    counts = check_measures(staged, population, cohorts, policy, hierarchies)
    auditor = auditor or SumAuditor(population, cohorts, hierarchies, policy)
    result = auditor.audit(staged)
    raise_on_sum_failures(result)
    return {**counts, "sum_audit": result.to_dict()}
