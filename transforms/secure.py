"""The secure zone's pseudonymised deliveries: tokens and derived fields, never identifiers.

One Parquet file per accepted delivery, named so that name order is extract-date order, with
the delivery id and key id in its metadata. Files are written under a temporary name and renamed,
so a crash never leaves a half-written delivery that a later run would link.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

METADATA_KEY = b"cohortshare"


def tokens_dir(root: Path) -> Path:
    return root / "secure" / "pseudonymised"


def write_tokens(
    root: Path, outcome: Any, tokens: pl.DataFrame, key_id: str, counts: dict[str, Any]
) -> Path:
    """Write one delivery's tokens; `counts` (pseudonymisation counts) travel in the metadata."""
    folder = tokens_dir(root) / outcome.department
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{outcome.extract_date:%Y%m%d}_{outcome.delivery_id[:16]}.parquet"
    meta = {
        "delivery_id": outcome.delivery_id,
        "department": outcome.department,
        "extract_date": outcome.extract_date.isoformat(),
        "key_id": key_id,
        "pseudonymisation": counts,
    }
    arrow = tokens.to_arrow()
    arrow = arrow.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})
    target = folder / name
    tmp = folder / f".{name}.tmp"
    pq.write_table(arrow, tmp)
    os.replace(tmp, target)
    return target


def write_parquet_atomically(frame: pl.DataFrame, target: Path) -> None:
    """Write under a temporary name and rename, so readers never see half a file."""
    tmp = target.with_name(f".{target.name}.tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, target)


def read_metadata(path: Path) -> dict[str, Any]:
    raw = pq.read_schema(path).metadata or {}
    return json.loads(raw.get(METADATA_KEY, b"{}"))


def latest_tokens(root: Path) -> dict[Path, dict[str, Any]]:
    """The most recent accepted delivery of each department, with its metadata."""
    latest = {}
    base = tokens_dir(root)
    if not base.is_dir():
        return latest
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        files = sorted(folder.glob("[0-9]*.parquet"))
        if files:
            latest[files[-1]] = read_metadata(files[-1])
    return latest
