"""The audit log: one JSON line per event, appended and flushed to disk before we go on.

It records who did what to which release or delivery, with counts and key ids only, so an IG
officer can reconstruct any release's history; it never holds an identifier or a cell value.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.jsonl"


def record_event(root: Path, event: str, **details: Any) -> dict[str, Any]:
    entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "event": event, **details}
    path = root / "audit" / AUDIT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log:
        log.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
        log.flush()
        os.fsync(log.fileno())
    return entry


def read_events(root: Path) -> list[dict[str, Any]]:
    path = root / "audit" / AUDIT_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
