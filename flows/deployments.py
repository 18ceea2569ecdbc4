"""The flows that `prefect.yaml` deploys for production: no demo parameters here.

- `ingest-department`, one deployment per department on its contract's schedule: validate and
  pseudonymise that department's new deliveries into secure/. When it leaves every department
  fresh it emits the event `cohortshare.departments.fresh`, which triggers a release build.
- `freshness-check`, daily: for each department whose newest delivery is overdue under its
  contract (frequency + latency) or that never delivered, emits `cohortshare.department.overdue`
  naming the department and the overdue extract's date, then fails, so that the run, its hook's
  log line and any automation on the event or on failed runs alert the operator.
- `release-build`, monthly and on that event: receive anything new, check every department's
  freshness (stale ones are reported, and block the build if the policy says so), link,
  anonymise and stage a release for IG approval. Nothing is built when no input changed.

The demo is its own deployment of `flows/share_cohorts.py:share_cohorts` with its demo
parameters set. Data root and contracts are resolved on the worker (flows/settings.py).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.events import emit_event

from flows.guard import guarded, quiet_user_error_tracebacks
from flows.hooks import report_failure
from flows.runners import task_runner_from_environment
from flows.settings import settings_where_running
from flows.share_cohorts import (
    approve_automatically,
    build_release,
    holding_root_lock,
    landing_files,
    receive_deliveries,
)
from schemas.contract import DepartmentContract, load_contracts
from schemas.errors import ConfigError, NoDataError
from transforms.identity import latest_tokens
from transforms.intake import DeliveryRegistry, assess_freshness, latest_by_arrival

FRESH_EVENT = "cohortshare.departments.fresh"
OVERDUE_EVENT = "cohortshare.department.overdue"
DEPARTMENT_RESOURCE = "cohortshare.department.{}"
DATA_ROOT_RESOURCE = "cohortshare.data-root"
# Deployed runs wait this long for another operation on the data root (a release build, an
# approval) before failing with BusyError.
LOCK_WAIT_SECONDS = 1800.0
# A run still going after this long is failed (and reported by the hook) rather than left
# holding the data root's lock.
RELEASE_BUILD_TIMEOUT_SECONDS = 6 * 3600
INGEST_TIMEOUT_SECONDS = 3 * 3600
TIMEZONE = "Europe/London"
# Ingestion schedule by the contract's delivery frequency (ODCS slaProperties `frequency`), at
# 07:00 London time: prefect.yaml states them and tests/integration/test_deployments.py checks
# they match the contracts.
FREQUENCY_CRON = {
    "daily": "0 7 * * *",
    "weekly": "0 7 * * 1",
    "monthly": "0 7 1 * *",
    "quarterly": "0 7 1 1,4,7,10 *",
}


def ingestion_cron(contract: DepartmentContract) -> str:
    """The cron schedule of a department's ingestion deployment (daily without a frequency)."""
    return FREQUENCY_CRON[contract.frequency or "daily"]


@flow(
    name="release-build",
    log_prints=False,
    timeout_seconds=RELEASE_BUILD_TIMEOUT_SECONDS,
    task_runner=task_runner_from_environment(),
    on_failure=[report_failure],
    on_crashed=[report_failure],
)
@guarded
def release_build(
    root: str | None = None,
    contracts: str | None = None,
    force: bool = False,
    lock_wait_seconds: float = LOCK_WAIT_SECONDS,
) -> str:
    """Stage a release for IG approval from every department's newest delivery.

    `root` defaults to the worker's `COHORTSHARE_ROOT`; returns the release id (the previous one
    when no input changed, unless `force`).
    """
    quiet_user_error_tracebacks()
    settings = settings_where_running(root, contracts)
    release_id, built = build_release(settings, force=force, lock_wait_seconds=lock_wait_seconds)
    if built:
        approve_automatically(settings, release_id, demo_approval=False)
    return release_id


