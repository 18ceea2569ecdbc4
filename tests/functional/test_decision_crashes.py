"""Decisions killed with SIGKILL at any point: re-running the same command completes them, and
nothing in between ever shows a half-published, rejected-yet-published or lost release.

Named points (`COHORTSHARE_TEST_KILL_AT`, read only by flows/approval.py's `_kill_point`) cover
every step boundary; random delays cover the inside of steps (copying files, swapping the
catalogue). COHORTSHARE_CRASH_ROUNDS raises the number of random kills (the suite runs a few).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from flows.approval import KILL_POINT_ENV, decide, withdraw
from tests.release.staged import listed_as_published, stage
from transforms.release import audit, catalogue, decisions, outputs

REPO = Path(__file__).resolve().parents[2]
RELEASE = "20260101T000000Z-aaaaaa"
POINTS = ("after_intent", "after_decision_event", "after_publish", "after_withdraw", "before_close")
RANDOM_ROUNDS = int(os.environ.get("COHORTSHARE_CRASH_ROUNDS", "6"))

CHILD = """
import sys
from flows.approval import decide, withdraw
root, release, action, name = sys.argv[1:5]
print("ready", flush=True)
if action == "withdraw":
    withdraw(root, release, name=name, role="IG", reason="test withdrawal")
else:
    decide(root, release, name=name, role="IG", decision=action, reason="test rejection")
