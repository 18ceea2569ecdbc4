"""The secure zone's pseudonymised deliveries: tokens and derived fields, never identifiers.

One Parquet file per accepted delivery, named `<extract date>_<delivery id>`, with the delivery
id and key id in its metadata. The one a release uses is the delivery that arrived last (the
registry's order), never the last by name: two files of the same extract date sort by hash.
Files are written under a temporary name and renamed, so a crash never leaves a half-written
delivery that a later run would link.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from transforms.files import METADATA_KEY, read_metadata, write_atomically
from transforms.identity.linkage_rules import TOKEN_PREFIX
from transforms.intake import DeliveryRegistry, latest_by_arrival

__all__ = ["latest_tokens", "read_metadata", "tokens_dir", "write_token_slices", "write_tokens"]


def tokens_dir(root: Path) -> Path:
    return root / "secure" / "pseudonymised"


def write_tokens(
    root: Path, outcome: Any, tokens: pl.DataFrame, key_id: str, counts: dict[str, Any]
) -> Path:
    """Write one delivery's tokens; `counts` (pseudonymisation counts) travel in the metadata."""
    return _write(root, outcome, [tokens], key_id, lambda: counts)


def write_token_slices(
    root: Path, outcome: Any, slices: Iterable[pl.DataFrame], key_id: str, counts: Any
) -> Path:
    """Write one delivery's tokens slice by slice (`pseudonymise_slices`), so only one slice is
    in memory; `counts` (complete once the slices are consumed) go in the file's metadata."""
    return _write(root, outcome, slices, key_id, counts.to_dict)


def _write(
    root: Path, outcome: Any, slices: Iterable[pl.DataFrame], key_id: str, counts
) -> Path:
    """One token file, written the same way however its rows come; `counts()` is read once the
    rows are written."""
    folder = tokens_dir(root) / outcome.department
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / token_file_name(outcome)

    def write(temporary: Path) -> None:
        writer = None
        try:
            for frame in slices:
                # Polars' own string layout (string_view) is handed over without a copy.
                table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
                if writer is None:
                    writer = _token_writer(temporary, table.schema)
                writer.write_table(table.cast(writer.schema))
            meta = _metadata(outcome, key_id, counts())
            writer.add_key_value_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True)})
        finally:
            if writer is not None:
                writer.close()

    write_atomically(target, write)
    return target


def _token_writer(temporary: Path, schema: pa.Schema) -> pq.ParquetWriter:
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


def _metadata(outcome: Any, key_id: str, counts: dict[str, Any]) -> dict[str, Any]:
    return {
        "delivery_id": outcome.delivery_id,
        "department": outcome.department,
        "extract_date": outcome.extract_date.isoformat(),
        "key_id": key_id,
        "pseudonymisation": counts,
    }


def token_file_name(outcome: Any) -> str:
    return f"{outcome.extract_date:%Y%m%d}_{outcome.delivery_id[:16]}.parquet"


def latest_tokens(root: Path) -> dict[Path, dict[str, Any]]:
    """The newest accepted delivery of each department by arrival, with its metadata.

    A department whose newest delivery has no tokens on disk (a damaged secure zone) is left
    out, so the release's freshness check reports it missing instead of using older data.
    """
    latest = {}
    outcomes = latest_by_arrival(DeliveryRegistry(root).all())
    for department, outcome in sorted(outcomes.items()):
        path = tokens_dir(root) / department / token_file_name(outcome)
        if path.exists():
            latest[path] = read_metadata(path)
    return latest
