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

import functools
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

from flows.approval import (
    POLICY_CHANNEL,
    await_decisions,
    decide,
    from_deployment,
)
from flows.guard import guarded, quiet_user_error_tracebacks
from flows.hooks import report_failure
from flows.key_source import resolve_key
from flows.runners import task_runner_from_environment
from flows.settings import Settings
from schemas.cohorts import load_cohorts, load_indicators
from schemas.contract import departments, load_contracts, opt_out_registers
from schemas.errors import (
    BusyError,
    ConfigError,
    DeliveryRejected,
    KeyCustodyError,
    NoDataError,
    PipelineError,
)
from schemas.policy import load_policy
from schemas.report import DeliverySummary, ReleaseReport
from schemas.transparency import TRANSPARENCY_FILE, load_transparency
from transforms.disclosure import (
    anonymise,
    check_definitions,
    columns_read,
    load_hierarchies,
    magnitude_rules,
    measure_tables,
    perturb_release,
    protect_release,
    worst_hidden_share,
)
from transforms.files import write_atomically
from transforms.identity import (
    GEOGRAPHY_FILE,
    PersonFeatures,
    finish_population,
    latest_tokens,
    link_files,
    load_geography,
    load_linkage_rules,
    objecting_residents,
    person_features,
    read_register,
    registers_apart,
    release_extract_date,
    residents_of,
    split_records,
    token_file,
)
from transforms.intake import (
    DeliveryRegistry,
    assess_freshness,
    discover_deliveries,
    fingerprint_file,
    latest_by_arrival,
    printable,
    receive_delivery,
)
from transforms.release import (
    audit,
    catalogue,
    differencing,
    history,
    magnitude_audit,
    notice,
    outputs,
)
from transforms.release import gates as release_checks
from transforms.release.report import (
    describe_release,
    markdown_summary,
    read_report,
    write_report,
)
from transforms.root_lock import root_lock
from transforms.synthetic import foreign_files

# How long a run under a Prefect server waits for the officers' decisions before it ends and
# leaves the release staged (a decision can still be made later from the command line).
DECISION_TIMEOUT_SECONDS = 7 * 24 * 3600

# A delivery is retried only after an I/O error (a network share that blinks), twice, after 3 s
# then 6 s. Time limits are set per deployment run (flows/deployments.py): a task timeout
# cannot interrupt a task in a worker thread.
DELIVERY_RETRIES = 2
# Files that make up the release's inputs besides the deliveries: a change to any of them is a
# reason to build a new release even when no department delivered.
DECLARATIONS = (
    "disclosure_policy.yaml",
    "cohorts.yaml",
    "indicators.yaml",
    "linkage.yaml",
    "hierarchies",
    "transparency.yaml",
    "release_purpose.yaml",
)
# Releases staged by runs in this process: the CLI tells a new release from an unchanged one.
STAGED_HERE: set[str] = set()

LIMITATIONS = [
    "Cohort tables count every linked resident with a known area; the record-level "
    "anonymiser's output is used for risk measurement only and removes nobody from a table.",
    "Linkage is deterministic on keyed tokens (data_contracts/linkage.yaml). When a weaker rule "
    "would join records holding two different NHS numbers, NI numbers or dates of birth, the "
    "link is refused and counted as a conflict; the records stay apart.",
    "A record with neither a date of birth nor an NHS or NI number is linked by full name and "
    "postcode only; people recorded that way in several departments may be counted twice.",
    "Age is 'unknown' for people whose only records carry no date of birth (mostly council tax).",
]


# Groups an IG officer asks about, and the published dimensions that carry them.
HIDDEN_GROUPS = {
    "department": {"department", "department_a", "department_b"},
    "ethnic group": {"ethnic_group"},
    "age band": {"age_band"},
    "indicator": {"indicator"},
}


def check_declarations(contracts_dir: Path, contract_set: dict) -> PersonFeatures:
    """Everything declarative is checked before any data is read: attributes, indicators,
    cohort definitions against the population they will count."""
    load_geography(contracts_dir / GEOGRAPHY_FILE)  # an empty or broken lookup stops the run
    indicators = load_indicators(contracts_dir / "indicators.yaml")
    features = person_features(departments(contract_set), indicators)
    check_definitions(
        load_cohorts(contracts_dir / "cohorts.yaml"),
        features.columns(),
        load_hierarchies(contracts_dir / "hierarchies"),
    )
    return features


