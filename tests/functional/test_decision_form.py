"""Under a Prefect server the run pauses for the decision with a form; two officers answer it,
or nobody does and the release stays staged. A real (test) Prefect server, resumed through its
API exactly as the UI's form does."""

import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.release.staged import stage
from transforms.release import audit, catalogue, decisions

RELEASE = "20260101T000000Z-aaaaaa"


def _run_in_thread(root: Path, required: int, timeout: int) -> tuple[threading.Thread, dict, str]:
    from prefect import flow

    from flows.approval import await_decisions

    name = f"decision-{uuid.uuid4().hex[:8]}"
    result: dict = {}

    @flow(flow_run_name=name)
    def decision_only() -> str:
        return await_decisions(root, RELEASE, required, timeout, poll_interval=1)

    def target():
        try:
            result["status"] = decision_only()
        except BaseException as error:  # reported by the test
            result["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result, name


def _answer(run_name: str, **answer) -> None:
    """Wait for the run to pause, then resume it with the form's answer."""
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = [r for r in client.read_flow_runs() if r.name == run_name]
            if runs and runs[0].state and runs[0].state.is_paused():
                resume_flow_run(runs[0].id, run_input=answer)
                return
            time.sleep(0.3)
    raise AssertionError("the run never paused for a decision")


def test_a_run_called_directly_does_not_wait_for_a_form(prefect_harness):
    """Only deployment runs (on a worker, where nobody is at a terminal) pause by default."""
    from prefect import flow

    from flows.approval import from_deployment

    @flow
    def probe() -> bool:
        return from_deployment()

    assert probe() is False


def test_two_officers_approve_through_the_form(prefect_harness, tmp_path):
    stage(tmp_path, RELEASE, approvers=2)
    thread, result, name = _run_in_thread(tmp_path, required=2, timeout=60)
    _answer(name, name="Alice", role="IG lead", decision="approve", conditions_or_reason="")
    _answer(name, name="Bob", role="Caldicott Guardian", decision="approve")
    thread.join(timeout=60)
    assert result == {"status": "approved"}
    assert catalogue.release_dir(tmp_path, RELEASE).is_dir()
    record = decisions.read(tmp_path, RELEASE)
    assert [d["name"] for d in record["decisions"]] == ["Alice", "Bob"]
    assert all(d["channel"].startswith("prefect form") for d in record["decisions"])


def test_a_rejection_through_the_form_publishes_nothing(prefect_harness, tmp_path):
    stage(tmp_path, RELEASE)
    thread, result, name = _run_in_thread(tmp_path, required=1, timeout=60)
    _answer(name, name="Alice", role="IG", decision="reject", conditions_or_reason="too coarse")
    thread.join(timeout=60)
    assert result == {"status": "rejected"}
    assert not catalogue.release_dir(tmp_path, RELEASE).exists()
    assert decisions.read(tmp_path, RELEASE)["decisions"][0]["reason"] == "too coarse"


def test_no_answer_within_the_timeout_leaves_the_release_staged(prefect_harness, tmp_path):
    stage(tmp_path, RELEASE)
    thread, result, _ = _run_in_thread(tmp_path, required=1, timeout=2)
    thread.join(timeout=60)
    assert result == {"status": "awaiting approval"}
    assert not catalogue.release_dir(tmp_path, RELEASE).exists()
    assert [e["event"] for e in audit.read_events(tmp_path)] == ["decision_wait_timed_out"]


@pytest.fixture(autouse=True)
def _officer(monkeypatch):
    monkeypatch.setenv("LOGNAME", "prefect-worker")
