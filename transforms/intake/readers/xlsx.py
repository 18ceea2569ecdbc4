"""XLSX extracts: limits checked from the workbook's own XML, then read in a child process.

calamine (under Polars' `read_excel`) sizes its buffers from a sheet's used range, so a 7 KB
workbook whose range reaches the last cell asks for 512 GiB and aborts the whole process. The
sheet count, the used range and the sheet's unpacked size are therefore checked first from the
zip with the standard library, against the contract's limits; and the workbook is then read
by a child Python process (about half a second, mostly importing Polars), so that anything the
native reader still does (an abort, a panic, running out of memory or time) ends that child
only, and becomes this delivery's rejection.

Formulas: a cell's cached result would be taken as data, so formula cells are found in the
sheet XML and their text replaces the cached value; the contract's formulaPolicy then treats
them as it treats formula text in any other extract (quarantine, or neutralise).
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import zipfile
from xml.etree import ElementTree

import polars as pl

from schemas.contract import DepartmentContract
from transforms.intake.common import RawExtract, drop_blank_rows, reject, slices
from transforms.intake.source import Source

_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_CELL = re.compile(r"^\$?([A-Z]{1,3})\$?(\d+)$")
_DIMENSION = re.compile(rb'<(?:\w+:)?dimension\s+ref="([^"]+)"')

# Run by the child: read the workbook from stdin, write the sheet as Arrow IPC to stdout.
_CHILD = """
import io, json, resource, sys
limit = int(sys.argv[2])
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import polars as pl
data = sys.stdin.buffer.read()
try:
    frame = pl.read_excel(io.BytesIO(data), sheet_name=sys.argv[1], engine="calamine",
                          infer_schema_length=0, drop_empty_rows=False, drop_empty_cols=False,
                          raise_if_empty=False)
except Exception as exc:
    text = str(exc).lower()
    missing = "sheet" in text and ("no matching" in text or "not found" in text)
    sys.stderr.write(json.dumps({"error": type(exc).__name__, "missing_sheet": missing}))
    sys.exit(3)
