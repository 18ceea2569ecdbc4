"""The `share_cohorts` flow: wiring only. Every stage is a function in `transforms/`.

Tasks that see identifiable rows (`process_delivery`) keep them inside the task: they take a
path, return counts, and set `persist_result=False` so Prefect never pickles them to disk.

A run holds the data root's lock (transforms/root_lock.py) from receiving deliveries to
recording the staged release, so two runs never check-then-write the delivery registry or the
secure zone at once; the second waits (`lock_wait_seconds`) or stops with `BusyError`.
Departments are received concurrently by the flow's task runner (flows/runners.py); each
department's deliveries in arrival order, with retries on I/O errors, so one unreadable file
never stops the other departments.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from flows.approval import decide
from flows.guard import guarded, quiet_user_error_tracebacks
from flows.hooks import report_failure
from flows.key_source import resolve_key
from flows.runners import task_runner_from_environment
from flows.settings import Settings
from schemas.contract import load_contracts
from schemas.errors import (
    BusyError,
    ConfigError,
    DeliveryRejected,
    KeyCustodyError,
    NoDataError,
    PipelineError,
)
from schemas.policy import load_cohorts, load_policy
from schemas.report import DeliverySummary, ReleaseReport
from transforms.disclosure import anonymise, load_hierarchies, tabulate
from transforms.files import write_parquet
from transforms.identity import (
    build_population,
    latest_tokens,
    link,
    load_geography,
    load_linkage_rules,
    pseudonymise,
    write_tokens,
)
from transforms.intake import (
    DeliveryRegistry,
    assess_freshness,
    fingerprint_file,
    latest_by_arrival,
    receive_delivery,
)
from transforms.release import audit, catalogue
from transforms.release import gates as release_checks
from transforms.release.report import markdown_summary, write_report
from transforms.root_lock import root_lock

# A delivery is retried only after an I/O error (a network share that blinks), twice, after 3 s
# then 6 s. Time limits are set per deployment run (flows/deployments.py): a task timeout
# cannot interrupt a task in a worker thread.
DELIVERY_RETRIES = 2
# Files that make up the release's inputs besides the deliveries: a change to any of them is a
# reason to build a new release even when no department delivered.
DECLARATIONS = ("disclosure_policy.yaml", "cohorts.yaml", "linkage.yaml", "hierarchies")
# Releases staged by runs in this process: the CLI tells a new release from an unchanged one.
STAGED_HERE: set[str] = set()

LIMITATIONS = [
    "Secondary suppression treats every total of each table (over any of its columns) as "
    "known and withholds extra cells so no withheld cell can be recovered from one; it is a "
    "heuristic, not a full linear audit across tables or releases, where rounding is the "
    "remaining protection.",
    "Linkage is deterministic on keyed tokens (data_contracts/linkage.yaml). When a weaker rule "
    "would join records holding two different NHS numbers, NI numbers or dates of birth, the "
    "link is refused and counted as a conflict; the records stay apart.",
    "A record with neither a date of birth nor an NHS or NI number is linked by full name and "
    "postcode only; people recorded that way in several departments may be counted twice.",
    "Age is 'unknown' for people whose only records carry no date of birth (mostly council tax).",
]


def landing_files(root: Path, contracts: dict) -> list[tuple[str, Path]]:
    """Each department's landing files in arrival order (modification time, then name), so a
    corrected file that arrives later is received later and becomes the newest delivery."""
    found = []
    for department, contract in sorted(contracts.items()):
        folder = root / "landing" / department
        if folder.is_dir():
            files = [p for p in folder.glob(contract.file_pattern) if not p.name.startswith(".")]
            found += [(department, p) for p in sorted(files, key=_arrival)]
    return found


def _arrival(path: Path) -> tuple[float, str]:
    try:
        return path.lstat().st_mtime, path.name
    except OSError:  # vanished meanwhile: its task reports it
        return 0.0, path.name


def _retry_after_io_error(task, task_run, state) -> bool:
    """Retry a delivery only when it failed on I/O; a bug or a bad file fails the same again."""
    error = state.data if isinstance(state.data, BaseException) else None
    if error is None:
        try:
            state.result()
        except Exception as raised:  # noqa: BLE001 - inspected, not handled
            error = raised
    return isinstance(error, PipelineError) and getattr(error, "transient", False)


@task(
    persist_result=False,
    cache_policy=NO_CACHE,
    task_run_name="receive {department}: {path.name}",
    retries=DELIVERY_RETRIES,
    retry_delay_seconds=exponential_backoff(backoff_factor=3),
    retry_condition_fn=_retry_after_io_error,
)
@guarded
def process_delivery(settings: Settings, department: str, path: Path) -> dict[str, Any]:
    """Ingest, validate, quarantine and pseudonymise one delivery; only tokens leave this task.

    The caller holds the data root's lock, so checking the registry and then writing to it
    cannot interleave with another run's.
    """
    logger = get_run_logger()
    started = time.perf_counter()
    contract = load_contracts(settings.contracts)[department]
    registry = DeliveryRegistry(settings.root)
    fingerprint = fingerprint_file(path)
    summary = {"department": department, "file": path.name, "delivery_id": fingerprint}
    previous = registry.find(fingerprint)
    if previous is not None and registry.is_processed(fingerprint, contract.version):
        logger.info("%s: %s already %s, skipped", department, path.name, previous.status)
        return {**summary, "status": f"already {previous.status}"}
    try:
        received = receive_delivery(path, contract, settings.root, date.today())
    except DeliveryRejected as rejection:
        registry.record(rejection.outcome)
        logger.error("%s", rejection)
        return {**summary, "status": "rejected", "reason": str(rejection)}
    key = resolve_key(demo=settings.demo)
    outcome = received.outcome
    rules = load_linkage_rules(settings.contracts / "linkage.yaml")
    tokens, counts = pseudonymise(
        received.frame, contract, key, load_geography(), outcome.extract_date, rules=rules
    )
    write_tokens(settings.root, outcome, tokens, key.key_id, counts.to_dict())
    registry.record(outcome)
    logger.info(
        "%s: %s received %d, accepted %d, quarantined %d in %.1f s",
        department,
        path.name,
        outcome.rows_received,
        outcome.rows_accepted,
        outcome.rows_quarantined,
        time.perf_counter() - started,
    )
    return {**summary, "status": outcome.status, "pseudonymisation": counts.to_dict()}


@task(persist_result=False, cache_policy=NO_CACHE)
@guarded
def link_population(settings: Settings, key_id: str) -> dict[str, Any]:
    """Link the newest accepted delivery of every department into one population of residents."""
    started = time.perf_counter()
    inputs = latest_tokens(settings.root)
    if not inputs:
        raise NoDataError(
            f"no accepted deliveries under {settings.root / 'secure'}: put extracts in "
            f"{settings.root / 'landing'}/<department>/ (or run `cohortshare generate`)"
        )
    stale = sorted(p.parent.name for p, meta in inputs.items() if meta["key_id"] != key_id)
    if stale:
        raise KeyCustodyError(
            f"secure tokens of {', '.join(stale)} were made with another key than {key_id}; "
            "run `cohortshare key rotate` or re-deliver those extracts"
        )
    records = pl.concat([pl.read_parquet(p) for p in inputs], how="diagonal_relaxed")
    linked, link_counts = link(records, load_linkage_rules(settings.contracts / "linkage.yaml"))
    population, _incomplete, population_counts = build_population(linked)
    secure = settings.root / "secure" / "linked"
    secure.mkdir(parents=True, exist_ok=True)
    write_parquet(population, secure / "population.parquet")
    get_run_logger().info(
        "link: %d department(s), %d records -> %d people in %d households in %.1f s",
        len(inputs),
        population_counts.records,
        population_counts.people,
        population_counts.households,
        time.perf_counter() - started,
    )
    return {
        "deliveries": [meta["delivery_id"] for meta in inputs.values()],
        "pseudonymisation": {
            meta["department"]: meta.get("pseudonymisation", {}) for meta in inputs.values()
        },
        "linkage": link_counts.to_dict(),
        "population": population_counts.to_dict(),
    }


@task(persist_result=False, cache_policy=NO_CACHE)
@guarded
def anonymise_population(settings: Settings) -> dict[str, Any]:
    started = time.perf_counter()
    policy = load_policy(settings.contracts / "disclosure_policy.yaml")
    population = pl.read_parquet(settings.root / "secure" / "linked" / "population.parquet")
    hierarchies = load_hierarchies(
        settings.contracts / "hierarchies", list(policy.quasi_identifiers)
    )
    result = anonymise(
        population,
        list(policy.quasi_identifiers),
        hierarchies,
        policy.k,
        policy.max_suppression,
        l=policy.l_diversity,
        sensitive=policy.sensitive,
    )
    out = settings.root / "secure" / "anonymised"
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(result.frame, out / "population.parquet")
    found = result.to_dict()
    get_run_logger().info(
        "anonymise: %d people, %d released, %d suppressed, levels %s in %.1f s",
        population.height,
        found["released"],
        found["suppressed"],
        found["levels"],
        time.perf_counter() - started,
    )
    return found


@task(persist_result=False, cache_policy=NO_CACHE)
@guarded
def stage_candidate(settings: Settings, release_id: str, metadata: dict) -> dict[str, Any]:
    """Tabulate the cohorts, stage them, and run the independent disclosure checks."""
    started = time.perf_counter()
    policy = load_policy(settings.contracts / "disclosure_policy.yaml")
    cohorts = load_cohorts(settings.contracts / "cohorts.yaml")
    anonymised = settings.root / "secure" / "anonymised" / "population.parquet"
    population = pl.read_parquet(anonymised)
    tables, counts = {}, []
    for table in cohorts.tables:
        tables[table.name], table_counts = tabulate(population, table, policy)
        counts.append(table_counts.to_dict())
    staged = catalogue.stage_release(settings.root, release_id, tables, metadata)
    checks = release_checks.check_release(staged, anonymised, cohorts, policy)
    get_run_logger().info(
        "stage: release %s, %d table(s), %d row(s) published in %.1f s",
        release_id,
        len(counts),
        sum(c.get("rows_published", 0) for c in counts),
        time.perf_counter() - started,
    )
    return {"tables": counts, "checks": checks.to_dict()}


def _delivery_summaries(settings: Settings, delivery_ids: list[str]) -> list[DeliverySummary]:
    outcomes = {o.delivery_id: o for o in DeliveryRegistry(settings.root).all()}
    return [
        DeliverySummary(
            **outcomes[d].model_dump(
                mode="json", include=set(DeliverySummary.model_fields) | {"rejection"}
            )
        )
        for d in delivery_ids
        if d in outcomes
    ]


def build_report(
    settings,
    policy,
    release_id,
    key_id,
    deliveries,
    linked,
    anonymised,
    staged,
    contracts,
    freshness=(),
):
    people = linked["population"]
    accounting = {
        "rows_received": sum(d.rows_received for d in deliveries),
        "rows_quarantined": sum(d.rows_quarantined for d in deliveries),
        "records_accepted": sum(d.rows_accepted for d in deliveries),
        "records_linked": people["records"],
        "people_linked": people["people"],
        "people_withheld_no_area": people["people_incomplete"],
        "people_suppressed_by_anonymiser": anonymised["suppressed"],
        "people_released_to_cohort_tables": anonymised["released"],
    }
    # Each count comes from the stage that produced it, so the identities can fail.
    accounting["balanced"] = (
        accounting["rows_received"]
        == accounting["records_accepted"] + accounting["rows_quarantined"]
        and accounting["records_accepted"] == accounting["records_linked"]
        and people["people"]
        == people["people_incomplete"] + anonymised["suppressed"] + anonymised["released"]
    )
    return ReleaseReport(
        release_id=release_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        status="awaiting approval",
        key_id=key_id,
        demo=settings.demo,
        policy={
            **policy.model_dump(mode="json"),
            "min_published_count": policy.min_published_count,
            "round_to": policy.rule.round_to,
            "rule_source": policy.rule.source,
        },
        contracts={d: f"{c.contract_id} v{c.version}" for d, c in contracts.items()},
        deliveries=deliveries,
        pseudonymisation={"key_id": key_id, **linked["pseudonymisation"]},
        linkage=linked["linkage"],
        population=people,
        anonymisation=anonymised,
        tables=staged["tables"],
        accounting=accounting,
        checks=staged["checks"],
        limitations=LIMITATIONS,
        freshness=[f.to_dict() for f in freshness],
    )


def receive_deliveries(settings: Settings, files: list[tuple[str, Path]]) -> list[dict]:
    """Receive every landing file: departments concurrently, each one's files in order.

    A delivery that still fails after its retries stops only the later deliveries of its own
    department; the others are received, then the run fails naming the department and file.
    """
    logger = get_run_logger()
    started = time.perf_counter()
    futures, last = [], {}
    for department, path in files:
        upstream = [last[department]] if department in last else None
        future = process_delivery.submit(settings, department, path, wait_for=upstream)
        futures.append((department, path, future))
        last[department] = future
    results, failed = [], []
    for department, path, future in futures:
        future.wait()
        if future.state.is_completed():
            results.append(future.result())
        else:
            failed.append(f"{department}: {path.name} ({_failure_reason(future)})")
    for result in results:
        if result["status"] == "rejected":
            audit.record_event(
                settings.root,
                "delivery_rejected",
                department=result["department"],
                file=result["file"],
                reason=result["reason"],
            )
    new = [r for r in results if not r["status"].startswith("already")]
    logger.info(
        "receive: %d landing file(s) of %d department(s): %d new, %d already processed, "
        "%d rejected, %d failed in %.1f s",
        len(files),
        len({d for d, _ in files}),
        len(new),
        len(results) - len(new),
        sum(r["status"] == "rejected" for r in results),
        len(failed),
        time.perf_counter() - started,
    )
    if failed:
        raise PipelineError(
            f"{len(failed)} of {len(files)} deliveries could not be received: "
            f"{'; '.join(failed)}. The other deliveries were received; fix these and re-run "
            "(nothing is processed twice)"
        )
    return results


def _failure_reason(future) -> str:
    state = future.state
    if state.is_failed():
        error = future.result(raise_on_failure=False)
        if isinstance(error, PipelineError) and getattr(error, "cause", None):
            attempts = "" if not getattr(error, "transient", False) else ", after retries"
            return f"{error.cause}{attempts}"
        if isinstance(error, BaseException):
            return f"{type(error).__name__}: {error}"
    if state.is_pending() or state.name == "NotReady":
        return "not attempted: an earlier delivery of this department failed"
    return state.name


def check_freshness(settings: Settings, contracts: dict, policy) -> list:
    """Each department's newest delivery by arrival, judged against its contract's SLA.

    Logs one line per department; a stale or missing one stops the build when the disclosure
    policy says `stale_departments: block`.
    """
    logger = get_run_logger()
    with_tokens = {meta["department"] for meta in latest_tokens(settings.root).values()}
    latest = {
        department: outcome
        for department, outcome in latest_by_arrival(DeliveryRegistry(settings.root).all()).items()
        if department in with_tokens
    }
    verdicts = assess_freshness(contracts, latest, date.today())
    for verdict in verdicts:
        (logger.info if verdict.status == "fresh" else logger.warning)(
            "freshness: %s", verdict.describe()
        )
    overdue = [v for v in verdicts if v.status != "fresh"]
    if overdue and policy.stale_departments == "block":
        raise NoDataError(
            f"{len(overdue)} department(s) stale or missing: "
            f"{'; '.join(v.describe() for v in overdue)}. No release built (disclosure "
            "policy: stale_departments: block); put the newest extracts in landing/ or set "
            "stale_departments: warn"
        )
    return verdicts


def release_inputs(settings: Settings, key_id: str, contracts: dict) -> str:
    """A fingerprint of everything a release is built from: the deliveries it would use, the
    contracts, the declarations (policy, cohorts, linkage, hierarchies) and the key id."""
    digest = hashlib.sha256()
    for meta in sorted(latest_tokens(settings.root).values(), key=lambda m: m["department"]):
        digest.update(f"delivery {meta['department']} {meta['delivery_id']}\n".encode())
    for department, contract in sorted(contracts.items()):
        digest.update(f"contract {department} {contract.contract_id} {contract.version}\n".encode())
    for name in DECLARATIONS:
        target = settings.contracts / name
        paths = sorted(target.rglob("*")) if target.is_dir() else [target]
        for path in paths:
            if path.is_file():
                relative = path.relative_to(settings.contracts).as_posix()
                digest.update(f"file {relative} ".encode() + path.read_bytes() + b"\n")
    digest.update(f"key {key_id}\n".encode())
    return digest.hexdigest()


def last_staged_release(root: Path) -> tuple[str, str | None] | None:
    """The newest staged release and the fingerprint of its inputs (None for older releases)."""
    staged = [e for e in audit.read_events(root) if e.get("event") == "release_staged"]
    return (staged[-1]["release_id"], staged[-1].get("inputs")) if staged else None


@contextmanager
def holding_root_lock(root: Path, operation: str, wait_seconds: float):
    """The data root's lock; says in the log when it has to wait for another operation."""
    try:
        with root_lock(root, operation):
            yield
        return
    except BusyError as busy:
        if wait_seconds <= 0:
            raise
        get_run_logger().warning("%s; waiting up to %d s", busy, wait_seconds)
    with root_lock(root, operation, wait_seconds=wait_seconds):
        yield


