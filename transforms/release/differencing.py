"""The independent audit of a release: what an attacker can derive about withheld cells from
everything published, by linear programming (HiGHS).

This module shares no code with tabulation or protection (`transforms/disclosure/tabulate.py`):
it recounts every table from the linked population in DuckDB from the cohort definitions, so a
mistake in the protection, or a disagreement between the two readings of a definition, shows.

The attacker's system
---------------------
Units are residents (people tables) or households (households tables: a household with a
household_key, its values taken from its member with the smallest person_key; a table's `where`
is evaluated on those values). An *atom* is a distinct combination of every column any table of
that unit space depends on (dimension sources and the columns its `where` names); its count is
a variable x >= 0. Atoms that every table sees identically (the same cells, with the same
multiplicity) are merged: the intervals are the same and the system smaller. Only atoms that
exist in the population are variables: the attacker is assumed to know which combinations
exist, which can only narrow what they derive, so the audit is conservative.

Every cell of every table is the sum of its atoms (an `expand: each` unit counts once per list
member, `expand: pair` once per pair a <= b). Constraints from what is published:
- a published count r (rounded half up to base b) is the interval [r - b//2, r + (b-1)//2], and
  since the policy is public, a published non-zero count also means at least
  `policy.min_published_count`;
- a published 0 is 0; a cell absent from a table (its combination occurs nowhere) is 0;
- a withheld cell is only x >= 0, and >= 1 in a table without a sensitive dimension (there a row
  is present only when at least one unit is in it);
- under cell-key perturbation (policy `method: cell_key`, or a previous release built so), a
  published value p is the interval of true counts the perturbation table could have turned
  into p (at most [p - D, p + D], never below 0), read from the table here, apart from the
  perturbation code; a value no true count can give fails as "small".
With `previous` (the last published release), atoms are joint over both releases by unit key
(person_key, household_key): distinct pairs (atom in previous, atom in current), a unit present
in one release only paired with "absent". Both releases' published cells then constrain one
system, so what the two releases give together (a resident who arrived between them sitting
alone in a withheld cell) is found.

What fails
----------
- small: a cell whose true count is 1 to `min_published_count - 1` is published.
- interval: a withheld or perturbed cell whose true count is 1 to `min_published_count - 1` (a
  primary cell, in this release or the previous one) for which the attacker's interval
  [min, max] (LP bounds, rounded inwards to whole numbers as an attacker counting people
  would) is narrower than the policy's protection width: max - min < protection_width.
- all / none (attribute disclosure), per table with a sensitive dimension S, per group g of the
  table's other dimensions and value s of S: "all" when the group certainly holds someone
  (min of the group's total >= 1) and every one of them has s (max of the group's units outside
  s = 0); "none" when the group certainly holds someone and none of them has s (max of the cell
  (g, s) = 0). For a yes/no dimension, "none have yes" is "all have no". In this check the
  attacker is not assumed to know the sensitive values: for every existing atom the audit adds
  variants differing in one sensitive column (any value that column takes), with no count, so
  only what is published can rule them out. This check uses the current release alone, and a
  variant changes only the sensitive column, not columns derived from it (indicator_count).
The LPs are the relaxation of the integer problem: an attacker solving the integer problem may
find narrower intervals than this audit (as with tau-Argus's audit, which is also an LP).

Most withheld cells are far from narrow, so they are shown wide enough together: one LP
maximises the sum over the cells of min(cell, true count + width), and every cell reaching its
cap can reach it alone (its minimum is at most its true count, so its interval is wide enough);
the cells that do not are bounded one LP each, maximum then minimum. The attribute checks are
batched the same way (a sum that can reach 1 is not pinned to 0).

Repeated audits (protect -> audit -> withhold more -> audit) reuse one `Auditor`: the atoms, the
matrix and the HiGHS models are built once, and each audit only changes the row bounds and the
objective or the caps, re-solving warm from the previous basis.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import highspy
import numpy as np
import polars as pl
from scipy import sparse

from schemas.errors import DisclosureError

CURRENT, PREVIOUS = "current", "previous"
UNIT_KEY = {"people": "person_key", "households": "household_key"}
EPSILON = 1e-6
# HiGHS answers to within its tolerances, not exactly: on a 10M-row council a cell whose
# maximum is 11 came back as 10.9999931 and a minimum of 1 as 0.9999222. Rounded inwards with
# EPSILON, that cell's width read 9 in one audit and 10 in the next, so a release passed
# protection and failed the same audit of the same tables. A bound within WHOLE of a whole
# number is that number (an LP vertex that close to one, from below, would need a
# denominator over 1,000 in a system of 0/1 cells).
WHOLE = 1e-3


@dataclass(frozen=True)
class PreviousRelease:
    """The last published release: its population and the tables as published. `cohorts` are
    its definitions when they differ from the current ones."""

    population: pl.DataFrame
    tables: dict[str, pl.DataFrame]
    cohorts: Any = None
    perturbation: Any = None  # its perturbation table, if it was built by cell-key perturbation


@dataclass(frozen=True)
class Failure:
    table: str
    cell: dict[str, str | None]  # dimension -> code or band, never a person's value
    width: int
    kind: str  # "interval", "all" or "none"
    release: str = CURRENT
    # The published cells of this release whose constraints bound the interval (non-zero row
    # duals at the LP optimum): withholding one of them is what widens it. Dimension codes only.
    binding: tuple[tuple[str, dict[str, str | None]], ...] = ()


@dataclass
class AuditResult:
    cells_audited: int
    cells_withheld: int
    primary_cells: int
    # The narrowest interval solved exactly; cells shown wide enough together are not solved.
    narrowest_width: int | None
    failures: list[Failure] = field(default_factory=list)
    shown_wide_together: int = 0
    linear_programs: int = 0
    atoms: int = 0
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for failure in out["failures"]:
            failure.pop("binding")  # a hint for protection, not a finding
        out["failed"] = self.failed
        return out


# ----------------------------------------------------------------------------------------
# Cell membership, recounted in DuckDB from the definitions


def _where_columns(where: str | None, columns: list[str]) -> list[str]:
    """Columns a `where` expression names (found by Polars' SQL parser; evaluated in DuckDB)."""
    if not where:
        return []
    try:
        named = set(pl.sql_expr(where).meta.root_names())
    except Exception:  # noqa: BLE001 - an unparsable filter: depend on every column, to be safe
        named = set(columns)
    return [c for c in columns if c in named]


def _bands_sql(column: str, bands: tuple[str, ...]) -> str:
    """'3' holds exactly 3, '3+' holds 3 and more; other numbers are in no band."""
    cases = []
    for label in bands:
        if label.endswith("+"):
            cases.append(f"WHEN {column} >= {int(label[:-1])} THEN '{label}'")
        else:
            cases.append(f"WHEN {column} = {int(label)} THEN '{label}'")
    return f"CASE {' '.join(cases)} END"


def _unit_source(unit: str) -> str:
    """The population's rows a unit is counted from: residents, or each household's member
    with the smallest person key."""
    if unit == "households":
        # Person keys are unique: each household's smallest one names its member. Grouped and
        # matched back rather than a window ranking every resident (7M residents: 2.6-3.4 s
        # -> 2.0 s, the same members).
        return (
            "(SELECT p.* FROM population p SEMI JOIN (SELECT min(person_key) AS person_key "
            "FROM population WHERE household_key IS NOT NULL GROUP BY household_key) m "
            "USING (person_key))"
        )
    return "population"


class _Recount:
    """One DuckDB connection over one release's population: atoms and their cells."""

    def __init__(self, population: pl.DataFrame, hierarchies: dict, tag: str):
        self.con = duckdb.connect()
        self.con.execute("SET threads TO 2")
        self.register("population", population)
        self.columns = population.columns
        self.schema = population.schema
        self.hierarchies = hierarchies
        self.tag = tag
        self.maps: dict[tuple[str, int, int], str] = {}
        self.coarse: dict[str, int] = {}

    def register(self, name: str, frame: pl.DataFrame) -> None:
        """Let DuckDB read a Polars frame in place. Handed over in Polars' own string layout
        (string_view), not converted: converting copied the 7M-resident population (0.8 s and
        its size in memory) for every recount."""
        self.con.register(name, frame.to_arrow(compat_level=pl.CompatLevel.newest()))

    def _rows(self, source: str) -> list[list[str]]:
        """The source's hierarchy as rows of labels (leaf first), over this population."""
        hierarchy = self.hierarchies.get(source)
        if hierarchy is None:
            raise DisclosureError(f"audit: no hierarchy for dimension source '{source}'")
        if hierarchy.is_open:
            values = self.con.execute(
                f'SELECT DISTINCT CAST("{source}" AS VARCHAR) FROM population '
                f'WHERE "{source}" IS NOT NULL'
            ).fetchall()
            hierarchy = hierarchy.covering(v for (v,) in values)
        return hierarchy.table()

    def _map(self, source: str, start: int, level: int) -> str:
        """A DuckDB table: label at level `start` -> label at `level` of the source's hierarchy."""
        if (source, start, level) in self.maps:
            return self.maps[(source, start, level)]
        rows = self._rows(source)
        height = len(rows[0]) if rows else 0
        if level >= height:
            raise DisclosureError(
                f"audit: hierarchy '{source}' has {height} levels, asked for {level}"
            )
        name = f"map_{source}_{start}_{level}"
        frame = pl.DataFrame(
            {"_leaf": [r[start] for r in rows], "_label": [r[level] for r in rows]},
            schema={"_leaf": pl.String, "_label": pl.String},
        ).unique()
        self.register(name, frame)
        self.maps[(source, start, level)] = name
        return name

    def _level_map(self, source: str, level: int) -> str:
        """A DuckDB table from the atoms' value of `source` to its label at `level`."""
        return self._map(source, self.coarse.get(source, 0), level)

    def coarsen(self, levels: dict[str, int]) -> None:
        """Hold `source` in the atoms at hierarchy level `levels[source]` (the finest level any
        table reads it at) instead of its raw value: the cells are the same, the atoms far
        fewer (single years of age and LSOAs made nearly one atom per resident). A source whose
        hierarchy does not nest (a label at that level under two labels of a higher one) stays
        raw."""
        self.coarse = {}
        for source, start in levels.items():
            if start == 0:
                continue
            rows = self._rows(source)
            above: dict[str, tuple] = {}
            if all(above.setdefault(r[start], tuple(r[start:])) == tuple(r[start:]) for r in rows):
                self.coarse[source] = start

    def _coarse_source(self, source: str) -> str:
        if not self.coarse:
            return source
        replaced = ", ".join(f'c{i}._label AS "{c}"' for i, c in enumerate(self.coarse))
        joins = " ".join(
            f"LEFT JOIN {self._map(c, 0, level)} c{i} ON c{i}._leaf = CAST(s.\"{c}\" AS VARCHAR)"
            for i, (c, level) in enumerate(self.coarse.items())
        )
        return f"(SELECT s.* REPLACE ({replaced}) FROM {source} s {joins})"

    def atoms(
        self, unit: str, columns: list[str], varied: list[str], record_keys: bool = False,
        with_units: bool = True,
    ) -> tuple[pl.DataFrame | None, str]:
        """Units with their atom id, and a DuckDB table of atoms (`atom`, columns, `n`).

        `varied` are sensitive columns: each existing atom gets variants differing in one of
        them (n = 0), so the attacker is not assumed to know sensitive values. With
        `record_keys`, the atoms also hold the sum of their units' record keys (the last two
        hex digits of the unit's key) and no units are returned: the perturbation gate needs
        nothing per unit, and matching 7M residents to their atoms was half its time. Without
        `with_units` neither: only a comparison with an earlier release follows units.
        """
        if record_keys and varied:
            raise ValueError("atoms: record keys are summed over real units only, not variants")
        key = UNIT_KEY[unit]
        cols = ", ".join(f'"{c}"' for c in columns)
        source = self._coarse_source(_unit_source(unit))
        if unit != "people":
            # Households' source picks one member of each by a window over the population:
            # computed once for the grouping and the join below (1.7 s less at 7M residents;
            # the residents' own rows are cheaper read twice than copied).
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE units_{unit} AS SELECT {key}, {cols} FROM {source}"
            )
            source = f"units_{unit}"
        # The distinct combinations first (a hash aggregate holding one row per atom), then each
        # unit's atom by a join against them: ranking every unit over every column instead
        # (a window over the whole population) took 2 GB per 500,000 residents.
        atoms_table = f"atoms_{unit}"
        summed = (
            f", sum(CAST(('0x' || right({key}, 2)) AS INTEGER)) AS record_keys"
            if record_keys else ""
        )
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {atoms_table} AS SELECT "
            f"CAST(row_number() OVER (ORDER BY {cols}) - 1 AS BIGINT) AS atom, * FROM "
            f"(SELECT {cols}, count(*) AS n{summed} FROM {source} GROUP BY ALL)"
        )
        units = None
        if with_units and not record_keys:
            same = " AND ".join(f'u."{c}" IS NOT DISTINCT FROM a."{c}"' for c in columns)
            units = self.con.sql(
                f"SELECT u.{key} AS unit_key, a.atom FROM {source} u JOIN {atoms_table} a "
                f"ON {same}"
            ).pl()
        self.con.execute(f"DROP TABLE IF EXISTS units_{unit}")
        for column in varied:
            (top,) = self.con.execute(f"SELECT max(atom) + 1 FROM {atoms_table}").fetchone()
            values = (
                f'(SELECT DISTINCT "{column}" AS v FROM {atoms_table} WHERE "{column}" IS NOT NULL)'
            )
            if self.schema[column] == pl.Boolean:
                values = "(SELECT true AS v UNION SELECT false)"
            self.con.execute(
                f"INSERT INTO {atoms_table} SELECT {top or 0} + row_number() OVER () - 1, "
                + ", ".join(f'v AS "{c}"' if c == column else f'a."{c}"' for c in columns)
                + f", 0 FROM (SELECT * FROM {atoms_table} WHERE n > 0) a, {values} d "
                f'WHERE a."{column}" IS DISTINCT FROM d.v'
            )
        return units, atoms_table

    def units_as_atoms(self, unit: str, columns: list[str]) -> str:
        """A DuckDB table with one atom per unit (`atom`, columns, `n` = 1), in the shape
        `atoms` makes, for checks that need every unit's own value: numbering the units is
        far cheaper than grouping them by a column unique to each."""
        name = f"unit_rows_{unit}"
        cols = ", ".join(f'"{c}"' for c in columns)
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT CAST(row_number() OVER () - 1 "
            f"AS BIGINT) AS atom, {cols}, 1 AS n FROM {self._coarse_source(_unit_source(unit))}"
        )
        return name

    def cells(self, table: Any, atoms_table: str) -> pl.DataFrame:
        """(atom, dimension values as text, multiplicity) for every atom in the table."""
        joins, values = [], []
        pair_done = False
        for i, dim in enumerate(table.dimensions):
            column = f'a."{dim.source}"'
            if dim.expand == "each":
                joins.append(f"CROSS JOIN LATERAL (SELECT unnest({column}) AS _v) e{i}")
                values.append(f"CAST(e{i}._v AS VARCHAR)")
            elif dim.expand == "pair":
                if not pair_done:
                    joins.append(
                        f"CROSS JOIN LATERAL (SELECT unnest({column}) AS _v) p0 "
                        f"CROSS JOIN LATERAL (SELECT unnest({column}) AS _v) p1"
                    )
                values.append(f"CAST(p{int(pair_done)}._v AS VARCHAR)")
                pair_done = True
            elif dim.level is not None:
                name = self._level_map(dim.source, dim.level)
                joins.append(f"LEFT JOIN {name} m{i} ON m{i}._leaf = CAST({column} AS VARCHAR)")
                values.append(f"m{i}._label")
            elif dim.bands is not None:
                values.append(_bands_sql(column, dim.bands))
            elif isinstance(self.schema.get(dim.source), pl.List):
                values.append(f"array_to_string({column}, '+')")
            elif self.schema.get(dim.source) == pl.Boolean:
                # cohorts.yaml: yes/no columns publish as "yes" and "no".
                values.append(f"CASE WHEN {column} THEN 'yes' WHEN NOT {column} THEN 'no' END")
            else:
                values.append(f"CAST({column} AS VARCHAR)")
        conditions = []
        if table.where:
            conditions.append(f"({table.where})")
        if pair_done:
            conditions.append("p0._v <= p1._v")
        for dim, value in zip(table.dimensions, values, strict=True):
            if getattr(dim, "only", None):
                allowed = ", ".join("'" + v.replace("'", "''") + "'" for v in dim.only)
                conditions.append(f"{value} IN ({allowed})")
        names = table.dimension_names
        select = ", ".join(f'{v} AS "{n}"' for v, n in zip(values, names, strict=True))
        sql = f"SELECT a.atom, {select} FROM {atoms_table} a {' '.join(joins)}"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        quoted = ", ".join(f'"{n}"' for n in names)
        grouped = f"SELECT atom, {quoted}, count(*) AS mult FROM ({sql}) GROUP BY ALL"
        return self.con.sql(grouped).pl()