@flow(
    name="ingest-department",
    flow_run_name="ingest {department}",
    log_prints=False,
    timeout_seconds=INGEST_TIMEOUT_SECONDS,
    task_runner=task_runner_from_environment(),
    on_failure=[report_failure],
    on_crashed=[report_failure],
)
@guarded
def ingest_department(
    department: str,
    root: str | None = None,
    contracts: str | None = None,
    lock_wait_seconds: float = LOCK_WAIT_SECONDS,
) -> dict[str, int]:
    """Validate and pseudonymise one department's new deliveries into secure/."""
    quiet_user_error_tracebacks()
    logger = get_run_logger()
    settings = settings_where_running(root, contracts)
    contract_set = load_contracts(settings.contracts)
    if department not in contract_set:
        raise ConfigError(
            f"no contract for department '{department}' in {settings.contracts} "
            f"(contracts: {', '.join(sorted(contract_set))})"
        )
    own = {department: contract_set[department]}
    with holding_root_lock(settings.root, f"ingest {department}", lock_wait_seconds):
        results = receive_deliveries(settings, landing_files(settings.root, own))
        verdicts = department_freshness(settings.root, contract_set)
    counts = {
        "new": sum(r["status"] == "accepted" for r in results),
        "rejected": sum(r["status"] == "rejected" for r in results),
        "already_processed": sum(r["status"].startswith("already") for r in results),
    }
    waiting = [v.department for v in verdicts if v.status != "fresh"]
    if counts["new"] and not waiting:
        logger.info("every department is fresh: emitting %s", FRESH_EVENT)
        emit_event(
            event=FRESH_EVENT,
            resource={"prefect.resource.id": DATA_ROOT_RESOURCE},
            payload={"departments": sorted(contract_set), "after": department},
        )
    elif waiting:
        logger.info("release build waits for: %s", ", ".join(waiting))
    return counts


def department_freshness(root: Path, contract_set: dict[str, DepartmentContract]):
    """Each department's verdict from its newest delivery by arrival that reached the secure
    zone (a delivery accepted but never pseudonymised does not count)."""
    with_tokens = {m["department"] for m in latest_tokens(root).values()}
    latest = {
        d: o
        for d, o in latest_by_arrival(DeliveryRegistry(root).all()).items()
        if d in with_tokens
    }
    return assess_freshness(contract_set, latest, date.today())


@flow(
    name="freshness-check",
    log_prints=False,
    timeout_seconds=600,
    on_failure=[report_failure],
    on_crashed=[report_failure],
)
@guarded
def check_freshness(root: str | None = None, contracts: str | None = None) -> list[str]:
    """Alert on every department whose next extract is overdue, or that never delivered.

    Reads the delivery registry only (names, dates and counts; no row). For each late
    department it emits `cohortshare.department.overdue` (resource
    `cohortshare.department.<department>`, payload: status and dates), then fails with one line
    naming them all. Returns the departments checked when every one is fresh."""
    quiet_user_error_tracebacks()
    logger = get_run_logger()
    settings = settings_where_running(root, contracts)
    contract_set = load_contracts(settings.contracts)
    verdicts = department_freshness(settings.root, contract_set)
    late = [v for v in verdicts if v.status != "fresh"]
    for verdict in late:
        logger.warning("overdue: %s", verdict.lateness())
        emit_event(
            event=OVERDUE_EVENT,
            resource={
                "prefect.resource.id": DEPARTMENT_RESOURCE.format(verdict.department),
                "prefect.resource.name": verdict.department,
            },
            payload={
                "department": verdict.department,
                "status": verdict.status,
                "newest_extract": _iso(verdict.extract_date),
                "overdue_extract": _iso(verdict.overdue_extract()),
                "due_by": _iso(verdict.due_by()),
                "age_days": verdict.age_days,
                "allowed_days": verdict.allowed_days,
                "frequency": verdict.frequency,
            },
        )
    if late:
        raise NoDataError(
            f"{len(late)} of {len(verdicts)} department(s) overdue: "
            + "; ".join(v.lateness() for v in late)
        )
    logger.info("every department is fresh: %s", ", ".join(v.department for v in verdicts))
    return [v.department for v in verdicts]


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


@flow(
    name="demo",
    log_prints=False,
    task_runner=task_runner_from_environment(),
    on_failure=[report_failure],
    on_crashed=[report_failure],
)
@guarded
def demo(residents: int = 20_000, root: str | None = None) -> str:
    """The demo as its own deployment: a synthetic council (made once), a demo key, a release
    approved automatically and labelled so. Never point it at real data."""
    from flows.share_cohorts import share_cohorts
    from transforms.synthetic import generate_council

    quiet_user_error_tracebacks()
    target = Path(root) if root else Path.home() / "cohortshare-demo"
    landing = target / "landing"
    if not landing.is_dir() or not any(landing.rglob("*.*")):
        generate_council(target, residents, 2026, extract_date=date.today())
    contracts = settings_where_running(str(target)).contracts
    return share_cohorts(
        root=str(target), contracts=str(contracts), demo=True, demo_approval=True, force=True
    )