def build_release(
    settings: Settings, *, force: bool = False, lock_wait_seconds: float = 0.0
) -> tuple[str, bool]:
    """Receive, link, anonymise and stage under the data root's lock.

    Returns (release id, built): when nothing the release is built from changed since the last
    staged release, that release's id and False, unless `force`.
    """
    logger = get_run_logger()
    contract_set = load_contracts(settings.contracts)
    policy = load_policy(settings.contracts / "disclosure_policy.yaml")
    key_id = resolve_key(demo=settings.demo).key_id
    with holding_root_lock(settings.root, "release build", lock_wait_seconds):
        files = landing_files(settings.root, contract_set)
        logger.info("found %d landing file(s) for %d contract(s)", len(files), len(contract_set))
        results = receive_deliveries(settings, files)
        freshness = check_freshness(settings, contract_set, policy)
        inputs = release_inputs(settings, key_id, contract_set)
        previous = last_staged_release(settings.root)
        if previous is not None and previous[1] == inputs and not force:
            logger.info(
                "no input changed since release %s (same deliveries, contracts, declarations "
                "and key): nothing new staged; force=True builds one anyway",
                previous[0],
            )
            return previous[0], False
        linked = link_population(settings, key_id)
        anonymised = anonymise_population(settings)
        release_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        metadata = {
            "release_id": release_id,
            "key_id": key_id,
            "levels": anonymised["levels"],
            "contracts": {d: f"{c.contract_id} v{c.version}" for d, c in contract_set.items()},
        }
        staged = stage_candidate(settings, release_id, metadata)
        rejected = [r["delivery_id"] for r in results if r["status"] == "rejected"]
        deliveries = _delivery_summaries(settings, linked["deliveries"] + rejected)
        report = build_report(
            settings,
            policy,
            release_id,
            key_id,
            deliveries,
            linked,
            anonymised,
            staged,
            contract_set,
            freshness,
        )
        json_path, html_path = write_report(settings.root, report)
        create_markdown_artifact(
            markdown=markdown_summary(report),
            key="anonymisation-report",
            description=f"Release {release_id}: counts only",
        )
        audit.record_event(
            settings.root,
            "release_staged",
            release_id=release_id,
            key_id=key_id,
            tables=[t["table"] for t in staged["tables"]],
            inputs=inputs,
        )
    logger.info("release %s staged; report at %s", release_id, html_path)
    STAGED_HERE.add(release_id)
    return release_id, True


