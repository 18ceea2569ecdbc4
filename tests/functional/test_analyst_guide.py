"""The README's guide for analysts works as written: every SQL example runs against a demo-sized
catalogue, in DuckDB 2 from Python and in DuckDB 1.5's command-line client, and returns rows;
every Python example runs too."""

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.integration.demo_catalogue import publish_demo
from transforms.release import catalogue

REPO = Path(__file__).resolve().parents[2]
DUCKDB_15 = Path(sys.executable).parent / "duckdb"


def _guide() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## For analysts\n", 1)[1]
    return section.split("\n## ", 1)[0]


def _examples(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _guide(), flags=re.DOTALL)


SQL = _examples("sql")
PYTHON = _examples("python")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder holding `data/published/` as `make demo` leaves it (paths in the guide are
    relative to the project folder)."""
    folder = tmp_path_factory.mktemp("guide")
    publish_demo(folder / "data", "20261121T093000Z-demo01")
    return folder


def test_the_guide_has_examples():
    assert len(SQL) >= 7 and len(PYTHON) >= 2


@pytest.mark.parametrize("sql", SQL, ids=[f"sql{i}" for i in range(len(SQL))])
def test_sql_example_runs_in_duckdb_2_and_duckdb_15(workdir, sql, monkeypatch):
    monkeypatch.chdir(workdir)
    path = workdir / "data" / "published" / catalogue.CATALOGUE_FILE
    reads_files = "read_parquet(" in sql
    if reads_files:
        # Parquet examples run in the analyst's own session, not in the catalogue.
        rows = duckdb.connect().sql(sql).fetchall()
        command = [DUCKDB_15, "-csv", "-c", sql]
    else:
        rows = catalogue.query_catalogue(path, sql).rows()
        command = [DUCKDB_15, "-readonly", "-csv", str(path), "-c", sql]
    assert rows, "example returned no rows on the demo catalogue"
    result = subprocess.run(command, capture_output=True, text=True, cwd=workdir, timeout=60)
    assert result.returncode == 0, result.stderr
    # CSV output: a header line, then the same number of rows as DuckDB 2 returned.
    lines = [line for line in result.stdout.splitlines() if line]
    assert len(lines) == 1 + len(rows)


@pytest.mark.parametrize("code", PYTHON, ids=[f"python{i}" for i in range(len(PYTHON))])
def test_python_example_runs(workdir, code, monkeypatch):
    monkeypatch.chdir(workdir)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    frames = [v for v in namespace.values() if hasattr(v, "height")]
    assert frames and all(frame.height > 0 for frame in frames)
