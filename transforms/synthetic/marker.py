"""The generator's signature on the extracts it wrote, so the demo publishes only its own data.

`cohortshare demo` approves its release automatically. That is safe only for data the synthetic
generator made: the marker lists every extract it wrote under `landing/` with its sha256, and
`foreign_files` names anything else there (a real extract copied in, or one edited since).
"""

from __future__ import annotations

import json
from pathlib import Path

from transforms.files import sha256_file, write_text_atomically

MARKER = ".synthetic-council.json"


def _landing_files(landing: Path) -> list[Path]:
    return sorted(p for p in landing.rglob("*") if p.is_file() and p.name != MARKER)


def write_marker(root: Path, extracts: list[Path]) -> Path:
    landing = Path(root) / "landing"
    marker = Path(root) / MARKER  # beside landing/, not in it: it is no delivery
    known = json.loads(marker.read_text()) if marker.exists() else {}
    known.update({p.relative_to(landing).as_posix(): sha256_file(p) for p in extracts})
    return write_text_atomically(marker, json.dumps(known, indent=2, sort_keys=True))


def foreign_files(root: Path) -> list[str]:
    """Files under `landing/` the generator did not write (names relative to landing/)."""
    landing = Path(root) / "landing"
    marker = Path(root) / MARKER  # beside landing/, not in it: it is no delivery
    known = json.loads(marker.read_text()) if marker.exists() else {}
    foreign = []
    for path in _landing_files(landing) if landing.is_dir() else []:
        name = path.relative_to(landing).as_posix()
        if known.get(name) != sha256_file(path):
            foreign.append(name)
    return foreign
