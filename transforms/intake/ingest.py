"""Ingest: read a department's extract in whatever format it comes, and conform it to its contract.

This is the one place that knows raw column names (dbt's "conform"): headers are mapped to the
contract's canonical names through `physicalName` and declared aliases, undeclared columns are
dropped at once (data minimisation) and reported by name, text that a spreadsheet would execute
as a formula is neutralised or flagged, and values are typed per the contract.

Identifiable rows pass through here. Nothing in this module logs, prints or puts a cell value
into an exception: Polars' own parse errors quote the offending text, so they are caught and
replaced by a rule name (`unreadable`, `truncated`, `encoding`, ...).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from schemas.contract import Column, DepartmentContract
from schemas.errors import DeliveryRejected

ROW_NUMBER = "row_number"
DEFAULT_CHUNK_ROWS = 250_000
# OWASP "CSV injection": cells starting with these run as formulas in Excel and LibreOffice.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
FORMULA_GUARD = "'"
# JSON objects and arrays under a declared column become this marker: never a valid cell.
NESTED = "\x00nested"
_FORMULA_START = "^[" + "".join(re.escape(p) for p in FORMULA_PREFIXES) + "]"
_DATE_IN_NAME = re.compile(r"(?<!\d)(\d{8})(?!\d)")
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
# Excel cells holding real dates arrive as text in this form when read as strings.
_EXCEL_DATETIME = "%Y-%m-%d %H:%M:%S"


def reject(file_name: str, rule: str, detail: str, count: int | None = None) -> DeliveryRejected:
    """A one-line file-level rejection: file, rule, detail (columns, counts), never a value."""
    exc = DeliveryRejected(f"{file_name}: {rule}: {detail}")
    exc.rule = rule  # type: ignore[attr-defined]
    exc.count = count  # type: ignore[attr-defined]
    return exc


# --- fingerprint and extract date ----------------------------------------------------------


def fingerprint_file(path: Path) -> str:
    """sha256 of the file's bytes: the delivery id. A changed file is a new delivery."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_date_of(path: Path) -> date:
    """The extract's date: the YYYYMMDD in its file name, else the file's modification date."""
    for match in _DATE_IN_NAME.finditer(Path(path).name):
        try:
            return datetime.strptime(match.group(1), "%Y%m%d").date()
        except ValueError:
            continue
    return datetime.fromtimestamp(Path(path).stat().st_mtime).date()


# --- reading ---------------------------------------------------------------------------------


@dataclass
class RawExtract:
    """A readable extract: its header and its rows, in batches carrying `row_number` (1-based)."""

    file_name: str
    header: list[str]
    batches: Iterator[pl.DataFrame]


