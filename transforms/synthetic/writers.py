"""Writing each extract in its department's file format, atomically.

Formats follow the contracts (CSV, Excel, NDJSON, Windows-1252 CSV, Parquet), and every file is
written with the project's one atomic writer (`transforms/files.py`), so the landing zone never
holds half a file; its temporary names end in `.tmp`, which no contract's file pattern matches.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import xlsxwriter

CHILDRENS_SHEET = "Children"
COUNCIL_TAX_ENCODING = "cp1252"  # Windows-1252, as the contract's customProperties say


def _write_csv(frame: pl.DataFrame, path: Path, extract_date: dt.date) -> None:
    frame.write_csv(path)


def _write_xlsx(frame: pl.DataFrame, path: Path, extract_date: dt.date) -> None:
    workbook = xlsxwriter.Workbook(str(path))
    # A fixed creation time makes the file byte-identical for a seed.
    created = dt.datetime.combine(extract_date, dt.time())
    workbook.set_properties({"created": created, "title": "Children's services open cases"})
    try:
        frame.write_excel(workbook=workbook, worksheet=CHILDRENS_SHEET, autofit=False)
    finally:
        workbook.close()


def _write_ndjson(frame: pl.DataFrame, path: Path, extract_date: dt.date) -> None:
    frame.write_ndjson(path)


def _write_windows_csv(frame: pl.DataFrame, path: Path, extract_date: dt.date) -> None:
    text = frame.write_csv(separator=";", line_terminator="\r\n")
    path.write_bytes(text.encode(COUNCIL_TAX_ENCODING))


def _write_parquet(frame: pl.DataFrame, path: Path, extract_date: dt.date) -> None:
    frame.write_parquet(path)


WRITERS = {
    "adult_social_care": _write_csv,
    "childrens_services": _write_xlsx,
    "housing": _write_ndjson,
    "council_tax": _write_windows_csv,
    "benefits": _write_parquet,
}
