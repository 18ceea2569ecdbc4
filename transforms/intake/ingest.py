"""Ingest: open a department's extract, read it with its format's reader, conform it.

Each format has its reader in `readers/` (CSV, XLSX, JSON and NDJSON, Parquet), all reading an
open `source.Source`. This is the one place that knows raw column names (dbt's "conform"):
headers are mapped to the contract's canonical names through `physicalName` and declared
aliases (two headers for one column reject the delivery), undeclared columns are dropped at
once (data minimisation) and reported by name, text that a spreadsheet would execute as a
formula is neutralised or flagged, and values are typed per the contract.

Identifiable rows pass through here. Nothing in this module logs, prints or puts a cell value
into an exception: Polars' own parse errors quote the offending text, so they are caught and
replaced by a rule name (`unreadable`, `truncated`, `encoding`, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import polars as pl

from schemas.contract import Column, DepartmentContract
from schemas.identifiers import nhs_number_valid
from transforms.intake.common import (
    DEFAULT_CHUNK_ROWS,
    NESTED,
    ROW_NUMBER,
    RawExtract,
    reject,
    reject_repeated,
)
from transforms.intake.readers import read_source
from transforms.intake.source import Source, open_source

__all__ = [
    "DEFAULT_CHUNK_ROWS", "NESTED", "ROW_NUMBER", "RawExtract", "reject", "open_extract",
]

# OWASP "CSV injection": cells starting with these run as formulas in Excel and LibreOffice.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
FORMULA_GUARD = "'"
_FORMULA_START = "^[" + "".join(re.escape(p) for p in FORMULA_PREFIXES) + "]"
_DATE_IN_NAME = re.compile(r"(?<!\d)(\d{8})(?!\d)")
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
# Excel cells holding real dates arrive as text in this form when read as strings.
_EXCEL_DATETIME = "%Y-%m-%d %H:%M:%S"


# --- fingerprint, extract date and opening ----------------------------------------------------


def fingerprint_file(path: Path) -> str:
    """sha256 of the file's bytes: the delivery id. A changed file is a new delivery.

    Opened as a delivery is (regular files only, no blocking); raises DeliveryRejected if it
    cannot be."""
    with open_source(path) as source:
        return source.fingerprint


def date_in_name(name: str) -> date | None:
    """The YYYYMMDD in a file name, if it holds a real date."""
    for match in _DATE_IN_NAME.finditer(name):
        try:
            return datetime.strptime(match.group(1), "%Y%m%d").date()
        except ValueError:
            continue
    return None


def extract_date_of(path: Path) -> date:
    """The extract's date: the YYYYMMDD in its file name, else the file's modification date."""
    found = date_in_name(Path(path).name)
    return found or datetime.fromtimestamp(Path(path).stat().st_mtime).date()


def open_extract(
    path: Path | Source, contract: DepartmentContract, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> RawExtract:
    """Open `path` (or an already open source) as the contract's format; raise
    DeliveryRejected if it cannot be read."""
    source = path if isinstance(path, Source) else open_source(
        Path(path), max_line_bytes=contract.limits.max_line_bytes
    )
    if source.size == 0:
        raise reject(source.name, "unreadable", "file is empty (0 bytes)")
    extract = read_source(source, contract, chunk_rows)
    extract.source = source
    return extract


# --- conforming headers ----------------------------------------------------------------------


def _normalise_header(name: str) -> str:
    return " ".join(name.replace("\ufeff", "").split()).casefold()


@dataclass(frozen=True)
class Conformance:
    """How a file's header maps onto the contract: every difference, by column name only."""

    mapping: dict[str, str]  # raw header -> canonical name
    renamed: dict[str, str] = field(default_factory=dict)  # raw header -> canonical (not exact)
    dropped: tuple[str, ...] = ()  # raw headers not in the contract
    missing_optional: tuple[str, ...] = ()  # canonical names absent from the file