def open_extract(
    path: Path, contract: DepartmentContract, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> RawExtract:
    """Open `path` as the contract's format; raise DeliveryRejected if it cannot be read."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise reject(name, "unreadable", "file not found")
    if path.stat().st_size == 0:
        raise reject(name, "unreadable", "file is empty (0 bytes)")
    readers = {
        "csv": _open_csv,
        "xlsx": _open_xlsx,
        "json": _open_json,
        "ndjson": _open_ndjson,
        "parquet": _open_parquet,
    }
    return readers[contract.format](path, contract, chunk_rows)


def _guarded(
    batches: Iterator[pl.DataFrame], name: str, on_error, expected_rows: int
) -> Iterator[pl.DataFrame]:
    """Re-raise any reader error met while streaming as a rejection without its text.

    A streaming reader that fails inside its engine can end the stream early without an error;
    the rows are therefore counted beforehand by a second, independent path (the file's own
    row count, or a count-only scan, done before any rows are held so the peaks do not add up)
    and a partial read can never pass as a whole delivery.
    """
    seen = 0
    try:
        for batch in batches:
            seen += batch.height
            yield batch.with_columns(pl.col(ROW_NUMBER).cast(pl.Int64))
    except DeliveryRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - Polars errors quote cell values; never re-raise them
        raise on_error(exc) from None
    if seen != expected_rows:
        raise reject(name, "truncated", f"the reader stopped after {seen} of {expected_rows} rows")


def _count(lazy: pl.LazyFrame, on_error) -> int:
    """Rows of a scan, counted without materialising them (Polars' count-only fast path)."""
    try:
        return lazy.select(pl.len()).collect(engine="streaming").item()
    except Exception as exc:  # noqa: BLE001 - see _guarded
        raise on_error(exc) from None


def _slices(frame: pl.DataFrame, chunk_rows: int) -> Iterator[pl.DataFrame]:
    frame = frame.with_row_index(ROW_NUMBER, offset=1)
    frame = frame.with_columns(pl.col(ROW_NUMBER).cast(pl.Int64))
    for offset in range(0, max(frame.height, 1), chunk_rows):
        yield frame.slice(offset, chunk_rows)


def _utf8_valid(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _csv_header(first_line: str, delimiter: str) -> list[str]:
    return next(csv.reader([first_line], delimiter=delimiter), [])


def _ends_truncated(data_tail: str, delimiter: str, width: int) -> bool:
    """A file cut off mid-row: no final newline and a last line shorter than the header."""
    if data_tail.endswith(("\n", "\r")):
        return False
    last_line = data_tail.splitlines()[-1] if data_tail else ""
    if last_line.count('"') % 2 == 1:
        return True
    return len(_csv_header(last_line, delimiter)) < width


def _open_csv(path: Path, contract: DepartmentContract, chunk_rows: int) -> RawExtract:
    name = path.name
    encoding = codecs.lookup(contract.encoding).name
    source: Path | bytes = path
    if encoding == "utf-8":
        with path.open("rb") as handle:
            head = handle.read(1 << 16)
            handle.seek(max(0, path.stat().st_size - (1 << 16)))
            tail = handle.read()
        head_text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")
        tail_text = tail.decode("utf-8", errors="replace")
    else:
        raw = path.read_bytes()
        if _looks_utf8(raw):
            raise reject(
                name, "encoding", f"file is UTF-8 but the contract declares {contract.encoding}"
            )
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            raise reject(name, "encoding", f"file is not valid {contract.encoding}") from None
        del raw
        text = text.removeprefix("\ufeff")
        head_text, tail_text = text[: 1 << 16], text[-(1 << 16) :]
        source = text.encode("utf-8")
        del text
    header = _csv_header(head_text.splitlines()[0] if head_text else "", contract.delimiter)
    if not header or header == [""]:
        raise reject(name, "unreadable", "no header row")
    # Checked on the header as written: Polars would rename the second copy silently.
    _reject_repeated(header, contract, name)
    if _ends_truncated(tail_text, contract.delimiter, len(header)):
        raise reject(name, "truncated", "the last row is cut short (no final newline)")

    def on_error(exc: Exception) -> DeliveryRejected:
        if encoding == "utf-8" and not _utf8_valid(path):
            return reject(name, "encoding", "file is not valid UTF-8")
        if "more fields" in str(exc):
            return reject(name, "unreadable", "rows have more fields than the header")
        return reject(name, "unreadable", f"not parseable as CSV ({type(exc).__name__})")

    try:
        lazy = pl.scan_csv(
            source,
            separator=contract.delimiter,
            infer_schema=False,
            row_index_name=ROW_NUMBER,
            row_index_offset=1,
            raise_if_empty=False,
        )
        columns = lazy.collect_schema().names()
    except Exception as exc:  # noqa: BLE001 - see _guarded
        raise on_error(exc) from None
    # Polars renames a repeated header to `X_duplicated_0`; report the header as given.
    batches = _guarded(
        lazy.collect_batches(chunk_size=chunk_rows), name, on_error, _count(lazy, on_error)
    )
    return RawExtract(name, columns[1:] if columns[0] == ROW_NUMBER else columns, batches)


def _looks_utf8(raw: bytes) -> bool:
    """Bytes that decode as UTF-8 and use multi-byte sequences were not written as cp1252."""
    if raw.isascii():
        return False
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _open_xlsx(path: Path, contract: DepartmentContract, chunk_rows: int) -> RawExtract:
    name = path.name
    try:
        frame = pl.read_excel(
            path, sheet_name=contract.sheet, engine="calamine", infer_schema_length=0
        )
    except Exception as exc:  # noqa: BLE001 - see _guarded
        if "sheet" in str(exc).lower() and "no matching" in str(exc).lower():
            raise reject(name, "missing_sheet", f"no sheet named '{contract.sheet}'") from None
        raise reject(name, "unreadable", f"not readable as XLSX ({type(exc).__name__})") from None
    frame = frame.select(pl.all().cast(pl.String))
    return RawExtract(name, frame.columns, _slices(frame, chunk_rows))


def _json_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return NESTED
    return str(value)


def _open_json(path: Path, contract: DepartmentContract, chunk_rows: int) -> RawExtract:
    import json

    name = path.name
    try:
        document = json.loads(path.read_bytes())
    except UnicodeDecodeError:
        raise reject(name, "encoding", "file is not valid UTF-8") from None
    except ValueError:
        truncated = not path.read_bytes().rstrip().endswith((b"]", b"}"))
        rule = "truncated" if truncated else "unreadable"
        raise reject(name, rule, "not valid JSON") from None
    records = document.get("records", document.get("data")) if isinstance(document, dict) else (
        document
    )
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise reject(name, "unreadable", "JSON is not an array of objects")
    header: list[str] = []
    for record in records:
        header.extend(k for k in record if k not in header)
    frame = pl.DataFrame(
        {col: [_json_text(r.get(col)) for r in records] for col in header},
        schema={col: pl.String for col in header},
    )
    return RawExtract(name, header, _slices(frame, chunk_rows))


def _open_ndjson(path: Path, contract: DepartmentContract, chunk_rows: int) -> RawExtract:
    name = path.name

    def on_error(exc: Exception) -> DeliveryRejected:
        if not _utf8_valid(path):
            return reject(name, "encoding", "file is not valid UTF-8")
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4096))
            tail = handle.read().rstrip()
        if not tail.endswith(b"}"):
            return reject(name, "truncated", "the last line is cut short")
        return reject(name, "unreadable", f"not valid NDJSON ({type(exc).__name__})")

    try:
        schema = pl.scan_ndjson(path, infer_schema_length=None).collect_schema()
        nested = [c for c, t in schema.items() if t.is_nested()]
        lazy = pl.scan_ndjson(
            path,
            schema={c: pl.String for c in schema},
            row_index_name=ROW_NUMBER,
            row_index_offset=1,
        )
        if nested:
            # A nested object under a declared name can never be a cell value.
            lazy = lazy.with_columns(pl.lit(NESTED).alias(c) for c in nested)
    except Exception as exc:  # noqa: BLE001 - see _guarded
        raise on_error(exc) from None
    batches = _guarded(
        lazy.collect_batches(chunk_size=chunk_rows), name, on_error, _count(lazy, on_error)
    )
    return RawExtract(name, list(schema), batches)


def _open_parquet(path: Path, contract: DepartmentContract, chunk_rows: int) -> RawExtract:
    name = path.name

    def on_error(exc: Exception) -> DeliveryRejected:
        return reject(name, "unreadable", f"not readable as Parquet ({type(exc).__name__})")

    try:
        pl.read_parquet_schema(path)
        expected = pq.ParquetFile(path).metadata.num_rows
        lazy = pl.scan_parquet(path, row_index_name=ROW_NUMBER, row_index_offset=1)
        columns = lazy.collect_schema().names()
    except Exception as exc:  # noqa: BLE001 - see _guarded
        truncated = path.stat().st_size < 12 or path.read_bytes()[-4:] != b"PAR1"
        if truncated:
            raise reject(name, "truncated", "the Parquet footer is missing") from None
        raise on_error(exc) from None
    batches = _guarded(
        lazy.collect_batches(chunk_size=chunk_rows), name, on_error, expected
    )
    return RawExtract(name, columns[1:], batches)


# --- conforming headers ----------------------------------------------------------------------


def _normalise_header(name: str) -> str:
    return " ".join(name.replace("\ufeff", "").split()).casefold()


def _reject_repeated(header: list[str], contract: DepartmentContract, file_name: str) -> None:
    """A header naming a column twice is ambiguous. Only declared names are quoted: in a file
    without a header row the 'header' is a row of data."""
    repeated = sorted({h for h in header if header.count(h) > 1})
    if not repeated:
        return
    declared = {raw for c in contract.columns for raw in c.raw_names}
    named = [h for h in repeated if h in declared]
    others = len(repeated) - len(named)
    detail = f"header repeats column(s) {named}" if named else "header repeats column names"
    if named and others:
        detail += f" and {others} undeclared name(s)"
    raise reject(file_name, "duplicate_column", detail, len(repeated))


@dataclass(frozen=True)
class Conformance:
    """How a file's header maps onto the contract: every difference, by column name only."""

    mapping: dict[str, str]  # raw header -> canonical name
    renamed: dict[str, str] = field(default_factory=dict)  # raw header -> canonical (not exact)
    dropped: tuple[str, ...] = ()  # raw headers not in the contract
    missing_optional: tuple[str, ...] = ()  # canonical names absent from the file


def conform_header(header: list[str], contract: DepartmentContract, file_name: str) -> Conformance:
    """Match raw headers to contract columns: physical name, then aliases, then loose spelling.

    A repeated header, or a required column that cannot be found, rejects the delivery.
    """
    _reject_repeated(header, contract, file_name)
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


def _as_type(col: Column, dtype: pl.DataType, excel_dates: bool = False) -> pl.Expr | None:
    """Expression typing `col` per the contract, nulling what cannot be typed; None if the
    physical type can never hold the logical type (a file-level failure)."""
    c = pl.col(col.name)
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
    for col in contract.columns:
        dtype = frame.schema[col.name]
        expr = pl.lit(None) if dtype == pl.Null else _as_type(col, dtype, excel_dates)
        exprs.append(expr.cast(_TARGETS[col.logical_type]).alias(col.name))
        if col.logical_type == "string" and dtype == pl.String and not (
            contract.format in ("json", "ndjson")
            and frame.get_column(col.name).str.starts_with(NESTED).any()
        ):
            continue  # text is always text, unless JSON put an object there
        is_present = pl.col(col.name).is_not_null()
        if dtype == pl.String:
            is_present = is_present & (pl.col(col.name).str.strip_chars() != "")
        present.append(is_present.alias(col.name))
    typed = frame.select(pl.col(ROW_NUMBER), *exprs)
    flags = frame.select(present)
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
    """True if a 10-digit NHS number (spaces/hyphens allowed) has a valid mod-11 check digit;
    null where the value is missing or not 10 digits (the pattern rule speaks for those).

    Digits are taken arithmetically from the number as an integer, which is far faster than
    slicing strings."""
    digits = values.cast(pl.String).str.replace_all(r"[\s-]", "")
    shaped = digits.str.contains(r"^\d{10}$")
    number = digits.cast(pl.Int64, strict=False)
    total = sum(((number // 10 ** (9 - i)) % 10) * (10 - i) for i in range(9))
    check = 11 - total % 11
    check = check.zip_with(check != 11, pl.zeros(len(check), pl.Int64, eager=True))
    valid = (check != 10) & (check == number % 10)
    return valid.zip_with(shaped.fill_null(False), pl.Series([None] * len(valid), dtype=pl.Boolean))