# ----------------------------------------------------------------------------------------
# The cells of a release and the atoms' membership


@dataclass
class _Cells:
    """Every cell the audit knows: (release, table, dimension values) -> row of the system."""

    meta: list[tuple[str, str, tuple]] = field(default_factory=list)
    index: dict[tuple[str, str, tuple], int] = field(default_factory=dict)
    sensitive: dict[str, str] = field(default_factory=dict)  # table -> sensitive dimension

    def ids(self, release: str, table: str, keys: list[tuple]) -> list[int]:
        out = []
        for key in keys:
            full = (release, table, key)
            if full not in self.index:
                self.index[full] = len(self.meta)
                self.meta.append(full)
            out.append(self.index[full])
        return out


def _space_tables(cohorts: Any, names: set[str], unit: str) -> list[Any]:
    return [t for t in cohorts.tables if t.unit == unit and t.name in names]


def _membership(
    recount: _Recount, tables: list[Any], unit: str, release: str, cells: _Cells, vary: bool,
    with_units: bool = True,
) -> tuple[pl.DataFrame | None, pl.DataFrame]:
    """Units -> atom (None without `with_units`), and atom -> (cell row, multiplicity) with
    each atom's count `n`."""
    if not tables:  # this release publishes nothing about these units
        return (
            pl.DataFrame(schema={"unit_key": pl.String, "atom": pl.Int64}),
            pl.DataFrame(
                schema={"atom": pl.Int64, "cell": pl.Int64, "mult": pl.Int64, "n": pl.Int64}
            ),
        )
    columns: list[str] = []
    varied: list[str] = []
    for table in tables:
        for dim in table.dimensions:
            columns.append(dim.source)
            if dim.sensitive and vary:
                varied.append(dim.source)
        columns += _where_columns(table.where, recount.columns)
    columns = list(dict.fromkeys(c for c in columns if c not in UNIT_KEY.values()))
    varied = list(dict.fromkeys(varied))
    recount.coarsen(_finest_levels(tables, recount.columns))
    units, atoms_table = recount.atoms(unit, columns, varied, with_units=with_units)
    parts = []
    for table in tables:
        rows = recount.cells(table, atoms_table)
        names = table.dimension_names
        # Numbered in value order, not in the order DuckDB's threads return the groups: the
        # same release is then the same LP, so staging and the approval re-check agree.
        keys = rows.select(names).unique().sort(names, nulls_last=True)
        ids = cells.ids(release, table.name, keys.rows())
        keys = keys.with_columns(pl.Series("cell", ids, dtype=pl.Int64))
        parts.append(
            rows.join(keys, on=names, nulls_equal=True).select(
                "atom", "cell", pl.col("mult").cast(pl.Int64)
            )
        )
        sensitive = [d.name for d in table.dimensions if d.sensitive]
        if sensitive:
            cells.sensitive[table.name] = sensitive[0]
    counts = recount.con.sql(f"SELECT atom, n FROM {atoms_table}").pl()
    member = (
        pl.concat(parts)
        if parts
        else pl.DataFrame(schema={"atom": pl.Int64, "cell": pl.Int64, "mult": pl.Int64})
    )
    member = member.join(counts, on="atom")
    return units, member


