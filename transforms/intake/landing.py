"""What is waiting in `landing/`: the deliveries to process, and everything else, named.

A landing zone is a shared folder that people and systems drop files into, so it holds more
than extracts: folders of departments without a contract, notes, spreadsheets in the wrong
format, links, pipes, a folder someone called `extract.csv`. Each such thing is listed with the
reason it is not ingested (its name escaped), so a run never ignores anything silently; and
nothing that is not a regular file inside `landing/` ever reaches a reader, which could hang on
a named pipe or follow a link out of the zone.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from schemas.contract import DepartmentContract
from transforms.intake.names import printable
from transforms.intake.source import file_kind

LANDING = "landing"


@dataclass(frozen=True)
class NotIngested:
    """One file or folder in `landing/` that the run did not read, and why."""

    path: str  # relative to landing/, escaped
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class Landing:
    deliveries: list[tuple[str, Path]]  # (department, path), in department then name order
    not_ingested: list[NotIngested]


def _why_not(path: Path, landing: Path, pattern: str) -> str | None:
    """Why `path` (an entry of a department's folder) cannot be a delivery; None if it can."""
    try:
        info = path.lstat()
    except OSError as exc:
        return f"cannot be examined ({type(exc).__name__})"
    if stat.S_ISLNK(info.st_mode):
        try:
            target = path.resolve(strict=True)
        except FileNotFoundError:
            return "a link to a file that does not exist"
        except (OSError, RuntimeError):
            return "a link that cannot be followed (a loop?)"
        if not target.is_relative_to(landing):
            return "a link to a file outside landing/"
        info = target.stat()
    if stat.S_ISDIR(info.st_mode):
        return "a directory, not a file"
    if not stat.S_ISREG(info.st_mode):
        return f"{file_kind(info.st_mode)}, not a regular file"
    if not fnmatch.fnmatchcase(path.name, pattern):
        return f"matches no file pattern of the contract ('{pattern}')"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError:
        return "unreadable (permission denied)"
    except OSError as exc:
        return f"unreadable ({type(exc).__name__})"
    os.close(fd)
    return None


def discover_deliveries(root: Path, contracts: dict[str, DepartmentContract]) -> Landing:
    """Every delivery in `<root>/landing/<department>/` matching its contract's file pattern,
    and every other entry of landing/ with the reason it is not ingested."""
    landing = (Path(root) / LANDING).resolve()
    deliveries: list[tuple[str, Path]] = []
    skipped: list[NotIngested] = []
    if not landing.is_dir():
        return Landing(deliveries, skipped)
    for entry in sorted(landing.iterdir(), key=lambda p: p.name):
        shown = printable(entry.name)
        contract = contracts.get(entry.name)
        if entry.is_symlink() or not entry.is_dir():
            skipped.append(NotIngested(shown, "not in a department's folder"))
            continue
        if contract is None:
            skipped.append(NotIngested(f"{shown}/", "no data contract for this folder"))
            continue
        for path in sorted(entry.iterdir(), key=lambda p: p.name):
            reason = _why_not(path, landing, contract.file_pattern)
            if reason is None:
                deliveries.append((entry.name, path))
            else:
                skipped.append(NotIngested(f"{shown}/{printable(path.name)}", reason))
    return Landing(deliveries, skipped)
