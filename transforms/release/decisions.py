"""Each release's decision record: what has been decided, and what is being carried out.

A decision is written here *before* anything it causes (intent first): `pending` names the
action (publish, reject, withdraw) and the decision behind it. Every step after that is
idempotent, and the record is closed (`pending` cleared, `status` set) only when all of them
are done. A process killed at any point therefore leaves either the previous state (no intent
yet) or an intent that the next command on the release completes.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

# staged -> (awaiting second approval) -> published -> withdrawn; staged -> rejected
STAGED = "awaiting approval"
SECOND = "awaiting second approval"
FINAL = {"publish": "approved", "reject": "rejected", "withdraw": "withdrawn"}


def record_path(root: Path, release_id: str) -> Path:
    return root / "audit" / "releases" / f"{release_id}.json"


def read(root: Path, release_id: str) -> dict[str, Any]:
    path = record_path(root, release_id)
    if not path.exists():
        return {"release_id": release_id, "status": STAGED, "decisions": [], "pending": None}
    return json.loads(path.read_text(encoding="utf-8"))


def write(root: Path, record: dict[str, Any]) -> None:
    """Replace the record atomically and durably (unique temporary name, fsync, rename)."""
    path = record_path(root, record["release_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(record, indent=2, sort_keys=True, default=str))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