def _reject_alias_collisions(
    header: list[str], contract: DepartmentContract, file_name: str
) -> None:
    """Which of two headers for one column holds the truth is unknowable: reject, naming both
    (they match declared names, so they are headers, not data)."""
    collisions = []
    for col in contract.columns:
        spellings = {_normalise_header(raw) for raw in col.raw_names}
        matching = [h for h in header if _normalise_header(h) in spellings]
        if len(matching) > 1:
            collisions.append(f"{' and '.join(repr(h) for h in matching)} both map to {col.name}")
    if collisions:
        raise reject(
            file_name, "alias_collision", "; ".join(collisions) + f" ({len(collisions)} column(s))",
            len(collisions),
        )


def conform_header(header: list[str], contract: DepartmentContract, file_name: str) -> Conformance:
    """Match raw headers to contract columns: physical name, then aliases, then loose spelling.

    A repeated header, two headers naming one column (a column and its alias, or two
    spellings of it), or a required column that cannot be found, rejects the delivery.
    """
    reject_repeated(header, contract, file_name)
    _reject_alias_collisions(header, contract, file_name)
    exact = set(header)
    loose = {_normalise_header(h): h for h in header}
    mapping: dict[str, str] = {}
    renamed: dict[str, str] = {}
    missing_required, missing_optional = [], []
    for col in contract.columns:
        found = next((raw for raw in col.raw_names if raw in exact and raw not in mapping), None)
        if found is None:
            found = next(
                (
                    loose[_normalise_header(raw)]
                    for raw in col.raw_names
                    if _normalise_header(raw) in loose
                    and loose[_normalise_header(raw)] not in mapping
                ),
                None,
            )
        if found is None:
            (missing_required if col.required else missing_optional).append(col)
            continue
        mapping[found] = col.name
        if found != col.physical_name:
            renamed[found] = col.name
    if missing_required:
        names = ", ".join(f"'{c.physical_name}' ({c.name})" for c in missing_required)
        raise reject(
            file_name,
            "missing_column",
            f"required column(s) {names} absent ({len(missing_required)} column(s))",
            len(missing_required),
        )
    dropped = tuple(h for h in header if h not in mapping)
    return Conformance(mapping, renamed, dropped, tuple(c.name for c in missing_optional))


def conform(batch: pl.DataFrame, conformance: Conformance, contract: DepartmentContract):
    """Keep declared columns only, under canonical names, in contract order (+ row_number)."""
    pairs = conformance.mapping.items()
    renamed = batch.select(pl.col(ROW_NUMBER), *(pl.col(raw).alias(canon) for raw, canon in pairs))
    missing = [pl.lit(None, pl.String).alias(c) for c in conformance.missing_optional]
    return renamed.with_columns(missing).select(ROW_NUMBER, *(c.name for c in contract.columns))


# --- cell screening and typing -----------------------------------------------------------------


def formula_cells(frame: pl.DataFrame, contract: DepartmentContract) -> pl.DataFrame:
    """(row_number, column) of text cells a spreadsheet would run as a formula."""
    string_cols = [
        c.name for c in contract.columns
        if c.logical_type == "string" and frame.schema[c.name] == pl.String
    ]
    empty = pl.DataFrame(schema={ROW_NUMBER: pl.Int64, "column": pl.String})
    if not string_cols:
        return empty
    flags = frame.select(
        pl.col(ROW_NUMBER),
        *(pl.col(n).str.contains(_FORMULA_START).fill_null(False) for n in string_cols),
    )
    flagged = flags.filter(pl.any_horizontal(string_cols))
    if flagged.height == 0:
        return empty
    return (
        flagged.unpivot(index=ROW_NUMBER, variable_name="column", value_name="hit")
        .filter(pl.col("hit"))
        .select(ROW_NUMBER, "column")
        .sort(ROW_NUMBER, "column")
    )


def neutralise_formulas(frame: pl.DataFrame, cells: pl.DataFrame) -> pl.DataFrame:
    """Prefix flagged cells with a quote so spreadsheets show them as text."""
    for name in cells["column"].unique().to_list():
        rows = cells.filter(pl.col("column") == name)[ROW_NUMBER]
        frame = frame.with_columns(
            pl.when(pl.col(ROW_NUMBER).is_in(rows.implode()))
            .then(pl.lit(FORMULA_GUARD) + pl.col(name))
            .otherwise(pl.col(name))
            .alias(name)
        )
    return frame


