"""Which software made a release: package versions and the git commit of the pipeline's code.

An IG officer (or an auditor years later) must be able to say exactly what code produced the
numbers they signed off.
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

# The packages whose behaviour decides what is published, in the order a reader expects.
PACKAGES = (
    "cohortshare",
    "polars",
    "pyarrow",
    "duckdb",
    "numpy",
    "prefect",
    "great-expectations",
    "open-data-contract-standard",
    "pydantic",
    "polars-hash",
    "jinja2",
    "matplotlib",
)
CODE_ROOT = Path(__file__).resolve().parents[2]
NOT_A_CHECKOUT = "not a git checkout"


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def git_commit(folder: Path = CODE_ROOT) -> dict[str, str | bool]:
    """Commit of the code (full hash) and whether files differ from it; a tarball or wheel
    install has no commit, which the report says rather than guessing."""

    def git(*args: str) -> str | None:
        try:
            run = subprocess.run(
                ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return run.stdout.strip() if run.returncode == 0 else None

    commit = git("rev-parse", "--verify", "HEAD")
    if not commit:
        return {"commit": NOT_A_CHECKOUT, "uncommitted_changes": False}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "uncommitted_changes": bool(status)}


def software() -> dict:
    return {"versions": versions(), **git_commit()}
