"""Parquet extracts: typed columns read by Polars in chunks; rows counted from the footer."""

from __future__ import annotations

import polars as pl
import pyarrow.parquet as pq

from schemas.contract import DepartmentContract
from transforms.intake.common import ROW_NUMBER, RawExtract, guarded, reject
from transforms.intake.source import Source


def open_parquet(source: Source, contract: DepartmentContract, chunk_rows: int) -> RawExtract:
    name = source.name

    def on_error(exc: BaseException) -> Exception:
        return reject(name, "unreadable", f"not readable as Parquet ({type(exc).__name__})")

    try:
        expected = pq.ParquetFile(source.reader_path).metadata.num_rows
        lazy = pl.scan_parquet(
            source.reader_path, row_index_name=ROW_NUMBER, row_index_offset=1, glob=False
        )
        columns = lazy.collect_schema().names()
    except (Exception, pl.exceptions.PanicException) as exc:  # noqa: BLE001 - see guarded
        if source.size < 12 or source.tail(4) != b"PAR1":
            raise reject(name, "truncated", "the Parquet footer is missing") from None
        raise on_error(exc) from None
    batches = guarded(lazy.collect_batches(chunk_size=chunk_rows), name, on_error, expected)
    return RawExtract(name, columns[1:], batches)
