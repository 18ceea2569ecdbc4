"""IG decisions as officers make them: bound to the reviewed files, never by the builder, two
people when the policy says so, a reason for every rejection and withdrawal, and an audit log
that shows any edit."""

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from flows.approval import decide, withdraw
from schemas.errors import DisclosureError, ReleaseChanged, ReleaseError
from tests.release.staged import listed_as_published, stage
from transforms.release import audit, catalogue, decisions, gates

REPO = Path(__file__).resolve().parents[2]
RELEASE = "20260101T000000Z-aaaaaa"


def cohortshare(root: Path, *args: str, user: str = "officer1"):
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args, "--root", str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "LOGNAME": user, "USER": user},
        timeout=120,
    )


def cli(root: Path, capsys, *args: str) -> tuple[int, str, str]:
    """The command line in this process (a subprocess costs seconds on a loaded machine)."""
    from flows.cli import main

    capsys.readouterr()
    code = main([*args, "--root", str(root)])
    out = capsys.readouterr()
    return code, out.out, out.err


def as_user(monkeypatch, user: str) -> None:
    monkeypatch.setenv("LOGNAME", user)
    monkeypatch.setenv("USER", user)


def approve(root, name, **extra):
    return decide(root, RELEASE, name=name, role="IG officer", decision="approve", **extra)


def published_ids(root: Path) -> list[str]:
    con = duckdb.connect(str(root / "published" / catalogue.CATALOGUE_FILE), read_only=True)
    try:
        return listed_as_published(con)
    finally:
        con.close()


def _tamper(folder: Path, people: int) -> None:
    """What the issue did: one cell of a staged file changed after its report was written."""
    path = folder / "cohort_by_area.parquet"
    folder.chmod(0o755)
    path.chmod(0o644)
    frame = pl.read_parquet(path)
    frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(people)
        .otherwise(pl.col("people"))
        .alias("people")
    ).write_parquet(path)


def test_staged_files_are_read_only_and_listed_with_full_checksums(tmp_path):
    folder = stage(tmp_path, RELEASE)
    report = json.loads((tmp_path / "reports" / RELEASE / "anonymisation_report.json").read_text())
    [listed] = report["outputs"]
    assert listed["path"] == "cohort_by_area.parquet" and len(listed["sha256"]) == 64
    assert listed["bytes"] == (folder / "cohort_by_area.parquet").stat().st_size
    for path in (folder, folder / "cohort_by_area.parquet"):
        assert path.stat().st_mode & 0o222 == 0, path.name