def approve_automatically(settings: Settings, release_id: str, demo_approval: bool) -> None:
    """The two approvals that need no person: the labelled demo one, and a policy's waiver.
    Outside the run's lock: the decision takes the data root's lock itself."""
    policy = load_policy(settings.contracts / "disclosure_policy.yaml")
    if demo_approval:
        decide(
            settings.root,
            release_id,
            name="automatic demo approval",
            role="demo (no human review)",
            decision="approve",
            conditions="synthetic data only",
            demo=True,
        )
    elif not policy.require_approval:
        decide(
            settings.root,
            release_id,
            name=f"disclosure policy {policy.name}",
            role="approval not required by policy",
            decision="approve",
        )


@flow(
    name="share_cohorts",
    log_prints=False,
    task_runner=task_runner_from_environment(),
    on_failure=[report_failure],
    on_crashed=[report_failure],
)
@guarded
def share_cohorts(
    root: str = "data",
    contracts: str = "data_contracts",
    demo: bool = False,
    demo_approval: bool = False,
    force: bool = False,
    lock_wait_seconds: float = 0.0,
) -> str:
    """Run every stage on the landing extracts and stage a release for IG approval.

    Returns the release id: the previous one when no input changed (unless `force`). With
    `demo_approval` (demo mode only) the release is approved automatically and the approval is
    labelled as an automatic demo approval.
    """
    quiet_user_error_tracebacks()
    if demo_approval and not demo:
        raise ConfigError("automatic approval exists only in demo mode (synthetic data, demo key)")
    settings = Settings(root=Path(root).resolve(), contracts=Path(contracts).resolve(), demo=demo)
    release_id, built = build_release(settings, force=force, lock_wait_seconds=lock_wait_seconds)
    if built:
        approve_automatically(settings, release_id, demo_approval)
    return release_id
