"""An IG officer's decision on a staged release: recorded, and on approval, published."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from schemas.errors import ReleaseError
from transforms.release import audit, catalogue
from transforms.release.report import read_report, report_dir, write_report

DECISIONS = ("approve", "reject")


def decide(
    root: Path,
    release_id: str,
    *,
    name: str,
    role: str,
    decision: str,
    conditions: str | None = None,
    demo: bool = False,
) -> Path | None:
    """Record the decision in the report and the audit log; publish when approved.

    Returns the catalogue path when the release was published, else None.
    """
    if decision not in DECISIONS:
        raise ReleaseError(f"decision must be one of {', '.join(DECISIONS)}")
    if not (report_dir(root, release_id) / "anonymisation_report.json").exists():
        raise ReleaseError(f"no report for release {release_id} under {root / 'reports'}")
    report = read_report(root, release_id)
    if report.approval is not None:
        raise ReleaseError(
            f"release {release_id} was already decided ({report.approval['decision']})"
        )
    if name.strip() == "" or role.strip() == "":
        raise ReleaseError("a decision needs the officer's name and role")
    approval = {
        "decision": "approved" if decision == "approve" else "rejected",
        "name": name,
        "role": role,
        "conditions": conditions or "",
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "automatic_demo_approval": demo,
    }
    audit.record_event(
        root,
        f"release_{approval['decision']}",
        release_id=release_id,
        **{k: v for k, v in approval.items() if k != "decision"},
    )
    published = None
    if decision == "approve":
        published = catalogue.publish_release(root, release_id, approval)
        audit.record_event(root, "release_published", release_id=release_id)
    write_report(
        root, report.model_copy(update={"approval": approval, "status": approval["decision"]})
    )
    return published


def withdraw(root: Path, release_id: str, *, name: str, role: str, reason: str) -> Path:
    """Take a published release out of the catalogue; the audit log keeps the whole story."""
    if not (name.strip() and role.strip() and reason.strip()):
        raise ReleaseError("a withdrawal needs the officer's name, role and a reason")
    catalogue_path = catalogue.withdraw_release(root, release_id)
    audit.record_event(
        root, "release_withdrawn", release_id=release_id, name=name, role=role, reason=reason
    )
    if (report_dir(root, release_id) / "anonymisation_report.json").exists():
        report = read_report(root, release_id)
        write_report(root, report.model_copy(update={"status": "withdrawn"}))
    return catalogue_path