def landing_files(root: Path, contracts: dict):
    """The deliveries waiting in landing/, and everything else there with why it is not read."""
    return discover_deliveries(root, contracts)


def _arrival(path: Path) -> tuple[float, str]:
    try:
        return path.lstat().st_mtime, path.name
    except OSError:  # vanished meanwhile: its task reports it
        return 0.0, path.name


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # vanished or dangling: its task reports it
        return 0


def receiving_order(deliveries: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """Departments with the most to read first, each one's files by arrival: the workers take
    tasks in this order, so the largest extract no longer starts last and finishes alone while
    the other workers idle (10M rows: council tax, 6M of them, started fourth)."""
    sizes: dict[str, int] = {}
    for department, path in deliveries:
        sizes[department] = sizes.get(department, 0) + _size(path)
    return sorted(
        deliveries, key=lambda found: (-sizes[found[0]], found[0], _arrival(found[1]))
    )


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
    task_run_name="receive {department}",
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
    summary = {"department": department, "file": printable(path.name)}
    try:
        fingerprint = fingerprint_file(path)
    except DeliveryRejected as gone:  # moved or replaced since landing/ was listed
        logger.error("%s", gone)
        return {**summary, "delivery_id": None, "status": "not ingested", "reason": str(gone)}
    summary["delivery_id"] = fingerprint
    previous = registry.find(fingerprint)
    if previous is not None and registry.is_processed(fingerprint, contract.version):
        logger.info("%s: %s already %s, skipped", department, summary["file"], previous.status)
        return {**summary, "status": f"already {previous.status}"}
    # A broken declaration is the run's problem, not this delivery's: loaded before it is read.
    key = resolve_key(demo=settings.demo)
    tokens_to = functools.partial(
        token_file, settings.root, contract=contract, key=key,
        geography=load_geography(settings.contracts / GEOGRAPHY_FILE),
        rules=load_linkage_rules(settings.contracts / "linkage.yaml"), file_name=summary["file"],
    )
    try:
        # Rows are pseudonymised and written chunk by chunk as they pass validation.
        received = receive_delivery(
            path, contract, settings.root, date.today(), landing=settings.root / "landing",
            accepted_to=tokens_to,
        )
    except DeliveryRejected as rejection:
        registry.record(rejection.outcome)
        logger.error("%s", rejection)
        return {**summary, "status": "rejected", "reason": str(rejection)}
    outcome = received.outcome
    registry.record(outcome)
    logger.info(
        "%s: %s received %d, accepted %d, quarantined %d in %.1f s",
        department,
        summary["file"],
        outcome.rows_received,
        outcome.rows_accepted,
        outcome.rows_quarantined,
        time.perf_counter() - started,
    )
    return {**summary, "status": outcome.status}


@task(persist_result=False, cache_policy=NO_CACHE)
@guarded
def link_population(settings: Settings, key_id: str, features: PersonFeatures) -> dict[str, Any]:
    """Link the latest accepted delivery of every department into one population of residents,
    without the records of residents whose objection in the opt-out register applies."""
    contract_set = load_contracts(settings.contracts)
    inputs, registers = registers_apart(
        latest_tokens(settings.root), opt_out_registers(contract_set)
    )
    if not inputs:
        raise NoDataError(
            f"no accepted deliveries under {settings.root / 'secure'}: put extracts in "
            f"{settings.root / 'landing'}/<department>/ (or run `cohortshare generate`)"
        )
    stale = sorted(
        p.parent.name for p, meta in {**inputs, **registers}.items() if meta["key_id"] != key_id
    )
    if stale:
        raise KeyCustodyError(
            f"secure tokens of {', '.join(stale)} were made with another key than {key_id}; "
            "run `cohortshare key rotate` or re-deliver those extracts"
        )
    started = time.perf_counter()
    rules = load_linkage_rules(settings.contracts / "linkage.yaml")
    # Tokens are read one column at a time (docs/operations.md, Scale).
    linked, tokens, link_counts = link_files(list(inputs), rules)
    register, register_id = read_register(registers)
    purpose = load_transparency(settings.contracts / TRANSPARENCY_FILE).purpose.code
    removed, opt_outs = objecting_residents(
        linked, register, rules, purpose, release_extract_date(inputs), tokens=tokens
    )
    del tokens
    opt_outs.register_delivery_id = register_id
    records = split_records(linked, removed=removed)
    del linked  # each partition's records are freed as its residents are built
    residents = residents_of(records, features)
    population, _incomplete, population_counts = finish_population(residents, features)
    secure = settings.root / "secure" / "linked"
    secure.mkdir(parents=True, exist_ok=True)
    # Polars' own writer: 3.6 s for 7M residents where converting to Arrow first took 5.6 s.
    write_atomically(secure / "population.parquet", population.write_parquet)
    get_run_logger().info(
        "link: %d department(s), %d records -> %d people in %d households in %.1f s",
        len(inputs),
        link_counts.records,
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
        "opt_out": opt_outs.to_dict(),
        "population": population_counts.to_dict(),
    }


@task(persist_result=False, cache_policy=NO_CACHE)
@guarded
def anonymise_population(settings: Settings) -> dict[str, Any]:
    started = time.perf_counter()
    policy = load_policy(settings.contracts / "disclosure_policy.yaml")
    # Scanned, not read: the engine counts the file's classes and then streams the released
    # rows to their file, so the population is never held whole here.
    population = pl.scan_parquet(settings.root / "secure" / "linked" / "population.parquet")
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
    result.write_parquet(out / "population.parquet")
    found = result.to_dict()
    get_run_logger().info(
        "anonymise: %d people, %d released, %d suppressed, levels %s in %.1f s",
        result.records,
        found["released"],
        found["suppressed"],
        found["levels"],
        time.perf_counter() - started,
    )
    return found


@task(persist_result=False, cache_policy=NO_CACHE)
@guarded
def stage_candidate(settings: Settings, release_id: str, metadata: dict) -> dict[str, Any]:
    """Tabulate the cohorts from the whole linked population, protect every table together
    against this release and the last published one (the independent audit decides where more
    must be withheld, and must pass at the end), stage them, and run the release checks."""
    started = time.perf_counter()
    policy = load_policy(settings.contracts / "disclosure_policy.yaml")
    cohorts = load_cohorts(settings.contracts / "cohorts.yaml")
    hierarchies = load_hierarchies(settings.contracts / "hierarchies")
    population_file = settings.root / "secure" / "linked" / "population.parquet"
    columns = columns_read(cohorts, list(pl.read_parquet_schema(population_file)))
    population = pl.read_parquet(population_file, columns=columns)
    previous = history.previous_release(settings.root, cohorts)
    auditor = differencing.Auditor(population, cohorts, hierarchies, policy, previous)

    def exposures(tables):
        return auditor.audit(tables).failures

    if policy.method == "cell_key":
        protected = perturb_release(population, cohorts, policy, hierarchies, exposures)
    else:
        previous_tables = previous.tables if previous else None
        protected = protect_release(
            population, cohorts, policy, hierarchies, exposures, previous=previous_tables
        )
    # Sums and medians beside their counts; withheld sums protected by their own audit.
    sum_auditor = magnitude_audit.SumAuditor(population, cohorts, hierarchies, policy)
    measured = measure_tables(
        protected.tables, population, cohorts, policy, hierarchies, protected.counts,
        lambda tables: sum_auditor.audit(tables).failures,
    )  # fmt: skip
    audit = auditor.audit(measured.tables)
    differencing.raise_on_failures(audit)
    magnitude = magnitude_audit.audit_measures(
        measured.tables, population, cohorts, policy, hierarchies, sum_auditor
    )
    history.keep_population(settings.root, release_id, population_file)
    staged = catalogue.stage_release(settings.root, release_id, measured.tables, metadata)
    anonymised = settings.root / "secure" / "anonymised" / "population.parquet"
    checks = release_checks.check_release(staged, anonymised, cohorts, policy)
    perturbation = release_checks.check_perturbation(
        staged, population, cohorts, policy, hierarchies
    )
    # Kept so the gates can run again at approval on exactly these inputs.
    release_checks.save_gate_inputs(
        settings.root, release_id, anonymised, cohorts, policy, settings.contracts
    )
    sealed = outputs.seal(catalogue.staging_dir(settings.root, release_id))
    get_run_logger().info(
        "stage: release %s, %d table(s), %d row(s) published in %.1f s",
        release_id,
        len(protected.tables),
        sum(table.height for table in protected.tables.values()),
        time.perf_counter() - started,
    )
    return {
        "people_counted": population.height,  # the balance's third term, from the file itself
        "tables": [c.to_dict() for c in measured.counts],
        "protection": {
            **protection_method(policy, perturbation),
            "secondary_suppression": policy.secondary_suppression,
            "audit_rounds": protected.rounds,
            "cells_withheld_for_the_release": protected.cells_withheld_for_the_release,
            "cells_withheld_again": protected.cells_withheld_again,
            "compared_with_previous_release": previous is not None,
            "audit": {**audit.to_dict(), "build_seconds": round(auditor.build_seconds, 3)},
        },
        "hidden": {**protected.hidden, **measured.hidden},
        "worst_hidden": worst_hidden_share(
            {**protected.hidden, **measured.hidden}, HIDDEN_GROUPS
        ),
        "magnitude": {
            "rules": magnitude_rules(policy.magnitude),
            "tables": [m.to_dict() for m in measured.measures],
            "sum_audits": measured.rounds,
            **magnitude,
        },
        "checks": checks.to_dict(),
        "outputs": sealed,
    }


def protection_method(policy, perturbation_check: dict) -> dict[str, Any]:
    """How the release was protected, for the report: the method and, for cell-key
    perturbation, the perturbation table's parameters and the gate that re-derived every count."""
    if policy.method != "cell_key":
        return {"method": "suppression"}
    table = policy.perturbation
    return {
        "method": "cell_key",
        "perturbation_table": {
            "name": table.name,
            "file": policy.ptable,
            "max_noise": table.max_noise,
            "variance": table.variance,
            "small_counts": table.small_counts,
            "source": table.source,
        },
        "perturbation_check": perturbation_check,
    }


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


def account_rows(settings: Settings, deliveries, linked) -> dict[str, Any]:
    population = settings.root / "secure" / "linked" / "population.parquet"
    return release_checks.account_rows(
        received=sum(d.rows_received for d in deliveries),
        quarantined=sum(d.rows_quarantined for d in deliveries),
        accepted=sum(d.rows_accepted for d in deliveries),
        removed_by_opt_out=linked["opt_out"]["records_removed"],
        linked_records=linked["population"]["records"],
        people=linked["population"],
        # Read from the file the tables are counted from, not from linkage's own counts.
        people_counted=pl.scan_parquet(population).select(pl.len()).collect().item(),
    )


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
    accounting,
    freshness=(),
):
    people = linked["population"]
    opt_out = linked["opt_out"]
    register = _delivery_summaries(settings, [opt_out["register_delivery_id"]])
    opt_out["register_delivery"] = register[0].model_dump(mode="json") if register else None
    return ReleaseReport(
        release_id=release_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        status="awaiting approval",
        key_id=key_id,
        demo=settings.demo,
        policy={
            **policy.model_dump(mode="json", exclude={"perturbation"}),
            "min_published_count": policy.min_published_count,
            "round_to": policy.rule.round_to,
            "rule_source": policy.rule.source,
        },
        contracts={d: f"{c.contract_id} v{c.version}" for d, c in contracts.items()},
        deliveries=deliveries,
        pseudonymisation={"key_id": key_id, **linked["pseudonymisation"]},
        linkage=linked["linkage"],
        opt_out=opt_out,
        transparency=_notice_content(settings, policy, contracts),
        population=people,
        anonymisation=anonymised,
        tables=staged["tables"],
        protection=staged["protection"],
        hidden=staged["hidden"],
        worst_hidden=staged["worst_hidden"],
        magnitude=staged.get("magnitude", {}),
        accounting=accounting,
        checks=staged["checks"],
        limitations=LIMITATIONS,
        **describe_release(settings.contracts, contracts),
        built_by=audit.actor(),
        approvers_required=policy.approvers_required,
        outputs=staged["outputs"],
        freshness=[f.to_dict() for f in freshness],
    )


