"""A private HOME for a test: demo keys and user config land in a throwaway folder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def private_home(home: Path) -> Iterator[Path]:
    """HOME and XDG_CONFIG_HOME in `home`, and no key from the environment, while inside."""
    home.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("XDG_CONFIG_HOME", str(home / ".config"))
        mp.delenv("COHORTSHARE_KEY", raising=False)
        yield home


def home_beside(root: Path):
    """A private HOME beside a council's data root, so its demo key is made once and found
    again by every run on that council."""
    return private_home(root.with_name(root.name + "-home"))