_TARGETS = {
    "string": pl.String, "date": pl.Date, "integer": pl.Int64,
    "number": pl.Float64, "boolean": pl.Boolean,
}


def _trimmed(frame: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """Text columns trimmed, blank cells null. Done once, as frames: written as one expression
    inside the typing's when/then branches, Polars trimmed each column up to four times."""
    if not names:
        return frame
    stripped = frame.with_columns(pl.col(names).str.strip_chars())
    return stripped.with_columns(pl.when(pl.col(n) != "").then(pl.col(n)).alias(n) for n in names)


def _as_type(
    col: Column, dtype: pl.DataType, excel_dates: bool = False, *, trimmed: bool = False
) -> pl.Expr | None:
    """Expression typing `col` per the contract, nulling what cannot be typed; None if the
    physical type can never hold the logical type (a file-level failure). `trimmed`: text
    columns already went through `_trimmed`."""
    c = pl.col(col.name)
    if trimmed and dtype == pl.String:
        text = c
    else:
        text = c.cast(pl.String).str.strip_chars()
        text = pl.when(text == "").then(None).otherwise(text)
    numeric = dtype.is_numeric()
    if col.logical_type == "string":
        if dtype == pl.String:
            return pl.when(text == NESTED).then(None).otherwise(text)
        if dtype.is_integer() or dtype == pl.Boolean:
            return c.cast(pl.String)
        if dtype.is_float():
            return pl.when(c == c.round(0)).then(c.cast(pl.Int64, strict=False).cast(pl.String))
        if dtype.is_temporal():
            return c.cast(pl.String)
        return None
    if col.logical_type == "date":
        if dtype == pl.Date:
            return c
        if isinstance(dtype, pl.Datetime):
            return c.dt.date()
        if dtype != pl.String:
            return None
        parsed = text.str.strptime(pl.Date, col.date_format or "%Y-%m-%d", strict=False)
        if not excel_dates:
            return parsed
        excel = text.str.strptime(pl.Datetime, _EXCEL_DATETIME, strict=False).dt.date()
        return pl.coalesce(parsed, excel)
    if col.logical_type == "integer":
        if dtype.is_integer():
            return c.cast(pl.Int64)
        if dtype.is_float():
            return pl.when(c == c.round(0)).then(c.cast(pl.Int64, strict=False))
        if dtype != pl.String:
            return None
        whole = text.str.replace(r"\.0+$", "")
        return whole.cast(pl.Int64, strict=False)
    if col.logical_type == "number":
        if numeric:
            return c.cast(pl.Float64)
        if dtype != pl.String:
            return None
        return text.cast(pl.Float64, strict=False)
    if col.logical_type == "boolean":
        if dtype == pl.Boolean:
            return c
        if dtype.is_integer():
            return pl.when(c == 1).then(True).when(c == 0).then(False)
        if dtype != pl.String:
            return None
        low = text.str.to_lowercase()
        return pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False)
    return None


def uncoercible_columns(frame: pl.DataFrame, contract: DepartmentContract) -> list[str]:
    """Columns whose physical type can never hold the contract's logical type."""
    return [
        c.name for c in contract.columns
        if frame.schema[c.name] != pl.Null and _as_type(c, frame.schema[c.name]) is None
    ]