out = io.BytesIO()
frame.select(pl.all().cast(pl.String)).write_ipc(out)
sys.stdout.buffer.write(out.getvalue())
"""


def column_index(letters: str) -> int:
    """A1-style column letters to a 1-based index."""
    index = 0
    for char in letters:
        index = index * 26 + ord(char) - 64
    return index


def cell_position(ref: str) -> tuple[int, int] | None:
    """(row, column), both 1-based, of an A1 reference."""
    match = _CELL.match(ref.upper())
    return (int(match.group(2)), column_index(match.group(1))) if match else None


def _sheet_part(book: zipfile.ZipFile, sheet: str, name: str, max_sheets: int) -> str:
    """The zip member holding sheet `sheet`, after checking how many sheets there are."""
    try:
        workbook = ElementTree.fromstring(book.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(book.read("xl/_rels/workbook.xml.rels"))
    except (KeyError, ElementTree.ParseError):
        raise reject(name, "unreadable", "not readable as XLSX (no workbook part)") from None
    sheets = workbook.findall(f"{_MAIN}sheets/{_MAIN}sheet")
    if len(sheets) > max_sheets:
        raise reject(name, "resource_limit",
                     f"{len(sheets)} sheets; the contract allows {max_sheets} (maxSheets)")
    target = next((s.get(f"{_REL}id") for s in sheets if s.get("name") == sheet), None)
    if target is None:
        raise reject(name, "missing_sheet", f"no sheet named '{sheet}'")
    for rel in rels.findall(f"{_PKG_REL}Relationship"):
        if rel.get("Id") == target:
            part = rel.get("Target", "").lstrip("/")
            return part if part.startswith("xl/") else f"xl/{part}"
    raise reject(name, "unreadable", f"sheet '{sheet}' has no part in the workbook")


def _used_range(book: zipfile.ZipFile, part: str) -> tuple[tuple[int, int], tuple[int, int]] | None:
    with book.open(part) as stream:
        head = stream.read(4096)
    match = _DIMENSION.search(head)
    if not match:
        return None
    corners = [cell_position(p) for p in match.group(1).decode("ascii", "replace").split(":")]
    if any(c is None for c in corners):
        return None
    return corners[0], corners[-1]  # type: ignore[return-value]


def _formulas(book: zipfile.ZipFile, part: str) -> tuple[dict, tuple[int, int]]:
    """Formula text by (row, column), and the first used (row, column) of the sheet.

    Most extracts hold no formula: one pass over the raw bytes looks for `<f`, and only a sheet
    that has one is parsed cell by cell."""
    with book.open(part) as stream:
        has_formula = False
        tail = b""
        while block := stream.read(1 << 20):
            if re.search(rb"<(?:\w+:)?f[\s>/]", tail + block):
                has_formula = True
                break
            tail = block[-16:]
    if not has_formula:
        return {}, (0, 0)
    found: dict[tuple[int, int], str] = {}
    first_row = first_col = None
    with book.open(part) as stream:
        for _, element in ElementTree.iterparse(stream):
            if element.tag != f"{_MAIN}c":
                continue
            position = cell_position(element.get("r", ""))
            if position is not None:
                first_row = position[0] if first_row is None else min(first_row, position[0])
                first_col = position[1] if first_col is None else min(first_col, position[1])
                formula = element.find(f"{_MAIN}f")
                if formula is not None:
                    found[position] = "=" + (formula.text or "")
            element.clear()
    return found, (first_row or 1, first_col or 1)


def open_xlsx(source: Source, contract: DepartmentContract, chunk_rows: int) -> RawExtract:
    name = source.name
    limits = contract.limits
    data = source.read_bytes()
    try:
        book = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise reject(name, "unreadable", "not readable as XLSX (not a zip archive)") from None
    with book:
        part = _sheet_part(book, contract.sheet or "", name, limits.max_sheets)
        try:
            info = book.getinfo(part)
        except KeyError:
            raise reject(name, "unreadable", "not readable as XLSX (sheet part missing)") from None
        if info.file_size > limits.max_sheet_bytes:
            raise reject(name, "resource_limit",
                         f"sheet '{contract.sheet}' unpacks to {info.file_size} bytes; the "
                         f"contract allows {limits.max_sheet_bytes} (maxSheetBytes)")
        used = _used_range(book, part)
        if used is not None:
            (top, left), (bottom, right) = used
            cells = (bottom - top + 1) * (right - left + 1)
            if cells > limits.max_used_range_cells:
                raise reject(name, "resource_limit",
                             f"sheet '{contract.sheet}' has a used range of {cells} cells "
                             f"({bottom - top + 1} rows by {right - left + 1} columns); the "
                             f"contract allows {limits.max_used_range_cells} "
                             "(maxUsedRangeCells)")
        formulas, (first_row, first_col) = _formulas(book, part)
    frame = _read_in_child(data, contract, name)
    del data
    if formulas:
        frame = _with_formula_text(frame, formulas, first_row, first_col)
    batches = (drop_blank_rows(b) for b in slices(frame, chunk_rows))
    return RawExtract(name, frame.columns, batches)


def _with_formula_text(frame: pl.DataFrame, formulas: dict, first_row: int, first_col: int):
    """Put each formula's text in place of its cached value (header row = first used row)."""
    columns = frame.columns
    values = {c: frame.get_column(c).to_list() for c in columns}
    for (row, col), text in formulas.items():
        index, position = row - first_row - 1, col - first_col
        if 0 <= index < frame.height and 0 <= position < len(columns):
            values[columns[position]][index] = text
    return pl.DataFrame(values, schema=frame.schema)


def _read_in_child(data: bytes, contract: DepartmentContract, name: str) -> pl.DataFrame:
    limits = contract.limits
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _CHILD, contract.sheet or "",
             str(limits.reader_memory_bytes)],
            input=data, capture_output=True, timeout=limits.reader_seconds, check=False,
        )
    except subprocess.TimeoutExpired:
        raise reject(name, "resource_limit",
                     f"the XLSX reader took longer than {limits.reader_seconds} s "
                     "(readerSeconds)") from None
    if done.returncode == 3:
        try:
            report = json.loads(done.stderr.decode("utf-8", "replace"))
        except ValueError:
            report = {}
        if report.get("missing_sheet"):
            raise reject(name, "missing_sheet", f"no sheet named '{contract.sheet}'")
        error = str(report.get("error", "error"))[:60]
        raise reject(name, "unreadable", f"not readable as XLSX ({error})")
    if done.returncode != 0:
        how = (
            f"signal {signal.Signals(-done.returncode).name}" if done.returncode < 0
            else f"exit code {done.returncode}"
        )
        raise reject(name, "reader_crashed",
                     f"the XLSX reader ended with {how} (a damaged or hostile workbook)")
    try:
        return pl.read_ipc(io.BytesIO(done.stdout))
    except (Exception, pl.exceptions.PanicException):  # noqa: BLE001
        raise reject(name, "reader_crashed", "the XLSX reader returned no table") from None



