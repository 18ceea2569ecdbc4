"""What every intake module shares: the row-number column, the nested-value marker, and the
one-line rejection (file, rule, detail; never a cell value, the file name escaped)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import polars as pl

from schemas.contract import DepartmentContract
from schemas.errors import DeliveryRejected
from transforms.intake.names import printable

ROW_NUMBER = "row_number"
# Rows validated at a time. Great Expectations costs about 13 ms per expectation per chunk
# whatever its size, so larger chunks are faster: on 1M rows, idle 2-core machine, 453-503k
# rows/s at 250,000 and 577k at 500,000, for 250 MB more peak (docs/operations.md).
DEFAULT_CHUNK_ROWS = 500_000
# JSON objects and arrays under a declared column become this marker: never a valid cell.
NESTED = "\x00nested"
# Row-level findings a reader makes before any typing: (row_number, rule, raw column name).
FLAG_SCHEMA = {ROW_NUMBER: pl.Int64, "rule": pl.String, "raw_column": pl.String}


def reject(file_name: str, rule: str, detail: str, count: int | None = None) -> DeliveryRejected:
    """A one-line file-level rejection: file, rule, detail (columns, counts), never a value."""
    exc = DeliveryRejected(f"{printable(file_name)}: {rule}: {detail}")
    exc.rule = rule  # type: ignore[attr-defined]
    exc.count = count  # type: ignore[attr-defined]
    return exc


def no_flags() -> pl.DataFrame:
    return pl.DataFrame(schema=FLAG_SCHEMA)


@dataclass
class RawExtract:
    """A readable extract: its header and its rows, in batches carrying `row_number` (1-based).

    `flags` holds what the reader found per row that typing cannot see (a key written twice
    on one JSON line), as (row_number, rule, raw column)."""

    file_name: str
    header: list[str]
    batches: Iterator[pl.DataFrame]
    flags: pl.DataFrame = field(default_factory=no_flags)
    # The open file the batches read (through /proc/self/fd): held here so that it stays open
    # while they are read, and no later file can take over its descriptor number.
    source: object = None
    # The UTF-8 copy the batches read, for a text file in another encoding (`text.transcoded`).
    spool: object = None


OnError = Callable[[BaseException], DeliveryRejected]


def guarded(
    batches: Iterator[pl.DataFrame], name: str, on_error: OnError, expected_rows: int,
    *, drop_blank: bool = False,
) -> Iterator[pl.DataFrame]:
    """Re-raise any reader error met while streaming as a rejection without its text.

    A streaming reader that fails inside its engine can end the stream early without an error;
    the rows are therefore counted beforehand by a second, independent path (the file's own
    row count, or a count-only scan, done before any rows are held so the peaks do not add up)
    and a partial read can never pass as a whole delivery. Blank rows (every cell empty) are
    counted as read, then dropped: a blank line is not a row.
    """
    seen = 0
    try:
        for batch in batches:
            seen += batch.height
            batch = batch.with_columns(pl.col(ROW_NUMBER).cast(pl.Int64))
            yield drop_blank_rows(batch) if drop_blank else batch
    except DeliveryRejected:
        raise
    except (Exception, pl.exceptions.PanicException) as exc:  # noqa: BLE001 - see module doc
        raise on_error(exc) from None
    if seen != expected_rows:
        raise reject(name, "truncated", f"the reader stopped after {seen} of {expected_rows} rows")


def drop_blank_rows(batch: pl.DataFrame) -> pl.DataFrame:
    """Rows with at least one cell (the readers read an empty cell as null)."""
    cells = [c for c in batch.columns if c != ROW_NUMBER]
    if not cells:
        return batch
    return batch.filter(pl.any_horizontal(pl.col(cells).is_not_null()))


def count_rows(lazy: pl.LazyFrame, on_error: OnError) -> int:
    """Rows of a scan, counted without materialising them (Polars' count-only fast path)."""
    try:
        return lazy.select(pl.len()).collect(engine="streaming").item()
    except (Exception, pl.exceptions.PanicException) as exc:  # noqa: BLE001 - see guarded
        raise on_error(exc) from None


def slices(frame: pl.DataFrame, chunk_rows: int, *, offset: int = 1) -> Iterator[pl.DataFrame]:
    """A frame in chunks with `row_number` from `offset`."""
    frame = frame.with_row_index(ROW_NUMBER, offset=offset)
    frame = frame.with_columns(pl.col(ROW_NUMBER).cast(pl.Int64))
    for start in range(0, max(frame.height, 1), chunk_rows):
        yield frame.slice(start, chunk_rows)


def reject_repeated(header: list[str], contract: DepartmentContract, file_name: str) -> None:
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