print("done", flush=True)
"""
EXPECTED = {"approve": "approved", "reject": "rejected", "withdraw": "withdrawn"}


def _env(user: str, kill_at: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LOGNAME": user, "USER": user}
    env.pop(KILL_POINT_ENV, None)
    if kill_at:
        env[KILL_POINT_ENV] = kill_at
    return env


def _start(root: Path, action: str, user: str = "officer", kill_at: str | None = None):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), RELEASE, action, "Officer " + user],
        cwd=REPO,
        env=_env(user, kill_at),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "ready"
    return child


def _prepare(root: Path, action: str, monkeypatch) -> None:
    stage(root, RELEASE)
    if action == "withdraw":
        monkeypatch.setenv("LOGNAME", "first")
        decide(root, RELEASE, name="First", role="IG", decision="approve")


def _rerun(root: Path, action: str, monkeypatch) -> None:
    """The same command as the killed one, run to the end."""
    monkeypatch.setenv("LOGNAME", "officer")
    monkeypatch.delenv(KILL_POINT_ENV, raising=False)
    if action == "withdraw":
        withdraw(root, RELEASE, name="Officer officer", role="IG", reason="test withdrawal")
    else:
        decide(
            root,
            RELEASE,
            name="Officer officer",
            role="IG",
            decision=action,
            reason="test rejection",
        )


def _state(root: Path) -> str:
    record = decisions.read(root, RELEASE)
    return "intent pending" if record["pending"] else record["status"]


def _catalogue_ids(root: Path) -> list[str]:
    path = root / "published" / catalogue.CATALOGUE_FILE
    if not path.exists():
        return []
    con = duckdb.connect(str(path), read_only=True)
    try:
        return listed_as_published(con)
    finally:
        con.close()


def assert_never_half_done(root: Path) -> None:
    """What any reader may see at any moment, crashed or not."""
    folder = catalogue.release_dir(root, RELEASE)
    record = decisions.read(root, RELEASE)
    if folder.is_dir():
        # Whole, or not there: every staged table present with the reviewed checksum.
        report = json.loads((root / "reports" / RELEASE / "anonymisation_report.json").read_text())
        published = {o["path"]: o["sha256"] for o in outputs.describe(folder)}
        for listed in report["outputs"]:
            assert published[listed["path"]] == listed["sha256"]
        assert record["status"] != "rejected"
    if RELEASE in _catalogue_ids(root):
        assert folder.is_dir()  # the catalogue never points at files that are gone
        assert record["status"] in ("approved", "awaiting approval")
    assert audit.verify(root).ok


def assert_completed(root: Path, action: str) -> None:
    record = decisions.read(root, RELEASE)
    assert record["pending"] is None and record["status"] == EXPECTED[action]
    assert catalogue.release_dir(root, RELEASE).is_dir() == (action == "approve")
    assert (RELEASE in _catalogue_ids(root)) == (action == "approve")
    kinds = [e["event"] for e in audit.read_events(root) if e.get("release_id") == RELEASE]
    assert (
        kinds
        == {
            "approve": ["release_approved", "release_published"],
            "reject": ["release_rejected"],
            "withdraw": ["release_approved", "release_published", "release_withdrawn"],
        }[action]
    )
    report = json.loads((root / "reports" / RELEASE / "anonymisation_report.json").read_text())
    assert report["status"] == EXPECTED[action]
    assert audit.verify(root).ok


# Every kill point each action passes through (publishing belongs to approve, moving the files
# out to withdraw), so no combination is generated only to be skipped.
KILLS = [
    (action, point)
    for action in ("approve", "reject", "withdraw")
    for point in POINTS
    if not (point == "after_publish" and action != "approve")
    and not (point == "after_withdraw" and action != "withdraw")
]


@pytest.mark.parametrize(("action", "point"), KILLS)
def test_killed_at_a_step_boundary_the_same_command_completes(tmp_path, monkeypatch, action, point):
    _prepare(tmp_path, action, monkeypatch)
    child = _start(tmp_path, action, kill_at=point)
    assert child.wait(timeout=120) == -signal.SIGKILL
    assert _state(tmp_path) == "intent pending"
    assert_never_half_done(tmp_path)
    _rerun(tmp_path, action, monkeypatch)
    assert_completed(tmp_path, action)


def test_killed_after_random_delays_every_round_completes(tmp_path, monkeypatch):
    """Kills land anywhere, including inside the copy and the catalogue swap."""
    rng = random.Random(int(os.environ.get("COHORTSHARE_CRASH_SEED", "9")))
    tally: dict[str, int] = {}
    for number in range(RANDOM_ROUNDS):
        action = ("approve", "reject", "withdraw")[number % 3]
        root = tmp_path / f"round{number}"
        _prepare(root, action, monkeypatch)
        child = _start(root, action)
        time.sleep(rng.uniform(0, 0.6))
        child.send_signal(signal.SIGKILL)
        code = child.wait(timeout=120)
        outcome = "finished" if code == 0 else _state(root)
        tally[f"{action}: {outcome}"] = tally.get(f"{action}: {outcome}", 0) + 1
        assert_never_half_done(root)
        _rerun(root, action, monkeypatch)
        assert_completed(root, action)
    print(f"random kills: {RANDOM_ROUNDS}; state when killed: {json.dumps(tally, sort_keys=True)}")


def test_two_decisions_at_once_never_lose_a_release(tmp_path, monkeypatch):
    """Two officers approve two releases at the same moment: both end in the catalogue."""
    other = "20260102T000000Z-bbbbbb"
    stage(tmp_path, RELEASE)
    stage(tmp_path, other)
    first = _start(tmp_path, "approve", user="one")
    second = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), other, "approve", "Officer two"],
        cwd=REPO,
        env=_env("two"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert first.wait(timeout=120) == 0, first.stderr.read()
    assert second.wait(timeout=120) == 0, second.stderr.read()
    assert sorted(_catalogue_ids(tmp_path)) == [RELEASE, other]
    assert audit.verify(tmp_path).ok


def test_an_approval_and_a_rejection_at_once_decide_once(tmp_path):
    stage(tmp_path, RELEASE)
    approving = _start(tmp_path, "approve", user="one")
    rejecting = _start(tmp_path, "reject", user="two")
    codes = sorted([approving.wait(timeout=120), rejecting.wait(timeout=120)])
    errors = approving.stderr.read() + rejecting.stderr.read()
    assert codes == [0, 1] and "ReleaseError: release" in errors and "already decided" in errors
    status = decisions.read(tmp_path, RELEASE)["status"]
    assert (RELEASE in _catalogue_ids(tmp_path)) == (status == "approved")
    assert catalogue.release_dir(tmp_path, RELEASE).is_dir() == (status == "approved")
    assert audit.verify(tmp_path).ok
