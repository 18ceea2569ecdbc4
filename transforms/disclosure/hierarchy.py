"""Generalisation hierarchies: load, validate and expand them into one table form.

A hierarchy is a table with one row per original value (level 0) and one column per level;
column i is the value's generalisation at level i. Two sources are accepted:

- CSV tables as ARX writes them (`;`-separated, no header), e.g. `ethnicity.csv`.
- YAML rule files (`*.yaml`) for hierarchies that are easier to declare than to list:
  `intervals` (numeric bands such as age), `date` (day -> month -> year) and `postcode`
  (unit -> sector -> district -> area). Rules are expanded into the same table form.

Hierarchies come from `data_contracts/`, not from residents' data, so error messages may name
a hierarchy label; when data is checked against a hierarchy, messages give counts only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from schemas.errors import HierarchyError

SUPPRESSED = "*"


@dataclass(frozen=True, eq=False)
class Hierarchy:
    """A validated hierarchy in table form.

    `codes[level][leaf]` is the index of the leaf's label at `level` in `labels[level]`;
    `leaf_counts[level][label]` is how many leaves a label covers (ARX's domain share numerator).
    Open-domain rule hierarchies (dates, postcodes) carry `rule` so they can be expanded to
    the values actually present (`covering`).
    """

    name: str
    source: str
    labels: tuple[np.ndarray, ...]
    codes: tuple[np.ndarray, ...]
    rule: dict | None = field(default=None, repr=False)

    @property
    def height(self) -> int:
        """Number of levels, including level 0 (ARX's hierarchy height)."""
        return len(self.labels)

    @property
    def values(self) -> np.ndarray:
        return self.labels[0]

    @property
    def domain_size(self) -> int:
        return len(self.labels[0])

    @property
    def leaf_counts(self) -> tuple[np.ndarray, ...]:
        return tuple(
            np.bincount(c, minlength=len(lab))
            for c, lab in zip(self.codes, self.labels, strict=True)
        )

    @property
    def is_open(self) -> bool:
        """True for rule hierarchies whose domain is the data's own values."""
        return self.rule is not None and self.rule.get("type") in OPEN_RULES

    def table(self) -> list[list[str]]:
        """The hierarchy as rows of labels, one row per leaf (for display and export)."""
        return [
            [str(self.labels[lv][self.codes[lv][i]]) for lv in range(self.height)]
            for i in range(self.domain_size)
        ]

    def level_map(self, source_level: int, target_level: int) -> np.ndarray:
        """Array mapping a label index at `source_level` to its label index at `target_level`."""
        out = np.zeros(len(self.labels[source_level]), dtype=np.int32)
        out[self.codes[source_level]] = self.codes[target_level]
        return out

    def covering(self, values: Iterable[str]) -> Hierarchy:
        """For open-domain rule hierarchies, the hierarchy expanded over `values`."""
        if not self.is_open:
            return self
        return _expand_rule(self.name, self.source, self.rule, sorted(set(values)))


def from_table(
    name: str, source: str, rows: list[list[str]], rule: dict | None = None
) -> Hierarchy:
    """Validate a hierarchy table and build its coded form; every problem is reported at once."""
    problems: list[str] = []
    if not rows:
        raise HierarchyError(f"hierarchy {source} is empty")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        bad = [i + 1 for i, r in enumerate(rows) if len(r) != len(rows[0])]
        raise HierarchyError(
            f"hierarchy {source}: rows have different numbers of levels "
            f"({sorted(widths)}); first uneven row is line {bad[0]}"
        )
    height = len(rows[0])
    empty = [i + 1 for i, r in enumerate(rows) if any(cell == "" for cell in r)]
    if empty:
        problems.append(f"{len(empty)} rows have an empty level (first at line {empty[0]})")
    leaves = [r[0] for r in rows]
    if len(set(leaves)) != len(leaves):
        dup = len(leaves) - len(set(leaves))
        problems.append(f"{dup} values appear more than once at level 0")
    columns = list(zip(*rows, strict=True))
    for level in range(height - 1):
        parent_of: dict[str, str] = {}
        clashes = set()
        for child, parent in zip(columns[level], columns[level + 1], strict=True):
            if parent_of.setdefault(child, parent) != parent:
                clashes.add(child)
        if clashes:
            first = sorted(clashes)[0]
            problems.append(
                f"level {level} label '{first}' (and {len(clashes) - 1} others) generalise to "
                f"more than one label at level {level + 1}"
            )
    if problems:
        raise HierarchyError(f"hierarchy {source}: " + "; ".join(problems))
    # Level 0 keeps file order (ARX's domain is the table's rows); higher levels are sorted.
    labels = [np.asarray(columns[0], dtype=str)]
    codes = [np.arange(len(rows), dtype=np.int32)]
    for col in columns[1:]:
        uniq, inv = np.unique(np.asarray(col, dtype=str), return_inverse=True)
        labels.append(uniq)
        codes.append(inv.astype(np.int32))
    return Hierarchy(name, source, tuple(labels), tuple(codes), rule)


def load_hierarchy(path: Path) -> Hierarchy:
    """Load one hierarchy file (`.csv` table or `.yaml`/`.yml` rules)."""
    path = Path(path)
    if not path.exists():
        raise HierarchyError(f"hierarchy file {path.name} does not exist")
    if path.suffix == ".csv":
        text = path.read_text(encoding="utf-8-sig")
        rows = [line.split(";") for line in text.splitlines() if line.strip()]
        rows = [[cell.strip() for cell in r] for r in rows]
        return from_table(path.stem, path.name, rows)
    if path.suffix in (".yaml", ".yml"):
        try:
            rule = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise HierarchyError(f"hierarchy {path.name} is not valid YAML ({exc})") from None
        if not isinstance(rule, dict):
            raise HierarchyError(f"hierarchy {path.name} must be a mapping with a 'type'")
        return _expand_rule(rule.get("name", path.stem), path.name, rule, None)
    raise HierarchyError(f"hierarchy file {path.name}: unsupported type (use .csv or .yaml)")


def load_hierarchies(directory: Path, names: list[str] | None = None) -> dict[str, Hierarchy]:
    """Load every hierarchy in `directory`, or only `names` (file stems); keyed by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise HierarchyError(f"hierarchy directory {directory} does not exist")
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix in (".csv", ".yaml", ".yml"):
            if path.stem in found:
                first = found[path.stem].name
                raise HierarchyError(
                    f"hierarchy '{path.stem}' is declared twice ({first}, {path.name})"
                )
            found[path.stem] = path
    wanted = list(found) if names is None else list(names)
    missing = [n for n in wanted if n not in found]
    if missing:
        raise HierarchyError(
            f"no hierarchy file for {', '.join(repr(m) for m in missing)} in {directory}"
        )
    return {name: load_hierarchy(found[name]) for name in wanted}


# ----------------------------------------------------------------------------------------
# Checking data against a hierarchy


def encode_frame(
    frame: pl.DataFrame, names: list[str], hierarchies: list[Hierarchy]
) -> pl.DataFrame:
    """Leaf index (UInt32) of every value of each column, in one parallel pass.

    Raises HierarchyError with counts (never values) if a column has missing values or
    values its hierarchy does not cover; all columns are reported at once.
    """
    nulls = frame.select(pl.col(names).null_count()).row(0)
    problems = [
        f"{count} values of column '{name}' are missing; hierarchy {h.source} cannot "
        "generalise missing values"
        for name, h, count in zip(names, hierarchies, nulls, strict=True)
        if count
    ]
    if problems:
        raise HierarchyError("; ".join(problems))
    codes = frame.select(
        leaf_code(name, frame.schema[name], h) for name, h in zip(names, hierarchies, strict=True)
    )
    uncovered = codes.null_count().row(0)
    problems = [
        f"{count} values of column '{name}' are not covered by hierarchy {h.source}"
        for name, h, count in zip(names, hierarchies, uncovered, strict=True)
        if count
    ]
    if problems:
        raise HierarchyError("; ".join(problems))
    return codes


def leaf_code(name: str, dtype: pl.DataType, hierarchy: Hierarchy) -> pl.Expr:
    """Expression for the leaf index (UInt32) of column `name` in `hierarchy`; null where the
    hierarchy lacks the value. An expression, so it can run inside a
    streaming query."""
    leaves = hierarchy.values
    column = pl.col(name)
    if dtype.is_integer():
        ints = _integer_leaves(leaves)
        if ints is not None:
            low = int(ints[0])
            if np.array_equal(ints, np.arange(low, low + len(ints))):
                # Consecutive integers (ages): arithmetic, no lookup.
                inside = column.is_between(low, low + len(ints) - 1)
                return pl.when(inside).then((column - low).cast(pl.UInt32))
            return column.replace_strict(
                ints.tolist(), list(range(len(ints))), default=None, return_dtype=pl.UInt32
            )
    if dtype != pl.String:
        column = column.cast(pl.String)
    return column.cast(pl.Enum(list(leaves)), strict=False).to_physical().cast(pl.UInt32)


def _integer_leaves(leaves: np.ndarray) -> np.ndarray | None:
    """The leaves as integers, if every leaf is the canonical spelling of one."""
    try:
        ints = np.array([int(v) for v in leaves], dtype=np.int64)
    except ValueError:
        return None
    if any(str(i) != str(v) for i, v in zip(ints, leaves, strict=True)):
        return None
    return ints


# ----------------------------------------------------------------------------------------
# Rule hierarchies

OPEN_RULES = ("date", "postcode")


def _expand_rule(name: str, source: str, rule: dict, values: list[str] | None) -> Hierarchy:
    kind = rule.get("type")
    if kind == "intervals":
        return from_table(name, source, _interval_rows(source, rule), rule)
    if kind in OPEN_RULES:
        if values is None:
            # Placeholder until the data's values are known (see Hierarchy.covering).
            width = _open_height(source, rule)
            rows = [[SUPPRESSED] * width]
            return from_table(name, source, rows, rule)
        rows = (_date_rows if kind == "date" else _postcode_rows)(source, rule, values)
        return from_table(name, source, rows, rule)
    raise HierarchyError(
        f"hierarchy {source}: unknown rule type {kind!r} (use intervals, date or postcode)"
    )


def _interval_rows(source: str, rule: dict) -> list[list[str]]:
    """Integer bands: `min`, `max` and one `width` per level (or '*' for the top), plus an
    optional `unknown` label for values not recorded."""
    try:
        lo, hi = int(rule["min"]), int(rule["max"])
        levels = list(rule["levels"])
    except (KeyError, TypeError, ValueError):
        raise HierarchyError(
            f"hierarchy {source}: intervals need integer 'min', 'max' and a list 'levels'"
        ) from None
    if hi < lo or not levels:
        raise HierarchyError(f"hierarchy {source}: need min <= max and at least one level")
    widths: list[int | None] = []
    previous = 1
    for i, level in enumerate(levels, start=1):
        width = level.get("width") if isinstance(level, dict) else level
        if width == SUPPRESSED:
            widths.append(None)
            continue
        if not isinstance(width, int) or width <= 0 or width % previous:
            raise HierarchyError(
                f"hierarchy {source}: level {i} width must be a positive multiple of the "
                f"level below ({previous}), or '*'"
            )
        if widths and widths[-1] is None:
            raise HierarchyError(f"hierarchy {source}: only the top level may be '*'")
        widths.append(width)
        previous = width
    rows = []
    for v in range(lo, hi + 1):
        row = [str(v)]
        for width in widths:
            if width is None:
                row.append(SUPPRESSED)
            else:
                start = lo + (v - lo) // width * width
                end = min(start + width - 1, hi)
                row.append(f"{start}-{end}")
        rows.append(row)
    unknown = rule.get("unknown")
    if unknown is not None:
        # A value for "not recorded": its own category at every level below the top, so
        # people with no recorded value are counted, not silently dropped.
        rows.append([str(unknown)] + [SUPPRESSED if w is None else str(unknown) for w in widths])
    return rows


def _open_height(source: str, rule: dict) -> int:
    levels = rule.get("levels")
    if not isinstance(levels, list) or not levels:
        raise HierarchyError(f"hierarchy {source}: 'levels' must be a non-empty list")
    return len(levels) + 1


DATE_LEVELS = {"month": 7, "year": 4, SUPPRESSED: 0}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _date_rows(source: str, rule: dict, values: list[str]) -> list[list[str]]:
    """ISO dates truncated to month and year (`levels: [month, year, '*']`)."""
    levels = rule.get("levels", [])
    unknown = [lv for lv in levels if lv not in DATE_LEVELS]
    if unknown or not levels:
        raise HierarchyError(
            f"hierarchy {source}: date levels must be from month, year, '*' (got {levels})"
        )
    bad = sum(1 for v in values if not _DATE.match(v))
    if bad:
        raise HierarchyError(f"{bad} values are not ISO dates (YYYY-MM-DD) for hierarchy {source}")
    return [
        [v] + [v[: DATE_LEVELS[lv]] if DATE_LEVELS[lv] else SUPPRESSED for lv in levels]
        for v in values
    ]


POSTCODE_LEVELS = ("sector", "district", "area", SUPPRESSED)
_POSTCODE = re.compile(r"^([A-Z]{1,2})([0-9][A-Z0-9]?) ?([0-9])([A-Z]{2})$")


def _postcode_rows(source: str, rule: dict, values: list[str]) -> list[list[str]]:
    """UK postcodes: unit -> sector ('SW1A 1') -> district ('SW1A') -> area ('SW') -> '*'."""
    levels = rule.get("levels", [])
    if not levels or any(lv not in POSTCODE_LEVELS for lv in levels):
        raise HierarchyError(
            f"hierarchy {source}: postcode levels must be from sector, district, area, '*'"
        )
    rows, bad = [], 0
    for v in values:
        m = _POSTCODE.match(v.upper().strip())
        if not m:
            bad += 1
            continue
        area, district_rest, sector_digit = m.group(1), m.group(2), m.group(3)
        parts = {
            "sector": f"{area}{district_rest} {sector_digit}",
            "district": f"{area}{district_rest}",
            "area": area,
            SUPPRESSED: SUPPRESSED,
        }
        rows.append([v] + [parts[lv] for lv in levels])
    if bad:
        raise HierarchyError(f"{bad} values are not UK postcodes for hierarchy {source}")
    return rows
