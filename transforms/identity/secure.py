"""The secure zone's pseudonymised deliveries: tokens and derived fields, never identifiers.

One Parquet file per accepted delivery, named so that name order is extract-date order, with
the delivery id and key id in its metadata. Files are written under a temporary name and renamed,
so a crash never leaves a half-written delivery that a later run would link.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from transforms.files import read_metadata, write_parquet

__all__ = ["latest_tokens", "read_metadata", "tokens_dir", "write_tokens"]


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
    target = folder / name
    write_parquet(tokens, target, meta)
    return target


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
