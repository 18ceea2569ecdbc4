"""The delivery registry: an append-only record of every delivery the pipeline has processed.

Stored as JSON lines at `<root>/audit/deliveries.jsonl`, one `DeliveryOutcome` per line: counts,
fingerprints and names only. Each write replaces the whole file atomically (write a temporary
file, fsync, rename) under an exclusive lock, so a crash never leaves a half-written record and
departments processed in parallel never lose one another's records.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from schemas.delivery import DeliveryOutcome

REGISTRY_FILE = Path("audit") / "deliveries.jsonl"


class DeliveryRegistry:
    def __init__(self, root: Path) -> None:
        self.path = Path(root) / REGISTRY_FILE

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with (self.path.parent / ".deliveries.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def all(self) -> list[DeliveryOutcome]:
        """Every recorded delivery, oldest first."""
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
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
        """Append one outcome; atomic and safe against concurrent writers."""
        with self._locked():
            existing = self.path.read_bytes() if self.path.exists() else b""
            if existing and not existing.endswith(b"\n"):
                existing += b"\n"
            line = outcome.model_dump_json().encode("utf-8") + b"\n"
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".deliveries.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(existing + line)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
