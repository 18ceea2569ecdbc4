"""The audit log: one JSON line per event, hash-chained, appended and flushed before we go on.

It records who did what to which release or delivery, with counts and key ids only, so an IG
officer can reconstruct any release's history; it never holds an identifier or a cell value.

Each event carries `prev`, the sha256 of the previous event's line, and `hash`, the sha256 of
its own content, so an edited, inserted or deleted line breaks the chain (`verify`). A small
`audit.head` file holds the count and hash of the last event written, so cutting lines off the
end is detected too. The chain makes tampering evident, not impossible: someone who can write
the folder can rebuild the whole chain, which is why the folder is restricted and its head can
be copied elsewhere (`cohortshare audit verify` prints it).
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.jsonl"
HEAD_FILE = "audit.head"
GENESIS = "0" * 64


def actor() -> dict[str, Any]:
    """Who is running this process, as the operating system tells it (recorded with every
    action beside any typed name). `os_user` is the login name (getpass: LOGNAME/USER, then
    the password database); `uid` is the numeric user id, which the environment cannot change."""
    return {"os_user": getpass.getuser(), "uid": os.getuid(), "host": socket.gethostname()}


def _path(root: Path) -> Path:
    return root / "audit" / AUDIT_FILE


def _digest(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _last_hash(log) -> tuple[str, int]:
    log.seek(0)
    last, count = GENESIS, 0
    for line in log:
        if line.strip():
            count += 1
            last = json.loads(line).get("hash", GENESIS)
    return last, count


def record_event(root: Path, event: str, **details: Any) -> dict[str, Any]:
    path = _path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as log:
        # One appender at a time, so two processes never chain onto the same previous event.
        fcntl.flock(log.fileno(), fcntl.LOCK_EX)
        prev, count = _last_hash(log)
        entry = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "event": event,
            **actor(),
            **details,
            "prev": prev,
        }
        entry = json.loads(json.dumps(entry, default=str))
        entry["hash"] = _digest(entry)
        log.seek(0, os.SEEK_END)
        log.write(json.dumps(entry, sort_keys=True) + "\n")
        log.flush()
        os.fsync(log.fileno())
        _write_head(root, count + 1, entry["hash"])
    return entry


def _write_head(root: Path, count: int, last: str) -> None:
    head = root / "audit" / HEAD_FILE
    tmp = head.with_name(f".{HEAD_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"events": count, "last_hash": last}))
    os.replace(tmp, head)


def read_events(root: Path) -> list[dict[str, Any]]:
    path = _path(root)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@dataclass(frozen=True)
class Verification:
    events: int
    problems: list[str]
    last_hash: str

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(root: Path) -> Verification:
    """Walk the chain; report every line whose content or link does not match (by line number)."""
    path = _path(root)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    problems: list[str] = []
    prev, hashes = GENESIS, []
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"line {number}: not a JSON event")
            prev = None
            continue
        if entry.get("hash") != _digest(entry):
            problems.append(f"line {number}: content does not match its hash (edited)")
        if prev is not None and entry.get("prev") != prev:
            problems.append(
                f"line {number}: does not follow the line before (line missing, inserted or edited)"
            )
        prev = entry.get("hash")
        hashes.append(prev)
    head_path = root / "audit" / HEAD_FILE
    if head_path.exists():
        head = json.loads(head_path.read_text())
        count = head["events"]
        # The head is written just after its event, so a crash can leave it one event behind.
        if count > len(hashes):
            problems.append(
                f"the log ends at line {len(hashes)} but {count} events were written "
                "(lines removed from the end)"
            )
        elif count and hashes[count - 1] != head["last_hash"]:
            problems.append(f"line {count}: differs from the event recorded as written there")
    elif len(lines) > 1:
        # A crash between the first event and its head can leave one line with no head.
        problems.append("the head record is missing")
    return Verification(len(lines), problems, hashes[-1] if hashes else GENESIS)