def test_a_cell_changed_after_staging_is_refused_with_its_own_exit_code(tmp_path):
    folder = stage(tmp_path, RELEASE)
    _tamper(folder, 13)
    result = cohortshare(
        tmp_path, "approve", RELEASE, "--name", "A", "--role", "IG", "--decision", "approve"
    )
    assert result.returncode == ReleaseChanged.exit_code == 15
    assert (
        result.stderr.startswith("ReleaseChanged: release") and "content changed" in result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1
    assert not catalogue.release_dir(tmp_path, RELEASE).exists()
    [refused] = [e for e in audit.read_events(tmp_path) if e["event"] == "release_refused"]
    assert refused["os_user"] == "officer1"
    assert decisions.read(tmp_path, RELEASE)["status"] == decisions.STAGED


def test_an_added_file_is_refused(tmp_path, monkeypatch):
    folder = stage(tmp_path, RELEASE)
    folder.chmod(0o755)
    (folder / "cohort_extra.parquet").write_bytes(b"PAR1")
    as_user(monkeypatch, "officer1")
    with pytest.raises(ReleaseChanged, match="cohort_extra.parquet: not in the report"):
        approve(tmp_path, "A")


def test_gates_run_again_at_approval(tmp_path, monkeypatch):
    """The saved population now says area b has 9 people: the re-run audit, recounting the
    published cells from it, refuses."""
    stage(tmp_path, RELEASE)
    saved = gates.gate_inputs_dir(tmp_path, RELEASE) / "population.parquet"
    areas = ["a"] * 12 + ["b"] * 9
    replaced = pl.DataFrame({"person_key": [str(i) for i in range(21)], "lsoa": areas})
    saved.unlink()
    replaced.write_parquet(saved)
    as_user(monkeypatch, "officer1")
    with pytest.raises(DisclosureError, match="disagree with the audit's own count"):
        approve(tmp_path, "A")
    assert not catalogue.release_dir(tmp_path, RELEASE).exists()
    assert [e["event"] for e in audit.read_events(tmp_path)] == ["release_refused"]


def test_whoever_ran_the_build_cannot_approve_it(tmp_path, monkeypatch):
    stage(tmp_path, RELEASE, builder="builder")
    as_user(monkeypatch, "builder")
    with pytest.raises(ReleaseError, match="OS user builder ran the build"):
        approve(tmp_path, "Someone Else")


def test_every_action_records_os_user_and_host(tmp_path, monkeypatch):
    stage(tmp_path, RELEASE)
    as_user(monkeypatch, "officer1")
    approve(tmp_path, "A. Officer")
    events = [e for e in audit.read_events(tmp_path) if e.get("release_id") == RELEASE]
    assert [e["event"] for e in events] == ["release_approved", "release_published"]
    for event in events:
        assert event["os_user"] == "officer1" and event["host"] and "uid" in event
    assert published_ids(tmp_path) == [RELEASE]


def test_two_approvers_must_be_different_people_on_different_accounts(tmp_path, monkeypatch):
    stage(tmp_path, RELEASE, approvers=2)
    as_user(monkeypatch, "alice")
    assert approve(tmp_path, "Alice") is None
    assert decisions.read(tmp_path, RELEASE)["status"] == decisions.SECOND
    assert not catalogue.release_dir(tmp_path, RELEASE).exists()
    assert approve(tmp_path, "Alice") is None  # the same command again: nothing new
    with pytest.raises(ReleaseError, match="another account"):
        approve(tmp_path, "Bob")
    as_user(monkeypatch, "bob")
    with pytest.raises(ReleaseError, match="different officer"):
        approve(tmp_path, "alice")
    assert approve(tmp_path, "Bob") is not None
    assert published_ids(tmp_path) == [RELEASE]
    report = json.loads((tmp_path / "reports" / RELEASE / "anonymisation_report.json").read_text())
    assert [d["os_user"] for d in report["decisions"]] == ["alice", "bob"]
    assert report["status"] == "approved"


def test_one_rejection_stops_a_two_person_release(tmp_path, monkeypatch):
    stage(tmp_path, RELEASE, approvers=2)
    as_user(monkeypatch, "alice")
    approve(tmp_path, "Alice")
    as_user(monkeypatch, "bob")
    decide(tmp_path, RELEASE, name="Bob", role="IG", decision="reject", reason="wrong policy")
    assert decisions.read(tmp_path, RELEASE)["status"] == "rejected"
    assert (
        not (tmp_path / "published").exists()
        or not catalogue.release_dir(tmp_path, RELEASE).exists()
    )


def test_a_rejection_needs_a_reason_and_publishes_nothing(tmp_path, capsys, monkeypatch):
    stage(tmp_path, RELEASE)
    as_user(monkeypatch, "officer1")
    args = ("approve", RELEASE, "--name", "A", "--role", "IG", "--decision", "reject")
    code, _, err = cli(tmp_path, capsys, *args)
    assert code == 8 and "needs a reason" in err
    code, out, err = cli(tmp_path, capsys, *args, "--reason", "not needed")
    assert code == 0, err
    assert "rejected; nothing was published" in out
    assert not catalogue.release_dir(tmp_path, RELEASE).exists()
    code, _, _ = cli(tmp_path, capsys, *args, "--reason", "not needed")
    assert code == 0  # the same command re-run is harmless
    code, _, err = cli(
        tmp_path, capsys, "approve", RELEASE, "--name", "B", "--role", "IG", "--decision", "approve"
    )
    assert code == 8 and "already decided (rejected)" in err
    assert not catalogue.release_dir(tmp_path, RELEASE).exists()
    report = json.loads((tmp_path / "reports" / RELEASE / "anonymisation_report.json").read_text())
    assert report["status"] == "rejected" and report["approval"]["reason"] == "not needed"


def test_a_withdrawal_needs_a_reason_and_keeps_the_story(tmp_path, monkeypatch):
    stage(tmp_path, RELEASE)
    as_user(monkeypatch, "officer1")
    approve(tmp_path, "A")
    with pytest.raises(ReleaseError, match="a reason"):
        withdraw(tmp_path, RELEASE, name="A", role="IG", reason=" ")
    withdraw(tmp_path, RELEASE, name="A", role="IG", reason="wrong policy")
    withdraw(tmp_path, RELEASE, name="A", role="IG", reason="wrong policy")  # re-run: no-op
    assert published_ids(tmp_path) == []
    kinds = [e["event"] for e in audit.read_events(tmp_path)]
    assert kinds == ["release_approved", "release_published", "release_withdrawn"]
    assert decisions.read(tmp_path, RELEASE)["status"] == "withdrawn"


def test_demo_approval_only_for_demo_releases(tmp_path):
    stage(tmp_path, RELEASE, demo=False)
    with pytest.raises(ReleaseError, match="not built in demo mode"):
        decide(tmp_path, RELEASE, name="automatic", role="demo", decision="approve", demo=True)
    assert not catalogue.release_dir(tmp_path, RELEASE).exists()


def test_audit_verify_detects_an_edited_and_a_deleted_line(tmp_path, monkeypatch, capsys):
    stage(tmp_path, RELEASE)
    as_user(monkeypatch, "officer1")
    approve(tmp_path, "A")
    for n in range(3):
        audit.record_event(tmp_path, "test_event", number=n)
    code, out, _ = cli(tmp_path, capsys, "audit", "verify")
    assert code == 0 and "5 event(s)" in out
    code, out, _ = cli(tmp_path, capsys, "audit", "show", "--release", RELEASE)
    assert "release_published" in out and "os_user=officer1" in out

    log = tmp_path / "audit" / audit.AUDIT_FILE
    original = log.read_text()
    lines = original.splitlines(keepends=True)
    log.write_text(original.replace('"name": "A"', '"name": "B"', 1))
    edited = cohortshare(tmp_path, "audit", "verify")
    assert edited.returncode == 16 and edited.stderr.startswith("AuditLogTampered:")
    assert "line 1: content does not match" in edited.stderr
    assert len(edited.stderr.strip().splitlines()) == 1

    log.write_text("".join(lines[:2] + lines[3:]))
    code, _, err = cli(tmp_path, capsys, "audit", "verify")
    assert code == 16 and "line 3: does not follow" in err

    log.write_text("".join(lines[:-1]))
    code, _, err = cli(tmp_path, capsys, "audit", "verify")
    assert code == 16 and "removed from the end" in err
