"""One reader per extract format. Each takes an open `Source` and the contract, and returns a
`RawExtract`: the header as written and the rows in chunks, every value as the file holds it.

Readers see identifiable rows; none logs, prints or puts a cell value into an exception.
"""

from __future__ import annotations

from schemas.contract import DepartmentContract
from transforms.intake.common import DEFAULT_CHUNK_ROWS, RawExtract
from transforms.intake.readers.csv import open_csv
from transforms.intake.readers.json import open_json, open_ndjson
from transforms.intake.readers.parquet import open_parquet
from transforms.intake.readers.xlsx import open_xlsx
from transforms.intake.source import Source

READERS = {
    "csv": open_csv,
    "xlsx": open_xlsx,
    "json": open_json,
    "ndjson": open_ndjson,
    "parquet": open_parquet,
}


def read_source(
    source: Source, contract: DepartmentContract, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> RawExtract:
    """Open `source` as the contract's format; raise DeliveryRejected if it cannot be read."""
    return READERS[contract.format](source, contract, chunk_rows)
