"""The secure zone's pseudonymised deliveries: tokens and derived fields, never identifiers.

One Parquet file per accepted delivery, named `<extract date>_<delivery id>`, with the delivery
id and key id in its metadata. The one a release uses is the delivery that arrived last (the
registry's order), never the last by name: two files of the same extract date sort by hash.
Files are written under a temporary name and renamed, so a crash never leaves a half-written
delivery that a later run would link.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from transforms.files import METADATA_KEY, read_metadata, write_atomically
from transforms.identity.linkage_rules import TOKEN_PREFIX
from transforms.intake import DeliveryRegistry, latest_by_arrival

__all__ = ["latest_tokens", "read_metadata", "token_path", "tokens_dir", "write_tokens"]


def tokens_dir(root: Path) -> Path:
    return root / "secure" / "pseudonymised"


def write_tokens(
    root: Path, outcome: Any, tokens: pl.DataFrame, key_id: str, counts: dict[str, Any]
) -> Path:
    """Write one delivery's tokens from one frame; `counts` (pseudonymisation counts) travel in
    the metadata."""
    target = token_path(root, outcome.department, outcome.extract_date, outcome.delivery_id)

    def write(temporary: Path) -> None:
        table = arrow(tokens)
        writer = token_writer(temporary, table.schema)
        try:
            writer.write_table(table)
            writer.add_key_value_metadata(token_metadata(
                outcome.department, outcome.extract_date, outcome.delivery_id, key_id, counts
            ))
        finally:
            writer.close()

    return write_atomically(target, write)


def arrow(tokens: pl.DataFrame) -> pa.Table:
    # Polars' own string layout (string_view) is handed over without a copy.
    return tokens.to_arrow(compat_level=pl.CompatLevel.newest())


def token_writer(temporary: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """A Parquet writer storing token columns plain: a token is 64 random hex digits that
    repeat only within a person, so a dictionary or compression gains about 5% of the file
    and costs half of its writing time (council tax, 6.1M rows: 6.1 s -> 3.2 s, file 3% larger)."""
    tokens = {name for name in schema.names if name.startswith(TOKEN_PREFIX)}
    return pq.ParquetWriter(
        temporary,
        schema,
        use_dictionary=[name for name in schema.names if name not in tokens],
        compression={name: "none" if name in tokens else "snappy" for name in schema.names},
    )


def token_metadata(
    department: str, extract_date: date, delivery_id: str, key_id: str, counts: dict[str, Any]
) -> dict[bytes, str]:
    meta = {
        "delivery_id": delivery_id,
        "department": department,
        "extract_date": extract_date.isoformat(),
        "key_id": key_id,
        "pseudonymisation": counts,
    }
    return {METADATA_KEY: json.dumps(meta, sort_keys=True)}


def token_path(root: Path, department: str, extract_date: date, delivery_id: str) -> Path:
    return tokens_dir(root) / department / f"{extract_date:%Y%m%d}_{delivery_id[:16]}.parquet"


def latest_tokens(root: Path) -> dict[Path, dict[str, Any]]:
    """The newest accepted delivery of each department by arrival, with its metadata.

    A department whose newest delivery has no tokens on disk (a damaged secure zone) is left
    out, so the release's freshness check reports it missing instead of using older data.
    """
    latest = {}
    outcomes = latest_by_arrival(DeliveryRegistry(root).all())
    for department, outcome in sorted(outcomes.items()):
        path = token_path(root, department, outcome.extract_date, outcome.delivery_id)
        if path.exists():
            latest[path] = read_metadata(path)
    return latest
