"""CSV extracts: encoding, compression and line ends recognised, then read by Polars in chunks.

Polars reads the open descriptor (`Source.reader_path`) with `glob=False`. Its parse errors can
quote cell text, so they are replaced by a rule and, where Python's own `csv` module can find
it, the line where the file stops making sense.
"""

from __future__ import annotations

import codecs
import csv
import io

import polars as pl

from schemas.contract import DepartmentContract
from transforms.intake.common import (
    ROW_NUMBER,
    RawExtract,
    count_rows,
    guarded,
    reject,
    reject_repeated,
)
from transforms.intake.readers.text import spool_path, transcoded, unpacked, wide_encoding
from transforms.intake.source import Source


def header_of(first_line: str, delimiter: str) -> list[str]:
    return next(csv.reader([first_line], delimiter=delimiter), [])


def ends_truncated(data_tail: str, delimiter: str, width: int) -> bool:
    """A file cut off mid-row: no final newline and a last line shorter than the header."""
    if data_tail.endswith(("\n", "\r")):
        return False
    last_line = data_tail.splitlines()[-1] if data_tail else ""
    if last_line.count('"') % 2 == 1:
        return True
    return len(header_of(last_line, delimiter)) < width


def utf8_valid(blocks) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for block in blocks:
            decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def where_csv_breaks(text: str, delimiter: str, width: int) -> str:
    """The first line at which `text` stops being CSV with `width` fields, in words."""
    csv.field_size_limit(1 << 30)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    start = 1
    try:
        for record in reader:
            if len(record) > width:
                return f"line {start} has {len(record)} fields, the header {width}"
            start = reader.line_num + 1
    except csv.Error:
        return f"line {start} has a quoted field that is not closed or a misplaced quote"
    return "no line found at fault"


def open_csv(source: Source, contract: DepartmentContract, chunk_rows: int) -> RawExtract:
    name = source.name
    declared = codecs.lookup(contract.encoding).name
    source = unpacked(source, contract)
    wide = wide_encoding(source.head(4096))
    if wide and not declared.startswith(("utf-16", "utf-32")):
        raise reject(name, "encoding", f"file is {wide[0]}; the contract declares "
                     f"{contract.encoding}")
    if source.long_line is not None:
        limit = contract.limits.max_line_bytes
        raise reject(name, "resource_limit",
                     f"line {source.long_line} is longer than {limit} bytes (maxLineBytes)")
    spool = None
    if declared == "utf-8":
        reader_source = source.reader_path
        head_text = source.head().decode("utf-8", errors="replace").removeprefix("\ufeff")
        tail_text = source.tail().decode("utf-8", errors="replace")
    else:
        codec = wide[1] if wide and declared == "utf-16" else declared
        spool, head_text, tail_text = transcoded(
            source, codec, contract.encoding, refuse_utf8=not wide
        )
        reader_source = spool_path(spool)
    # Classic Mac exports end lines with CR alone; Polars reads them given the line end.
    eol = "\r" if "\n" not in head_text and "\r" in head_text else "\n"
    header = header_of(head_text.splitlines()[0] if head_text else "", contract.delimiter)
    if not header or header == [""]:
        raise reject(name, "unreadable", "no header row")
    # Checked on the header as written: Polars would rename the second copy silently.
    reject_repeated(header, contract, name)
    if ends_truncated(tail_text, contract.delimiter, len(header)):
        raise reject(name, "truncated", "the last row is cut short (no final newline)")

    def whole_text() -> str:
        with open(reader_source, "rb") as text:  # the file (unpacked), or its UTF-8 copy
            return text.read().decode("utf-8", errors="replace")

    def on_error(exc: BaseException) -> Exception:
        if spool is None and not utf8_valid(source.blocks()):
            return reject(name, "encoding", "file is not valid UTF-8")
        where = where_csv_breaks(whole_text(), contract.delimiter, len(header))
        if "more fields" in str(exc):
            return reject(name, "unreadable", f"rows have more fields than the header ({where})")
        return reject(name, "unreadable", f"not parseable as CSV ({where})")

    try:
        lazy = pl.scan_csv(
            reader_source,
            separator=contract.delimiter,
            infer_schema=False,
            row_index_name=ROW_NUMBER,
            row_index_offset=1,
            raise_if_empty=False,
            eol_char=eol,
            glob=False,
        )
        columns = lazy.collect_schema().names()
    except (Exception, pl.exceptions.PanicException) as exc:  # noqa: BLE001 - values in text
        raise on_error(exc) from None
    batches = guarded(
        lazy.collect_batches(chunk_size=chunk_rows), name, on_error, count_rows(lazy, on_error),
        drop_blank=True,
    )
    # The batches read the UTF-8 copy, or the file (unpacked from gzip into a file of its own).
    return RawExtract(
        name, columns[1:] if columns[0] == ROW_NUMBER else columns, batches,
        spool=spool or source,
    )