def _finest_levels(tables: list[Any], columns: list[str]) -> dict[str, int]:
    """Per source read only through hierarchy levels, the finest level any table reads; a
    source also read raw (bands, lists, plain values, a `where`) is not listed."""
    levels: dict[str, int | None] = {}
    for table in tables:
        for dim in table.dimensions:
            if dim.level is None or dim.source in levels and levels[dim.source] is None:
                levels[dim.source] = None
            else:
                levels[dim.source] = min(dim.level, levels.get(dim.source) or dim.level)
        for column in _where_columns(table.where, columns):
            levels[column] = None
    return {source: level for source, level in levels.items() if level is not None}


def _signatures(member: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Merge atoms every table sees alike. Returns (atom -> sig, sig -> cell, mult, n)."""
    per_atom = (
        member.sort("atom", "cell")
        .group_by("atom", maintain_order=True)
        .agg(pl.col("cell"), pl.col("mult"), pl.col("n").first())
    )
    # Two atoms are alike when their (cell, multiplicity) lists are equal: rank that as text.
    signature = pl.concat_str(
        pl.col("cell").cast(pl.List(pl.String)).list.join(","),
        pl.col("mult").cast(pl.List(pl.String)).list.join(","),
        separator="|",
    )
    per_atom = per_atom.with_columns(signature.rank("dense").cast(pl.Int64).sub(1).alias("sig"))
    sig_n = per_atom.group_by("sig").agg(pl.col("n").sum())
    sig_member = (
        per_atom.unique("sig")
        .select("sig", "cell", "mult")
        .explode("cell", "mult")
        .join(sig_n, on="sig")
    )
    return per_atom.select("atom", "sig"), sig_member


def _unit_signatures(units: pl.DataFrame, atom_sig: pl.DataFrame) -> pl.DataFrame:
    """unit_key -> sig, for following units from one release to another."""
    return units.join(atom_sig, on="atom", how="inner").select("unit_key", "sig")


# ----------------------------------------------------------------------------------------
# The linear programs


def _quiet_highs() -> highspy.Highs:
    """A HiGHS instance without its banner, which it writes to stdout (fd 1) when created,
    before any option can be set."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            highs = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    highs.setOptionValue("output_flag", False)
    return highs


def _highs_model(matrix: sparse.csc_matrix) -> highspy.Highs:
    """A quiet HiGHS model over `matrix`: x >= 0, every row in [0, inf) until bounds are set."""
    n_rows, n_cols = matrix.shape
    highs = _quiet_highs()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n_cols, n_rows
    lp.col_cost_ = np.zeros(n_cols)
    lp.col_lower_ = np.zeros(n_cols)
    lp.col_upper_ = np.full(n_cols, highspy.kHighsInf)
    lp.row_lower_ = np.zeros(n_rows)
    lp.row_upper_ = np.full(n_rows, highspy.kHighsInf)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = matrix.indptr.astype(np.int32)
    lp.a_matrix_.index_ = matrix.indices.astype(np.int32)
    lp.a_matrix_.value_ = matrix.data.astype(np.float64)
    highs.passModel(lp)
    return highs


# A solve that ended in one of these has its answer.
_SETTLED = (
    highspy.HighsModelStatus.kOptimal,
    highspy.HighsModelStatus.kInfeasible,
    highspy.HighsModelStatus.kUnbounded,
)


class _System:
    """One HiGHS model: rows are cells, columns atoms; objectives change, the basis stays."""

    def __init__(self, matrix: sparse.csc_matrix):
        self.rows = matrix.tocsr()
        self.n_rows, self.n_cols = matrix.shape
        self.solves = 0
        self.highs = _highs_model(matrix)
        self.all_cols = np.arange(self.n_cols, dtype=np.int32)
        self.warm = False
        self.base_rows = self.n_rows
        self.reach_highs: highspy.Highs | None = None
        self.sum_index: dict[tuple[int, ...], int] = {}
        self.lower = np.zeros(self.n_rows)
        self.upper = np.full(self.n_rows, highspy.kHighsInf)

    def add_empty_rows(self, count: int) -> None:
        self.highs.addRows(
            count,
            np.zeros(count),
            np.full(count, highspy.kHighsInf),
            0,
            np.zeros(count + 1, dtype=np.int32),
            np.zeros(0, dtype=np.int32),
            np.zeros(0),
        )
        self.rows = sparse.vstack([self.rows, sparse.csr_matrix((count, self.n_cols))]).tocsr()
        self.n_rows += count

    def set_row_bounds(self, lower: np.ndarray, upper: np.ndarray) -> None:
        idx = np.arange(self.n_rows, dtype=np.int32)
        self.highs.changeRowsBounds(self.n_rows, idx, lower, upper)
        self.lower, self.upper = lower, upper

    def reach(self, sums: list[list[int]], targets: np.ndarray) -> np.ndarray:
        """Which of `sums` (each a sum of cells) can each reach its target, found together: one
        LP maximises sum(min(sum, target)) (an extra variable per sum, capped at its target);
        every sum at its target in that solution can reach it. Sums reached are dropped and the
        rest tried again until a round reaches none. Returns a mask over `sums`.

        The LP is kept between audits (its extra variables capped at 0 when not asked for), so
        a re-audit starts from the last basis rather than from nothing."""
        k = len(sums)
        reached = np.zeros(k, dtype=bool)
        if k == 0:
            return reached
        model = self._reach_model()
        keys = [tuple(sorted(rows)) for rows in sums]
        self._add_sums([key for key in dict.fromkeys(keys) if key not in self.sum_index])
        aux = np.array([self.n_cols + self.sum_index[key] for key in keys], dtype=np.int32)
        caps = np.zeros(len(self.sum_index))
        np.maximum.at(caps, aux - self.n_cols, targets)
        all_aux = np.arange(self.n_cols, self.n_cols + caps.size, dtype=np.int32)
        model.changeColsBounds(all_aux.size, all_aux, np.zeros(caps.size), caps)
        rows = np.arange(self.base_rows, dtype=np.int32)
        model.changeRowsBounds(
            rows.size, rows, self.lower[: self.base_rows], self.upper[: self.base_rows]
        )
        picked = self._picked(sums)
        while True:
            model.run()
            self.solves += 1
            model.setOptionValue("presolve", "off")
            if model.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                return reached  # the per-cell LPs will say why
            x = np.asarray(model.getSolution().col_value)[: self.n_cols]
            new = ~reached & (picked @ x >= targets - WHOLE)
            if not new.any():
                return reached
            reached |= new
            done = aux[new]
            model.changeColsBounds(done.size, done, np.zeros(done.size), np.zeros(done.size))

    def _picked(self, sums: list[list[int]]) -> sparse.csr_matrix:
        """One row per sum: its atoms' coefficients."""
        pick_rows = np.concatenate([np.asarray(rows, dtype=np.int64) for rows in sums])
        pick_sums = np.repeat(np.arange(len(sums)), [len(rows) for rows in sums])
        chooser = sparse.csr_matrix(
            (np.ones(pick_rows.size), (pick_sums, pick_rows)), shape=(len(sums), self.n_rows)
        )
        return (chooser @ self.rows).tocsr()

    def _reach_model(self) -> highspy.Highs:
        if self.reach_highs is None:
            self.reach_highs = _highs_model(self.rows[: self.base_rows].tocsc())
        return self.reach_highs

    def _add_sums(self, keys: list[tuple[int, ...]]) -> None:
        """A capped variable t <= sum per new sum: a column (cost -1) and a row sum - t >= 0."""
        if not keys:
            return
        model, k = self.reach_highs, len(keys)
        first = self.n_cols + len(self.sum_index)
        model.addCols(
            k, -np.ones(k), np.zeros(k), np.zeros(k), 0,
            np.zeros(k, dtype=np.int32), np.zeros(0, dtype=np.int32), np.zeros(0),
        )  # fmt: skip
        picked = self._picked([list(key) for key in keys])
        link = sparse.hstack(
            [picked, sparse.csr_matrix((k, first - self.n_cols)), -sparse.identity(k)]
        ).tocsr()
        model.addRows(
            k, np.zeros(k), np.full(k, highspy.kHighsInf), link.nnz,
            link.indptr[:-1].astype(np.int32), link.indices.astype(np.int32),
            link.data.astype(np.float64),
        )  # fmt: skip
        for key in keys:
            self.sum_index[key] = len(self.sum_index)

    def bound(self, rows: list[int], maximise: bool, weights: list[float] | None = None) -> float:
        """min or max of the sum of `rows` (optionally weighted) over the feasible counts."""
        w = np.ones(len(rows)) if weights is None else np.asarray(weights, dtype=float)
        cost = np.asarray(self.rows[rows].T @ w).ravel()
        if maximise:
            cost = -cost
        self.highs.changeColsCost(self.n_cols, self.all_cols, cost)
        self.highs.run()
        if self.highs.getModelStatus() not in _SETTLED:
            # From a warm basis HiGHS can stop short ("Unknown" on the 10M council, its answer
            # 1.6e-5 infeasible); solved again from nothing it settles (1.5 s there).
            self.highs.clearSolver()
            self.highs.run()
        if not self.warm:
            self.warm = True
            # Only the objective changes between solves: the last optimal basis stays feasible,
            # so primal simplex from it, with no presolve (which would discard it), takes a few
            # dozen iterations where a cold solve takes thousands.
            self.highs.setOptionValue("presolve", "off")
            self.highs.setOptionValue("simplex_strategy", 4)
        self.solves += 1
        status = self.highs.getModelStatus()
        if status == highspy.HighsModelStatus.kUnbounded:
            return math.inf if maximise else -math.inf
        if status == highspy.HighsModelStatus.kInfeasible:
            raise DisclosureError("audit: the published tables admit no consistent counts")
        if status != highspy.HighsModelStatus.kOptimal:
            raise DisclosureError(
                f"audit: the linear program of a cell could not be solved (HiGHS: "
                f"{self.highs.modelStatusToString(status)}); the audit cannot vouch for this "
                "release"
            )
        value = self.highs.getInfo().objective_function_value
        return -value if maximise else value

    def binding_rows(self) -> np.ndarray:
        """Rows whose constraints bind at the last `bound` optimum (non-zero duals)."""
        solution = self.highs.getSolution()
        if not solution.dual_valid:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(np.abs(np.asarray(solution.row_dual)) > EPSILON)


# ----------------------------------------------------------------------------------------
# The auditor


def _at_most(bound: float) -> int:
    """The largest whole count an LP maximum allows (an attacker counts people)."""
    return math.floor(bound + WHOLE)


def _at_least(bound: float) -> int:
    """The smallest whole count an LP minimum allows."""
    return math.ceil(bound - WHOLE)


def _protection_width(policy: Any) -> int:
    return int(getattr(policy, "protection_width", policy.min_published_count))


def _perturbation(policy: Any) -> Any:
    return policy.perturbation if getattr(policy, "method", None) == "cell_key" else None


def inverse_intervals(ptable: Any) -> Any:
    """For a published value p, the (smallest, largest) true count the perturbation table can
    turn into p, or None when none can. The last row stands for every larger count, shifted."""
    rows = list(ptable.rows)
    last = rows[-1].count
    last_noise = [int(j) - last for j in rows[-1].to]
    sources: dict[int, list[int]] = {}
    for row in rows[:-1]:
        for j, keys in row.to.items():
            if keys > 0:
                sources.setdefault(int(j), []).append(row.count)

    def interval(published: int) -> tuple[int, int] | None:
        found = sources.get(published, []) + [
            published - d for d in last_noise if published - d >= last
        ]
        return (min(found), max(found)) if found else None

    return interval


class Auditor:
    """Builds the attacker's system for a release once; `audit(tables)` re-audits it with the
    tables as they now stand (different cells withheld), re-solving warm."""

    def __init__(
        self,
        population: pl.DataFrame,
        cohorts: Any,
        hierarchies: dict,
        policy: Any,
        previous: PreviousRelease | None = None,
        table_names: set[str] | None = None,
        perturbed_tables: set[str] | None = None,
    ):
        started = time.perf_counter()
        self.cohorts = cohorts
        self.policy = policy
        self.previous = previous
        names = table_names or {t.name for t in cohorts.tables}
        # Which tables publish perturbed counts: all of a cell-key release unless told (a test
        # may publish one table exactly beside perturbed ones).
        perturbation = _perturbation(policy)
        self.perturbed = {
            CURRENT: (
                set(names if perturbed_tables is None else perturbed_tables)
                if perturbation is not None
                else set()
            ),
            PREVIOUS: (
                set(previous.tables) if previous is not None and previous.perturbation else set()
            ),
        }
        self.inverse = {
            CURRENT: inverse_intervals(perturbation) if perturbation is not None else None,
            PREVIOUS: (
                inverse_intervals(previous.perturbation)
                if previous is not None and previous.perturbation is not None
                else None
            ),
        }
        self.perturbed_cells: set[int] = set()
        _all_defined(names, cohorts, "this release")
        if previous is not None:
            _all_defined(set(previous.tables), previous.cohorts or cohorts, "the previous release")
        self.cells = _Cells()
        self.current_tables = {t.name: t for t in cohorts.tables if t.name in names}
        prev_cohorts = (previous.cohorts or cohorts) if previous else None
        self.previous_tables = (
            {t.name: t for t in prev_cohorts.tables if t.name in previous.tables}
            if previous
            else {}
        )
        current = _Recount(population, hierarchies, CURRENT)
        earlier = _Recount(previous.population, hierarchies, PREVIOUS) if previous else None
        interval_parts, sensitive_parts = [], []
        any_sensitive = False
        self.atoms = 0
        true_counts: dict[int, int] = {}
        for unit in ("people", "households"):
            tables = _space_tables(cohorts, names, unit)
            prev_tables = [t for t in self.previous_tables.values() if t.unit == unit]
            if not tables and not prev_tables:
                continue
            vary = any(d.sensitive for t in tables for d in t.dimensions)
            # Units are followed only into an earlier release: a first release's audit needs
            # its atoms alone (7M residents: the units' join and transfer skipped).
            units, member = _membership(
                current, tables, unit, CURRENT, self.cells, vary, with_units=earlier is not None
            )
            _add_true_counts(true_counts, member)
            any_sensitive = any_sensitive or vary
            sensitive_parts.append(_columns_of(_signatures(member)[1], "sig"))
            atom_sig, sig_member = _signatures(member.filter(pl.col("n") > 0))
            if earlier is None:
                interval_parts.append(_columns_of(sig_member, "sig"))
                continue
            p_units, p_member = _membership(earlier, prev_tables, unit, PREVIOUS, self.cells, False)
            _add_true_counts(true_counts, p_member)
            p_atom_sig, p_sig_member = _signatures(p_member)
            interval_parts.append(_joint(
                _unit_signatures(units, atom_sig), sig_member,
                _unit_signatures(p_units, p_atom_sig), p_sig_member,
            ))
        current.con.close()
        if earlier is not None:
            earlier.con.close()
        n_cells = len(self.cells.meta)
        self.true = np.zeros(n_cells, dtype=np.int64)
        for cell, count in true_counts.items():
            self.true[cell] = count
        self.interval = _System(_stack(interval_parts, n_cells))
        self.atoms = self.interval.n_cols
        self.sensitive = _System(_stack(sensitive_parts, n_cells)) if any_sensitive else None
        self.build_seconds = time.perf_counter() - started

    # -- bounds from what is published --------------------------------------------------

    def _row_bounds(
        self, tables: dict[str, pl.DataFrame]
    ) -> tuple[np.ndarray, np.ndarray, set[int], set[int]]:
        """Row bounds for every cell; which cells are withheld, and which small cells (true
        count 1 to min_published_count - 1) are published."""
        base = self.policy.rule.round_to
        floor = self.policy.min_published_count
        published_sets = [(CURRENT, self.current_tables, tables)]
        if self.previous is not None:
            published_sets.append((PREVIOUS, self.previous_tables, self.previous.tables))
        # cell -> withheld, count, open, inverse of the perturbation (None: not perturbed)
        rows: dict[int, tuple[bool, int | None, bool, Any]] = {}
        present_tables = set()
        for release, definitions, frames in published_sets:
            for name, table in definitions.items():
                if name not in frames:
                    continue
                present_tables.add((release, name))
                frame = frames[name]
                names = table.dimension_names
                keys = frame.select(pl.col(n).cast(pl.String) for n in names).rows()
                ids = self.cells.ids(release, name, keys)
                open_withheld = name in self.cells.sensitive
                inverse = self.inverse[release] if name in self.perturbed[release] else None
                flags = frame["withheld"].to_list()
                for cell, count, flag in zip(ids, frame[table.unit].to_list(), flags, strict=True):
                    rows[cell] = (bool(flag), count, open_withheld, inverse)
        n_cells = len(self.cells.meta)
        if n_cells > self.interval.n_rows:
            # Rows no unit reaches (a zero row of a sensitive table): the cell is 0.
            for system in (self.interval, self.sensitive):
                if system is not None:
                    system.add_empty_rows(n_cells - system.n_rows)
            self.true = np.concatenate([self.true, np.zeros(n_cells - self.true.size, np.int64)])
        lower = np.zeros(n_cells)
        upper = np.zeros(n_cells)
        withheld: set[int] = set()
        small: set[int] = set()
        self.perturbed_cells = set()
        for cell, (release, table, _) in enumerate(self.cells.meta):
            if cell not in rows:
                if (release, table) not in present_tables:
                    upper[cell] = highspy.kHighsInf  # a table not published constrains nothing
                continue  # absent from its table, so 0
            flag, count, open_withheld, inverse = rows[cell]
            if flag:
                withheld.add(cell)
                lower[cell], upper[cell] = (0.0 if open_withheld else 1.0), highspy.kHighsInf
            elif inverse is not None:
                # A perturbed count: any true count the table could have turned into it (and
                # at least 1 where only occupied cells are listed).
                self.perturbed_cells.add(cell)
                found = inverse(int(count or 0))
                if found is None:
                    small.add(cell)  # no true count gives this value: the table was not used
                    lower[cell], upper[cell] = 0.0, highspy.kHighsInf
                    continue
                lower[cell] = max(found[0], 0 if open_withheld else 1)
                upper[cell] = found[1]
            elif count:
                # The policy is public: a published count stands for at least `floor` units
                # (unless this very cell breaks the policy, which fails the audit anyway).
                is_small = 0 < self.true[cell] < floor
                if is_small:
                    small.add(cell)
                lower[cell] = max(count - base // 2, 0 if is_small else floor, 0)
                upper[cell] = count + (base - 1) // 2
        return lower, upper, withheld, small

    def _check_consistent(self, lower: np.ndarray, upper: np.ndarray) -> None:
        """The true counts must satisfy every published constraint, or the audit and the
        tabulation read the definitions differently and the audit cannot vouch for the release."""
        bad = np.flatnonzero((self.true < lower - EPSILON) | (self.true > upper + EPSILON))
        if bad.size:
            tables: dict[str, int] = {}
            for cell in bad:
                release, table, _ = self.cells.meta[cell]
                label = table if release == CURRENT else f"{table} (previous release)"
                tables[label] = tables.get(label, 0) + 1
            listed = ", ".join(f"{t}: {n}" for t, n in sorted(tables.items()))
            raise DisclosureError(
                f"audit: {bad.size} cell(s) disagree with the audit's own count of the "
                f"population ({listed}); the audit cannot vouch for this release"
            )

    # -- the audit ------------------------------------------------------------------------

    def audit(self, tables: dict[str, pl.DataFrame], exact: bool = False) -> AuditResult:
        """Audit the release as `tables` stand. With `exact`, every primary cell's interval is
        solved both ways (otherwise a cell whose maximum already clears the width is passed
        without its minimum)."""
        started = time.perf_counter()
        unknown = sorted(set(tables) - set(self.current_tables))
        if unknown:
            raise DisclosureError(
                f"audit: {len(unknown)} table(s) were not given when the audit was built "
                f"({', '.join(unknown)})"
            )
        lower, upper, withheld, small = self._row_bounds(tables)
        self._check_consistent(lower, upper)
        width_needed = _protection_width(self.policy)
        floor = self.policy.min_published_count
        solves_before = self.interval.solves + (self.sensitive.solves if self.sensitive else 0)
        self.interval.set_row_bounds(lower, upper)
        failures: list[Failure] = []
        narrowest: int | None = None
        primary = [
            c for c in sorted(withheld | self.perturbed_cells) if 0 < self.true[c] < floor
        ]
        # A cell that can reach its true count + the width is wide enough (its minimum is at
        # most its true count): most cells are shown so together, the rest one LP at a time.
        together = np.zeros(len(primary), dtype=bool)
        if not exact:
            targets = self.true[primary].astype(float) + width_needed
            together = self.interval.reach([[c] for c in primary], targets)
        failures += [self._failure(cell, 0, "small") for cell in sorted(small)]
        for cell in (c for c, done in zip(primary, together, strict=True) if not done):
            top = self.interval.bound([cell], maximise=True)
            if math.isinf(top):
                continue  # nothing published bounds it from above
            high = _at_most(top)
            if not exact and high - self.true[cell] >= width_needed:
                continue
            binding = self.interval.binding_rows()
            low = _at_least(self.interval.bound([cell], maximise=False))
            width = high - low
            narrowest = width if narrowest is None else min(narrowest, width)
            if width < width_needed:
                binding = np.union1d(binding, self.interval.binding_rows())
                failures.append(
                    self._failure(cell, width, "interval", self._published(binding, withheld))
                )
        if self.sensitive is not None:
            failures += self._attribute_failures(lower, upper, withheld)
        solves = self.interval.solves + (self.sensitive.solves if self.sensitive else 0)
        return AuditResult(
            cells_audited=len(self.cells.meta),
            cells_withheld=len(withheld),
            primary_cells=len(primary),
            narrowest_width=narrowest,
            failures=failures,
            shown_wide_together=int(together.sum()),
            linear_programs=solves - solves_before,
            atoms=self.atoms,
            seconds=round(time.perf_counter() - started, 3),
        )

    def interval_of(
        self, table: str, cell: dict[str, str], release: str = CURRENT
    ) -> tuple[float, float]:
        """The attacker's (min, max) for one cell, as the last `audit` left the constraints."""
        definitions = self.current_tables if release == CURRENT else self.previous_tables
        key = tuple(cell[n] for n in definitions[table].dimension_names)
        row = self.cells.index[(release, table, key)]
        return (
            self.interval.bound([row], maximise=False),
            self.interval.bound([row], maximise=True),
        )

    def _label(self, cell: int) -> tuple[str, dict[str, str | None], str]:
        release, name, key = self.cells.meta[cell]
        definitions = self.current_tables if release == CURRENT else self.previous_tables
        return name, dict(zip(definitions[name].dimension_names, key, strict=True)), release

    def _failure(
        self, cell: int, width: int, kind: str, binding: tuple = ()
    ) -> Failure:
        name, labels, release = self._label(cell)
        return Failure(name, labels, int(width), kind, release, binding)

    def _published(self, rows: np.ndarray, withheld: set[int]) -> tuple:
        """The rows among `rows` that are published cells of this release (what protection can
        still withhold), as (table, cell)."""
        out = []
        for row in rows:
            if row < len(self.cells.meta) and row not in withheld:
                name, labels, release = self._label(int(row))
                if release == CURRENT:
                    out.append((name, labels))
        return tuple(out)

    def _attribute_failures(
        self, lower: np.ndarray, upper: np.ndarray, withheld: set[int]
    ) -> list[Failure]:
        system = self.sensitive
        # This check reads the current release alone: the previous release's cells are free.
        previous = np.array([release == PREVIOUS for release, _, _ in self.cells.meta])
        system.set_row_bounds(
            np.where(previous, 0.0, lower), np.where(previous, highspy.kHighsInf, upper)
        )
        # Each check is (kind, cell, rows): it fails when the sum of `rows` cannot reach 1.
        checks: list[tuple[str, int, list[int]]] = []
        failures = []
        for name, dim in self.cells.sensitive.items():
            table = self.current_tables[name]
            position = table.dimension_names.index(dim)
            groups: dict[tuple, list[int]] = {}
            for cell, (release, table_name, key) in enumerate(self.cells.meta):
                if release == CURRENT and table_name == name:
                    group = key[:position] + key[position + 1 :]
                    groups.setdefault(group, []).append(cell)
            for members in groups.values():
                # A cell published non-zero certainly holds someone; a published 0 holds no one.
                sure = {c for c in members if lower[c] >= 1}
                candidates = []
                for cell in members:
                    others = [c for c in members if c != cell]
                    # all: everyone in the group has this value
                    if not (sure - {cell}) and (cell in sure or cell in withheld):
                        candidates.append(("all", cell, others))
                    # none: no one in the group has it (for a yes/no dimension that is "all"
                    # of the other value, reported once, above)
                    if cell not in sure and len(members) != 2:
                        candidates.append(("none", cell, [cell]))
                if not candidates:
                    continue
                if not sure and _at_least(system.bound(members, False)) < 1:
                    continue  # the group may be empty: nothing to disclose about it
                checks += candidates
        # Most checks pass: shown together, the rest one LP each.
        reachable = [rows for _, _, rows in checks if rows and upper[rows].max() > 0]
        reached = system.reach(reachable, np.ones(len(reachable)))
        passed = {id(rows) for rows, ok in zip(reachable, reached, strict=True) if ok}
        for kind, cell, rows in checks:
            if id(rows) in passed:
                continue
            most = 0.0 if not rows or upper[rows].max() == 0 else system.bound(rows, True)
            if _at_most(most) == 0:
                failures.append(self._failure(cell, 0, kind))
        return failures


def _all_defined(names: set[str], cohorts: Any, release: str) -> None:
    unknown = sorted(names - {t.name for t in cohorts.tables})
    if unknown:
        raise DisclosureError(
            f"audit: {len(unknown)} table(s) of {release} have no cohort definition "
            f"({', '.join(unknown)}); the audit cannot recount them"
        )


def _add_true_counts(true_counts: dict[int, int], member: pl.DataFrame) -> None:
    totals = (
        member.filter(pl.col("n") > 0)
        .group_by("cell")
        .agg((pl.col("mult") * pl.col("n")).sum().alias("units"))
    )
    for cell, units in totals.iter_rows():
        true_counts[cell] = true_counts.get(cell, 0) + int(units)


def _columns_of(member: pl.DataFrame, column: str) -> pl.DataFrame:
    """(col, cell, mult) for the matrix, atoms renumbered 0.. in order."""
    return member.select(
        pl.col(column).rank("dense").cast(pl.Int64).sub(1).alias("col"), "cell", "mult"
    )


def _joint(
    unit_sig: pl.DataFrame,
    sig_member: pl.DataFrame,
    p_sig: pl.DataFrame,
    p_sig_member: pl.DataFrame,
) -> pl.DataFrame:
    """Atoms over both releases: distinct (previous atom, current atom) pairs by unit key."""
    pairs = (
        unit_sig.rename({"sig": "now"})
        .join(p_sig.rename({"sig": "then"}), on="unit_key", how="full", coalesce=True)
        .select("then", "now")
        .unique()
        .sort("then", "now", nulls_last=True)
        .with_row_index("col")
        .with_columns(pl.col("col").cast(pl.Int64))
    )
    now = pairs.join(sig_member.rename({"sig": "now"}), on="now").select("col", "cell", "mult")
    then = pairs.join(p_sig_member.rename({"sig": "then"}), on="then").select("col", "cell", "mult")
    return pl.concat([now, then])


def _stack(parts: list[pl.DataFrame], n_cells: int) -> sparse.csc_matrix:
    """One column block per unit space, side by side."""
    cols, rows, vals = [], [], []
    offset = 0
    for part in parts:
        if part.height == 0:
            continue
        cols.append(part["col"].to_numpy() + offset)
        rows.append(part["cell"].to_numpy())
        vals.append(part["mult"].to_numpy().astype(float))
        offset += int(part["col"].max()) + 1
    if not cols:
        return sparse.csc_matrix((n_cells, 0))
    return sparse.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_cells, offset),
    )