def coerce_types(
    frame: pl.DataFrame, contract: DepartmentContract, *, excel_dates: bool = False
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Type each column per the contract. Returns the typed frame and (row_number, column) of
    cells that were present but could not be typed (their typed value is null)."""
    exprs, present = [], []
    text = [c.name for c in contract.columns if frame.schema[c.name] == pl.String]
    source = _trimmed(frame, text)
    for col in contract.columns:
        dtype = frame.schema[col.name]
        expr = (
            pl.lit(None) if dtype == pl.Null
            else _as_type(col, dtype, excel_dates, trimmed=True)
        )
        exprs.append(expr.cast(_TARGETS[col.logical_type]).alias(col.name))
        if col.logical_type == "string" and dtype == pl.String and not (
            contract.format in ("json", "ndjson")
            and frame.get_column(col.name).str.starts_with(NESTED).any()
        ):
            continue  # text is always text, unless JSON put an object there
        # Trimmed text is null where blank: present means not null, whatever the type.
        present.append(pl.col(col.name).is_not_null().alias(col.name))
    typed = source.select(pl.col(ROW_NUMBER), *exprs)
    flags = source.select(present)
    failed = [
        (flags.get_column(name) & typed.get_column(name).is_null()).alias(name)
        for name in flags.columns
    ]
    bad = [
        typed.get_column(ROW_NUMBER).filter(mask).to_frame().with_columns(column=pl.lit(mask.name))
        for mask in failed
        if mask.any()
    ]
    if not bad:
        return typed, pl.DataFrame(schema={ROW_NUMBER: pl.Int64, "column": pl.String})
    return typed, pl.concat(bad)


def apply_value_maps(frame: pl.DataFrame, contract: DepartmentContract) -> pl.DataFrame:
    """Recode declared values (e.g. Female -> F), after validation against the raw values."""
    return frame.with_columns(
        pl.col(c.name).replace(c.value_map) for c in contract.columns if c.value_map
    )


def nhs_mod11_valid(values: pl.Series) -> pl.Series:
    """True if a 10-digit NHS number (spaces/hyphens allowed) has a valid mod-11 check digit
    (schemas/identifiers.py); null where the value is missing or not 10 digits (the pattern
    rule speaks for those)."""
    digits = values.cast(pl.String).str.replace_all(r"[\s-]", "")
    # The number is materialised before the arithmetic: as an expression, Polars evaluated the
    # regex and cast once per reference to it (about twenty), 3.7 s instead of 0.2 s a chunk.
    number = pl.select(
        pl.when(digits.str.contains(r"^\d{10}$")).then(digits.cast(pl.Int64, strict=False))
    ).to_series()
    return pl.DataFrame({"v": number}).select(nhs_number_valid(pl.col("v"))).to_series()


# HMRC NIM39110: prefixes never issued. First letter not D F I Q U V; second not D F I O Q U V;
# and these pairs never. (Temporary numbers beginning TN are not NI numbers either.)
NI_BAD_FIRST = "DFIQUV"
NI_BAD_SECOND = "DFIOQUV"
NI_NEVER_ISSUED = ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ")


def ni_prefix_valid(values: pl.Series) -> pl.Series:
    """True if an NI number's two-letter prefix is one HMRC issues; null where the value is
    missing or does not start with two letters (the pattern rule speaks for those)."""
    prefix = values.cast(pl.String).str.replace_all(r"\s", "").str.to_uppercase().str.slice(0, 2)
    shaped = prefix.str.contains(r"^[A-Z]{2}$")
    first, second = prefix.str.slice(0, 1), prefix.str.slice(1, 1)
    valid = (
        ~first.is_in(list(NI_BAD_FIRST))
        & ~second.is_in(list(NI_BAD_SECOND))
        & ~prefix.is_in(list(NI_NEVER_ISSUED))
    )
    return valid.zip_with(shaped.fill_null(False), pl.Series([None] * len(valid), dtype=pl.Boolean))


def plausible_dates(values: pl.Series, col: Column, extract_date: date) -> pl.Series:
    """True where a date lies within the column's plausible range; null where missing."""
    bounds = col.plausible_range
    inside = values.is_not_null()
    if bounds is not None and bounds.earliest is not None:
        inside = inside & (values >= bounds.earliest)
    if bounds is not None and bounds.latest is not None:
        latest = extract_date if bounds.latest == "extract_date" else bounds.latest
        inside = inside & (values <= latest)
    return inside.zip_with(values.is_not_null(), pl.Series([None] * len(values), dtype=pl.Boolean))
