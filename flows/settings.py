"""Where a run reads and writes: the data root, the contracts folder, and whether it is a demo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    root: Path
    contracts: Path
    demo: bool = False
