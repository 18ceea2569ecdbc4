"""IG decisions on staged releases: bound to the files reviewed, serialised, crash-safe.

Every decision (approve, reject, withdraw) holds the data root's lock, checks who is deciding
(never whoever ran the build; two different officers when the policy asks for two), and on
approval hashes every staged file against the report and runs every gate again before anything
is published. The decision is written as an intent record first (transforms/release/decisions);
each step after it is idempotent, so re-running the same command after a crash completes it.

Under a Prefect server the flow pauses for the decision with a form (`await_decisions`); without
one, `cohortshare approve|reject|withdraw` does the same through `decide` and `withdraw`.
"""

from __future__ import annotations

import os
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from schemas.errors import DisclosureError, ReleaseChanged, ReleaseError, UserError
from schemas.report import ReleaseReport
from transforms.release import audit, catalogue, decisions, gates, outputs
from transforms.release.report import read_report, report_dir, write_report
from transforms.root_lock import root_lock

DECISIONS = ("approve", "reject")
# A decision waits this long for a run or another decision holding the lock, then refuses.
LOCK_WAIT_SECONDS = 60.0
# Tests only: the name of a step at which this process kills itself (crash tests).
KILL_POINT_ENV = "COHORTSHARE_TEST_KILL_AT"
# The channel of the automatic approval a policy with `require_approval: false` gives.
POLICY_CHANNEL = "disclosure policy (approval not required)"
EVENTS = {
    "record": "release_approved",
    "publish": "release_approved",
    "reject": "release_rejected",
    "withdraw": "release_withdrawn",
}