def _notice_content(settings: Settings, policy, contracts) -> dict[str, Any]:
    """What the residents' transparency notice says, from the declarative inputs only."""
    shared = departments(contracts)
    declared = load_transparency(settings.contracts / TRANSPARENCY_FILE, list(shared))
    cohorts = load_cohorts(settings.contracts / "cohorts.yaml")
    return notice.notice_content(declared, shared, policy, cohorts)


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
    features = check_declarations(settings.contracts, contract_set)
    policy = load_policy(settings.contracts / "disclosure_policy.yaml")
    key_id = resolve_key(demo=settings.demo).key_id
    with holding_root_lock(settings.root, "release build", lock_wait_seconds):
        landing = landing_files(settings.root, contract_set)
        files = receiving_order(landing.deliveries)
        logger.info("found %d landing file(s) for %d contract(s)", len(files), len(contract_set))
        for item in landing.not_ingested:
            logger.warning("not ingested: landing/%s: %s", item.path, item.reason)
        results = receive_deliveries(settings, files)
        freshness = check_freshness(settings, departments(contract_set), policy)
        inputs = release_inputs(settings, key_id, contract_set)
        previous = last_staged_release(settings.root)
        if previous is not None and previous[1] == inputs and not force:
            logger.info(
                "no input changed since release %s (same deliveries, contracts, declarations "
                "and key): nothing new staged; force=True builds one anyway",
                previous[0],
            )
            return previous[0], False
        linked = link_population(settings, key_id, features)
        anonymised = anonymise_population(settings)
        release_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        metadata = {
            "release_id": release_id,
            "key_id": key_id,
            "levels": anonymised["levels"],
            "contracts": {d: f"{c.contract_id} v{c.version}" for d, c in contract_set.items()},
        }
        rejected = [r["delivery_id"] for r in results if r["status"] == "rejected"]
        deliveries = _delivery_summaries(settings, linked["deliveries"] + rejected)
        accounting = account_rows(settings, deliveries, linked)
        release_checks.require_balanced(accounting)
        staged = stage_candidate(settings, release_id, metadata)
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
            accounting,
            freshness,
        )
        not_ingested = [item.to_dict() for item in landing.not_ingested] + [
            {"path": f"{r['department']}/{r['file']}", "reason": r["reason"]}
            for r in results
            if r["status"] == "not ingested"
        ]
        report = report.model_copy(update={"not_ingested": not_ingested})
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
            opt_out=report.opt_out,  # counts only
            notice_readability=read_report(settings.root, release_id).transparency["readability"],
        )
    logger.info("release %s staged; report at %s", release_id, html_path)
    STAGED_HERE.add(release_id)
    return release_id, True


