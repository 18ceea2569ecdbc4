"""Files as the pipeline writes them: whole or not at all, and Parquet with our metadata.

Every file the project writes goes through `write_atomically`: it is filled under a temporary
name unique to this write, in the target's own folder (a rename is atomic only within one file
system), flushed to disk, renamed over the target, and the folder is flushed so the rename
itself survives a power cut. A reader sees the old file or the new one, never half of either,
and two writers of the same file (two runs, two threads) never write into each other's
temporary file: the last rename wins, whole. Temporary names start with `.` and end in `.tmp`,
which no contract's file pattern, glob of ours or analyst's `*.parquet` matches.

Every Parquet file we write (secure tokens, staged and published cohort tables) carries its ids
(delivery, release, key id, contract versions) as JSON under the Parquet key `cohortshare`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

METADATA_KEY = b"cohortshare"
TEMPORARY_SUFFIX = ".tmp"


def sha256_file(path: Path) -> str:
    """The file's full sha256, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _new_temporary(target: Path, mode: int) -> Path:
    """Create an empty file beside `target` under a name no other write is using (O_EXCL)."""
    while True:
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}{TEMPORARY_SUFFIX}")
        try:
            # `mode` is filtered by the umask, as for any new file (keys ask for 0600).
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
            return temporary
        except FileExistsError:  # pragma: no cover - 64 random bits
            continue


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to disk."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if Path(path).is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_temporaries(target: Path) -> None:
    """Remove `target`'s temporary files left by writers that were killed. Only for a caller
    that holds the lock every writer of `target` takes: otherwise one may still be writing."""
    for stale in Path(target).parent.glob(f".{Path(target).name}.*{TEMPORARY_SUFFIX}"):
        stale.unlink(missing_ok=True)


@contextmanager
def atomic_file(target: Path, *, mode: int = 0o666) -> Iterator[Path]:
    """The temporary file to fill for `target`: renamed over it (after fsync) when the block
    ends, removed if the block raises, leaving an existing `target` as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _new_temporary(target, mode)
    try:
        yield temporary
        fsync_path(temporary)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_path(target.parent)


def write_atomically(target: Path, write: Callable[[Path], None], *, mode: int = 0o666) -> Path:
    """Write `target` whole or not at all: `write(temporary)` fills a fresh temporary file
    beside it (it may open the path itself, as Parquet and Excel writers do), which is then
    fsynced, renamed over `target`, and the folder fsynced (`atomic_file`)."""
    with atomic_file(target, mode=mode) as temporary:
        write(temporary)
    return Path(target)


def write_bytes_atomically(target: Path, data: bytes, *, mode: int = 0o666) -> Path:
    return write_atomically(target, lambda temporary: temporary.write_bytes(data), mode=mode)


def write_text_atomically(
    target: Path, text: str, *, encoding: str = "utf-8", mode: int = 0o666
) -> Path:
    return write_bytes_atomically(target, text.encode(encoding), mode=mode)


def write_parquet(
    frame: pl.DataFrame, target: Path, metadata: dict[str, Any] | None = None
) -> None:
    arrow = frame.to_arrow()
    if metadata is not None:
        encoded = json.dumps(metadata, sort_keys=True, default=str).encode()
        arrow = arrow.replace_schema_metadata({METADATA_KEY: encoded})
    write_atomically(target, lambda temporary: pq.write_table(arrow, temporary))


def read_metadata(path: Path) -> dict[str, Any]:
    raw = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in raw:  # written after the rows, by a writer of slices
        raw = pq.read_metadata(path).metadata or {}
    return json.loads(raw.get(METADATA_KEY, b"{}"))