def _kill_point(name: str) -> None:
    if os.environ.get(KILL_POINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _report(root: Path, release_id: str) -> ReleaseReport:
    if not (report_dir(root, release_id) / "anonymisation_report.json").exists():
        raise ReleaseError(f"no report for release {release_id} under {root / 'reports'}")
    return read_report(root, release_id)


def _same(entry: dict[str, Any], name: str, decision: str) -> bool:
    """Whether a recorded decision is this command's own (the same command re-run): the same
    decision, typed name and OS account."""
    return (
        entry.get("name", "").casefold() == name.strip().casefold()
        and entry.get("os_user") == audit.actor()["os_user"]
        and entry.get("decision")
        == {"approve": "approved", "reject": "rejected", "withdraw": "withdrawn"}[decision]
    )


def decide(
    root: Path,
    release_id: str,
    *,
    name: str,
    role: str,
    decision: str,
    conditions: str | None = None,
    reason: str | None = None,
    demo: bool = False,
    channel: str = "command line",
    lock_wait: float = LOCK_WAIT_SECONDS,
) -> Path | None:
    """Record a decision; publish when it completes the approvals the policy requires.

    Returns the catalogue path when the release was published, else None.
    """
    if decision not in DECISIONS:
        raise ReleaseError(f"decision must be one of {', '.join(DECISIONS)}")
    root = Path(root)
    with root_lock(root, f"{decision} {release_id}", wait_seconds=lock_wait):
        return _decide(root, release_id, name, role, decision, conditions, reason, demo, channel)


def _decide(root, release_id, name, role, decision, conditions, reason, demo, channel):
    report = _report(root, release_id)
    record = decisions.read(root, release_id)
    if record["pending"]:
        # A decision was interrupted: finish it first, whoever runs the next command.
        result = _complete(root, release_id, record)
        if _same(record["decisions"][-1], name, decision):
            return result
        record = decisions.read(root, release_id)
    done = [d for d in record["decisions"] if _same(d, name, decision)]
    if record["status"] in ("approved", "rejected", "withdrawn"):
        if done and record["decisions"][-1] is done[-1]:
            return _catalogue(root, record)
        raise ReleaseError(f"release {release_id} was already decided ({record['status']})")
    if not (name.strip() and role.strip()):
        raise ReleaseError("a decision needs the officer's name and role")
    if decision == "reject" and not (reason or conditions or "").strip():
        raise ReleaseError("a rejection needs a reason (--reason)")
    if done:
        return None  # this officer's approval is already recorded; the release awaits another
    me = {"name": name.strip(), "role": role.strip(), "channel": channel, **audit.actor()}
    if demo:
        if not report.demo:
            raise ReleaseError(
                f"release {release_id} was not built in demo mode: it needs an officer's decision"
            )
    elif channel == POLICY_CHANNEL:
        if report.policy.get("require_approval", True):
            raise ReleaseError(f"the policy of release {release_id} requires an approval")
    else:
        _check_separation(report, record, me)
    if decision == "approve":
        _verify(root, release_id, report, me)
    entry = {
        **me,
        "decision": "approved" if decision == "approve" else "rejected",
        "conditions": conditions or "",
        "reason": reason or "",
        "decided_at": _now(),
        "automatic_demo_approval": demo,
    }
    approvals = [d for d in record["decisions"] if d["decision"] == "approved"]
    required = 1 if demo else max(1, report.approvers_required)
    if decision == "reject":
        action = "reject"
    elif len(approvals) + 1 < required:
        action = "record"
    else:
        action = "publish"
    record["pending"] = {"id": uuid.uuid4().hex, "action": action, "decision": entry}
    decisions.write(root, record)
    _kill_point("after_intent")
    return _complete(root, release_id, record)


def _catalogue(root: Path, record: dict[str, Any]) -> Path | None:
    return root / "published" / catalogue.CATALOGUE_FILE if record["status"] == "approved" else None


def _check_separation(report: ReleaseReport, record: dict[str, Any], me: dict[str, Any]) -> None:
    """Never the builder; with two approvers, two different people on two OS accounts.

    On a Prefect form the OS account is the worker's (the builder's), so only the typed names
    can be compared there; the channel is recorded with the decision.
    """
    on_form = me["channel"].startswith("prefect form")
    builder = report.built_by or {}
    if not on_form and builder.get("os_user") and me["os_user"] == builder["os_user"]:
        raise ReleaseError(
            f"OS user {me['os_user']} ran the build of release {report.release_id}; someone "
            "else must decide on it"
        )
    for earlier in record["decisions"]:
        if earlier["name"].casefold() == me["name"].casefold():
            raise ReleaseError(
                f"{me['name']} has already approved release {report.release_id}; the second "
                "approval must come from a different officer"
            )
        if not on_form and not earlier["channel"].startswith("prefect form"):
            if earlier["os_user"] == me["os_user"]:
                raise ReleaseError(
                    f"OS user {me['os_user']} has already approved release "
                    f"{report.release_id}; the second approval must come from another account"
                )


def _verify(root: Path, release_id: str, report: ReleaseReport, me: dict[str, Any]) -> None:
    """The files are those reviewed, and every gate passes again; else refuse and record it."""
    staged = catalogue.staging_dir(root, release_id)
    listed = [o.model_dump() for o in report.outputs]
    problems = outputs.differences(staged, listed) if listed else ["the report lists no files"]
    if problems:
        audit.record_event(
            root, "release_refused", release_id=release_id, by=me["name"], problems=problems
        )
        raise ReleaseChanged(
            f"release {release_id} differs from its report ({'; '.join(problems)}); not published"
        )
    try:
        gates.recheck(root, release_id, staged)
    except DisclosureError as error:
        audit.record_event(
            root, "release_refused", release_id=release_id, by=me["name"], problems=[str(error)]
        )
        raise


def _event_once(root: Path, event: str, release_id: str, tag: str, **details: Any) -> None:
    """Append an event unless this intent already recorded it (a re-run after a crash)."""
    if any(e.get("intent") == tag and e["event"] == event for e in audit.read_events(root)):
        return
    audit.record_event(root, event, release_id=release_id, intent=tag, **details)


def _complete(root: Path, release_id: str, record: dict[str, Any]) -> Path | None:
    """Carry out the pending intent; every step may already have been done by a killed run."""
    pending = record["pending"]
    action, entry, tag = pending["action"], pending["decision"], pending["id"]
    details = {k: v for k, v in entry.items() if k != "decision"}
    _event_once(root, EVENTS[action], release_id, tag, **details)
    _kill_point("after_decision_event")
    result = None
    if action == "publish":
        result = _publish(root, release_id, record, entry, tag)
        _kill_point("after_publish")
        _event_once(root, "release_published", release_id, tag)
    elif action == "withdraw":
        folder = catalogue.release_dir(root, release_id)
        result = (
            catalogue.withdraw_release(
                root, release_id, entry.get("name", ""), entry.get("reason", ""),
                role=entry.get("role", ""),
            )
            if folder.is_dir()
            else catalogue.rebuild_catalogue(root)
        )
        _kill_point("after_withdraw")
    status = decisions.SECOND if action == "record" else decisions.FINAL[action]
    record["decisions"] = [*record["decisions"], entry]
    if (report_dir(root, release_id) / "anonymisation_report.json").exists():
        report = read_report(root, release_id)
        final = next(d for d in reversed(record["decisions"]) if d["decision"] != "withdrawn")
        write_report(
            root,
            report.model_copy(
                update={
                    "status": status,
                    "decisions": record["decisions"],
                    "approval": final if action != "record" else None,
                }
            ),
        )
    _kill_point("before_close")
    record.update(status=status, pending=None)
    decisions.write(root, record)
    return result


def _publish(root: Path, release_id: str, record, entry, tag) -> Path:
    if catalogue.release_dir(root, release_id).is_dir():
        return catalogue.rebuild_catalogue(root)  # copied before a crash: show it
    report = read_report(root, release_id)
    staged = catalogue.staging_dir(root, release_id)
    problems = outputs.differences(staged, [o.model_dump() for o in report.outputs])
    if problems:
        # Changed between the decision and its completion: cancel it, so the release can still
        # be rejected, and refuse.
        record["pending"] = None
        decisions.write(root, record)
        audit.record_event(root, "release_refused", release_id=release_id, problems=problems)
        raise ReleaseChanged(f"release {release_id} differs from its report; not published")
    approvals = [d for d in record["decisions"] if d["decision"] == "approved"] + [entry]
    approval = {
        **entry,
        "name": " and ".join(d["name"] for d in approvals),
        "role": " and ".join(d["role"] for d in approvals),
        "approvals": approvals,
    }
    return catalogue.publish_release(root, release_id, approval)


def withdraw(
    root: Path,
    release_id: str,
    *,
    name: str,
    role: str,
    reason: str,
    channel: str = "command line",
    lock_wait: float = LOCK_WAIT_SECONDS,
) -> Path:
    """Take a published release out of the catalogue; the audit log keeps the whole story."""
    root = Path(root)
    with root_lock(root, f"withdraw {release_id}", wait_seconds=lock_wait):
        record = decisions.read(root, release_id)
        if record["pending"]:
            result = _complete(root, release_id, record)
            if _same(record["decisions"][-1], name, "withdraw"):
                return result
            record = decisions.read(root, release_id)
        if record["status"] == "withdrawn":
            if _same(record["decisions"][-1], name, "withdraw"):
                return root / "published" / catalogue.CATALOGUE_FILE
            raise ReleaseError(f"release {release_id} was already withdrawn")
        published = (
            record["status"] == "approved" or catalogue.release_dir(root, release_id).is_dir()
        )
        if not published:
            raise ReleaseError(f"release {release_id} is not published")
        if not (name.strip() and role.strip() and reason.strip()):
            raise ReleaseError("a withdrawal needs the officer's name, role and a reason")
        entry = {
            "name": name.strip(),
            "role": role.strip(),
            "channel": channel,
            **audit.actor(),
            "decision": "withdrawn",
            "reason": reason.strip(),
            "decided_at": _now(),
        }
        record["pending"] = {"id": uuid.uuid4().hex, "action": "withdraw", "decision": entry}
        decisions.write(root, record)
        _kill_point("after_intent")
        return _complete(root, release_id, record)


def from_deployment() -> bool:
    """Whether this flow run was started from a deployment on a Prefect server (a scheduled or
    UI-triggered run on a worker), where an officer answers a form rather than a command."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return bool(context and context.flow_run and context.flow_run.deployment_id)


def await_decisions(
    root: Path, release_id: str, required: int, timeout: int, poll_interval: int = 10
) -> str:
    """Pause the running flow for each decision the release needs, with a form in the Prefect
    UI; returns the release's status. A pause that times out leaves the release staged, for a
    decision later from the command line."""
    from prefect import get_run_logger, pause_flow_run
    from prefect.context import FlowRunContext
    from prefect.exceptions import FlowPauseTimeout
    from prefect.input import RunInput

    class DecisionForm(RunInput):
        name: str
        role: str
        decision: Literal["approve", "reject"]
        conditions_or_reason: str = ""

    logger = get_run_logger()
    run = FlowRunContext.get().flow_run
    status = decisions.read(root, release_id)["status"]
    for number in range(1, 3 * required + 1):
        form = DecisionForm.with_initial_data(
            description=f"Release {release_id}: read the anonymisation report under "
            f"reports/{release_id}/, then approve (with any conditions) or reject (with a "
            f"reason). Approvals recorded so far: {number - 1} of {required}.",
            decision="approve",
        )
        try:
            answer = pause_flow_run(
                wait_for_input=form,
                timeout=timeout,
                poll_interval=poll_interval,
                key=f"decision-{number}",
            )
        except FlowPauseTimeout:
            audit.record_event(
                root, "decision_wait_timed_out", release_id=release_id, waited_seconds=timeout
            )
            logger.info("no decision within %d s; release %s stays staged", timeout, release_id)
            return decisions.read(root, release_id)["status"]
        try:
            decide(
                root,
                release_id,
                name=answer.name,
                role=answer.role,
                decision=answer.decision,
                conditions=answer.conditions_or_reason if answer.decision == "approve" else None,
                reason=answer.conditions_or_reason if answer.decision == "reject" else None,
                channel=f"prefect form (flow run {run.id})",
            )
        except UserError as error:
            logger.error("%s: %s", type(error).__name__, error)
        status = decisions.read(root, release_id)["status"]
        if status in ("approved", "rejected"):
            break
    logger.info("release %s: %s", release_id, status)
    return status