def approve_automatically(settings: Settings, release_id: str, demo_approval: bool) -> bool:
    """The two approvals that need no person: the labelled demo one, and a policy's waiver.
    Outside the run's lock: the decision takes the data root's lock itself. True if decided."""
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
        return True
    if not policy.require_approval:
        decide(
            settings.root,
            release_id,
            name=f"disclosure policy {policy.name}",
            role="approval not required by policy",
            decision="approve",
            channel=POLICY_CHANNEL,
        )
        return True
    return False


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
    wait_for_decision: bool | None = None,
    decision_timeout_seconds: int = DECISION_TIMEOUT_SECONDS,
) -> str:
    """Run every stage on the landing extracts and stage a release for IG approval.

    Returns the release id: the previous one when no input changed (unless `force`). With
    `demo_approval` (demo mode only, on extracts the synthetic generator wrote) the release is
    approved automatically and labelled as such. In a run from a deployment (`wait_for_decision`
    None) or with `wait_for_decision`, the run then pauses for the officers' decisions with a
    form; a pause that times out leaves the release staged.
    """
    quiet_user_error_tracebacks()
    if demo_approval and not demo:
        raise ConfigError("automatic approval exists only in demo mode (synthetic data, demo key)")
    settings = Settings(root=Path(root).resolve(), contracts=Path(contracts).resolve(), demo=demo)
    if demo_approval:
        _refuse_foreign_extracts(settings.root)
    release_id, built = build_release(settings, force=force, lock_wait_seconds=lock_wait_seconds)
    if not built or approve_automatically(settings, release_id, demo_approval):
        return release_id
    if wait_for_decision or (wait_for_decision is None and from_deployment()):
        policy = load_policy(settings.contracts / "disclosure_policy.yaml")
        await_decisions(
            settings.root, release_id, policy.approvers_required, decision_timeout_seconds
        )
    return release_id


def _refuse_foreign_extracts(root: Path) -> None:
    """Automatic demo approval publishes only extracts the synthetic generator wrote."""
    foreign = foreign_files(root)
    if foreign:
        raise ConfigError(
            f"landing/ under {root} holds {len(foreign)} file(s) the synthetic generator did not "
            f"write ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); automatic "
            "demo approval refused: use `cohortshare run` and an officer's decision"
        )