def audit_release(
    population: pl.DataFrame,
    cohorts: Any,
    hierarchies: dict,
    tables: dict[str, pl.DataFrame],
    policy: Any,
    previous: PreviousRelease | None = None,
    perturbed_tables: set[str] | None = None,
) -> AuditResult:
    """Audit one release (see the module docstring); build an `Auditor` to audit repeatedly."""
    auditor = Auditor(
        population, cohorts, hierarchies, policy, previous, set(tables), perturbed_tables
    )
    result = auditor.audit(tables)
    result.seconds = round(result.seconds + auditor.build_seconds, 3)
    return result


def audit_gate(
    population: pl.DataFrame,
    cohorts: Any,
    hierarchies: dict,
    tables: dict[str, pl.DataFrame],
    policy: Any,
    previous: PreviousRelease | None = None,
) -> AuditResult:
    """Audit the release and refuse it (DisclosureError) if anything fails."""
    result = audit_release(population, cohorts, hierarchies, tables, policy, previous)
    raise_on_failures(result)
    return result


def raise_on_failures(result: AuditResult) -> None:
    if not result.failures:
        return
    first = result.failures[0]
    cell = ", ".join(f"{k}={v}" for k, v in first.cell.items())
    where = "" if first.release == CURRENT else " of the previous release"
    raise DisclosureError(
        f"audit: {result.failed} cell(s) can be derived from what is published; first: table "
        f"{first.table}{where}, cell ({cell}): {_explain(first)}"
    )


def _explain(failure: Failure) -> str:
    if failure.kind == "interval":
        return f"interval of width {failure.width}, narrower than the policy's protection width"
    if failure.kind == "small":
        return "a count smaller than the policy publishes is shown"
    return f"{failure.kind} of the group share this value"
