"""Parquet files as the pipeline writes them: atomically, with our metadata under one key.

Every file we write (secure tokens, staged and published cohort tables) carries its ids
(delivery, release, key id, contract versions) as JSON under the Parquet key `cohortshare`, and
is written under a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

METADATA_KEY = b"cohortshare"


def write_parquet(
    frame: pl.DataFrame, target: Path, metadata: dict[str, Any] | None = None
) -> None:
    arrow = frame.to_arrow()
    if metadata is not None:
        encoded = json.dumps(metadata, sort_keys=True, default=str).encode()
        arrow = arrow.replace_schema_metadata({METADATA_KEY: encoded})
    tmp = target.with_name(f".{target.name}.tmp")
    pq.write_table(arrow, tmp)
    os.replace(tmp, target)


def read_metadata(path: Path) -> dict[str, Any]:
    raw = pq.read_schema(path).metadata or {}
    return json.loads(raw.get(METADATA_KEY, b"{}"))
