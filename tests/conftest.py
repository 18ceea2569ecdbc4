"""Test-wide set-up: a private Prefect home and one Prefect test server for the whole session.

Prefect and GX read their settings at import, so the environment is set before anything
imports them. The harness starts lazily: only tests that use `prefect_harness` pay for it.
"""

import os
import tempfile

_PREFECT_HOME = tempfile.mkdtemp(prefix="cohortshare-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def demo_home(tmp_path):
    """An empty HOME so demo keys and user config land in a throwaway folder."""
    from tests.home import private_home

    with private_home(tmp_path / "home") as home:
        yield home


@pytest.fixture
def solver_off(monkeypatch):
    """`move(offset)` makes every bound the audits' HiGHS model returns `offset` inwards (a
    maximum lower, a minimum higher), as its tolerances may: 8e-5 was seen on a 10M council."""
    from transforms.release.differencing import _System

    solved = _System.bound

    def move(offset: float) -> None:
        def a_little_off(self, rows, maximise, weights=None):
            value = solved(self, rows, maximise, weights)
            return value - offset if maximise else value + offset

        monkeypatch.setattr(_System, "bound", a_little_off)

    return move


@pytest.fixture
def duckdb_groups_shuffled(monkeypatch):
    """`shuffle(seed)` makes the audits' recount return each table's groups in a shuffled
    order, as DuckDB's threads may: for tests that the audits number cells by value."""
    from transforms.release.differencing import _Recount

    cells = _Recount.cells

    def shuffle(seed: int) -> None:
        monkeypatch.setattr(
            _Recount, "cells",
            lambda self, *args: cells(self, *args).sample(fraction=1.0, shuffle=True, seed=seed),
        )  # fmt: skip

    return shuffle
