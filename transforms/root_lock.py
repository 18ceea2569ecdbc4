"""The one lock on a data root, held by every operation that changes deliveries or releases.

Runs, approvals, rejections, withdrawals and key rotation each take it, so two of them never
interleave their writes (a registry checked then written by two runs, two decisions swapping
the catalogue at once). It is an advisory `flock` on `<root>/.lock`: the kernel releases it when
the holder exits, however it exits, so a killed process never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from schemas.errors import BusyError

LOCK_FILE = ".lock"
POLL_SECONDS = 0.2


@contextmanager
def root_lock(root: Path, operation: str, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold the data root's lock for `operation`, waiting up to `wait_seconds` for it.

    Raises BusyError naming the operation that holds it when the wait runs out. The lock is
    re-entrant within one process only by not nesting: callers take it once, at the top.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another"
                    raise BusyError(
                        f"data root {root} is busy ({holder} operation holds its lock); "
                        f"{operation} not started: try again when it has finished"
                    ) from None
                time.sleep(POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{operation} (pid {os.getpid()})".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock
