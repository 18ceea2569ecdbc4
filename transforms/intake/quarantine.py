"""Quarantine: rows that broke a contract rule, kept in the restricted zone for the data owner.

One Parquet file per delivery, `<root>/quarantine/<department>/<delivery id[:16]>.parquet`, one
row per (row_number, rule, column) breach with the raw row as text. The file is written
atomically (`transforms/files.py`), so it is either whole or absent, and the same delivery
always maps to the same name: a re-run replaces it rather than adding a second copy.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from schemas.delivery import DeliveryOutcome
from transforms.files import write_atomically

QUARANTINE_DIR = "quarantine"


def quarantine_path(root: Path, department: str, delivery_id: str) -> Path:
    return Path(root) / QUARANTINE_DIR / department / f"{delivery_id[:16]}.parquet"


def write_quarantine(rows: pl.DataFrame, target: Path, outcome: DeliveryOutcome) -> Path:
    """Write quarantined rows atomically, tagged with the delivery and contract they failed."""
    table = rows.to_arrow()
    metadata = dict(table.schema.metadata or {})
    metadata.update(
        {
            b"cohortshare.delivery_id": outcome.delivery_id.encode(),
            b"cohortshare.contract_id": outcome.contract_id.encode(),
            b"cohortshare.contract_version": outcome.contract_version.encode(),
        }
    )
    table = table.replace_schema_metadata(metadata)
    write_atomically(target, lambda temporary: pq.write_table(table, temporary))
    return target

