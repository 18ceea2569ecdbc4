"""`cohortshare` as a user meets it: one-line errors, distinct exit codes, no traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def cohortshare(*args: str, cwd: Path = REPO, env: dict | None = None):
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        timeout=120,
    )


def test_help_lists_every_command():
    result = cohortshare("--help")
    assert result.returncode == 0
    for command in ("generate", "run", "demo", "approve", "withdraw", "query", "deliveries",
                    "contracts", "key", "anonymise"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("args", "error", "code"),
    [
        (["query"], "ReleaseError: no catalogue", 8),
        (
            [
                "approve",
                "20990101T000000Z-x",
                "--name",
                "A",
                "--role",
                "B",
                "--decision",
                "approve",
            ],
            "ReleaseError: no report for release",
            8,
        ),
        (["generate", "--residents", "0"], "UserError: --residents must be at least 1", 2),
    ],
)
def test_user_errors_are_one_line_with_their_own_exit_code(tmp_path, args, error, code):
    result = cohortshare(*args, "--root", str(tmp_path))
    assert result.returncode == code
    assert result.stderr.startswith(error)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_query_is_a_user_error_not_a_traceback(tmp_path):
    import polars as pl

    from transforms.release import catalogue

    catalogue.stage_release(
        tmp_path, "r1", {"cohort_x": pl.DataFrame({"a": ["x"], "people": [10]})}, {}
    )
    catalogue.publish_release(tmp_path, "r1", {"decision": "approved"})
    ok = cohortshare("query", "SELECT people FROM cohort_x", "--root", str(tmp_path))
    assert ok.returncode == 0 and "10" in ok.stdout
    bad = cohortshare("query", "SELECT nope FROM cohort_x", "--root", str(tmp_path))
    assert bad.returncode == 8 and bad.stderr.startswith("ReleaseError: query failed")
    assert "Traceback" not in bad.stderr
