"""The delivery registry: an append-only record of every delivery the pipeline has processed.

Stored as JSON lines at `<root>/audit/deliveries.jsonl`, one `DeliveryOutcome` per line: counts,
fingerprints and names only. A record is one `write` of one whole line to the file opened for
appending, flushed to disk (fsync) before the caller goes on, under an exclusive `flock` on the
file itself: departments processed in parallel (threads or processes) never lose or interleave
one another's records, and the file is never rewritten, so a crash can lose at most the record
being written. Such a torn last line (no newline) is ignored by readers and cut off by the next
writer: that delivery was never recorded, so the next run processes it again.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from schemas.delivery import DeliveryOutcome
from transforms.files import fsync_path

REGISTRY_FILE = Path("audit") / "deliveries.jsonl"


class DeliveryRegistry:
    def __init__(self, root: Path) -> None:
        self.path = Path(root) / REGISTRY_FILE

    def all(self) -> list[DeliveryOutcome]:
        """Every recorded delivery, oldest first (a torn last line is not a record)."""
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().split(b"\n")[:-1]  # the part after the last newline
        return [DeliveryOutcome.model_validate_json(line) for line in lines if line.strip()]

    def find(self, fingerprint: str) -> DeliveryOutcome | None:
        """The latest record of this file, if any."""
        matches = [o for o in self.all() if o.delivery_id == fingerprint]
        return matches[-1] if matches else None

    def is_processed(self, fingerprint: str, contract_version: str | None = None) -> bool:
        """True once this exact file has been recorded: accepted, or rejected under the same
        contract version (a corrected contract may accept a file it once rejected)."""
        for outcome in self.all():
            if outcome.delivery_id != fingerprint:
                continue
            if outcome.status == "accepted" or contract_version in (
                None, outcome.contract_version
            ):
                return True
        return False

    def record(self, outcome: DeliveryOutcome) -> None:
        """Append one outcome as one line, fsynced; safe against concurrent writers."""
        line = outcome.model_dump_json().encode("utf-8") + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when the descriptor is closed
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                _cut_torn_tail(fd, size)
            written = 0
            while written < len(line):  # os.write may write less than asked
                written += os.write(fd, line[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_path(self.path.parent)


def _cut_torn_tail(fd: int, size: int) -> None:
    """Drop a last line left without its newline by a writer that died mid-write."""
    keep = size
    while keep > 0:
        start = max(0, keep - 65536)
        block = os.pread(fd, keep - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        keep = start
    os.ftruncate(fd, keep)
