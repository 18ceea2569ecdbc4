"""What the IG officer reviews is what gets published: staged files sealed by their sha256.

Staging makes every file read-only and lists each one (name, sha256, bytes) in the report; at
approval every file is hashed again and the release is refused if anything was added, removed
or changed. Read-only modes stop accidents; the checksums stop everything else (root ignores
modes).
"""

from __future__ import annotations

import stat
from pathlib import Path

from transforms.files import sha256_file

READ_ONLY_FILE = stat.S_IRUSR | stat.S_IRGRP
READ_ONLY_DIR = stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP


def describe(folder: Path) -> list[dict]:
    """Every file of a staged release: path (relative to the folder), full sha256 and size."""
    return [
        {
            "path": p.relative_to(folder).as_posix(),
            "sha256": sha256_file(p),
            "bytes": p.stat().st_size,
        }
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]


def seal(folder: Path) -> list[dict]:
    """Make a staged release read-only and return its file list for the report."""
    outputs = describe(folder)
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(READ_ONLY_FILE)
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_dir():
            path.chmod(READ_ONLY_DIR)
    folder.chmod(READ_ONLY_DIR)
    return outputs


def differences(folder: Path, outputs: list[dict]) -> list[str]:
    """How the files under `folder` differ from the list the report holds (names only)."""
    if not folder.is_dir():
        return [f"{folder.name}: the staged folder is missing"]
    found = {o["path"]: o for o in describe(folder)}
    expected = {o["path"]: o for o in outputs}
    problems = [f"{name}: missing" for name in sorted(expected.keys() - found.keys())]
    problems += [f"{name}: not in the report" for name in sorted(found.keys() - expected.keys())]
    problems += [
        f"{name}: content changed (sha256 differs)"
        for name in sorted(expected.keys() & found.keys())
        if expected[name]["sha256"] != found[name]["sha256"]
    ]
    return problems
