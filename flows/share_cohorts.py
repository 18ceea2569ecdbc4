"""The `share_cohorts` flow: wiring only. Every stage is a function in `transforms/`.

Tasks that see identifiable rows (`process_delivery`) keep them inside the task: they take a
path, return counts, and set `persist_result=False` so Prefect never pickles them to disk.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.approval import (
    LOCK_WAIT_SECONDS,
    POLICY_CHANNEL,
    await_decisions,
    decide,
    from_deployment,
)
from flows.guard import guarded, quiet_user_error_tracebacks
from flows.key_source import resolve_key
from flows.settings import Settings
from schemas.contract import load_contracts
from schemas.errors import ConfigError, DeliveryRejected, KeyCustodyError, NoDataError
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
from transforms.intake import DeliveryRegistry, fingerprint_file, receive_delivery
from transforms.release import audit, catalogue, outputs
from transforms.release import gates as release_checks
from transforms.release.report import markdown_summary, write_report
from transforms.root_lock import root_lock
from transforms.synthetic import foreign_files

# How long a run under a Prefect server waits for the officers' decisions before it ends and
# leaves the release staged (a decision can still be made later from the command line).
DECISION_TIMEOUT_SECONDS = 7 * 24 * 3600

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
    found = []
    for department, contract in sorted(contracts.items()):
        folder = root / "landing" / department
        if folder.is_dir():
            found += [(department, p) for p in sorted(folder.glob(contract.file_pattern))]
    return found


@task(persist_result=False, cache_policy=NO_CACHE, task_run_name="receive {department}")
@guarded
def process_delivery(settings: Settings, department: str, path: Path) -> dict[str, Any]:
    """Ingest, validate, quarantine and pseudonymise one delivery; only tokens leave this task."""
    logger = get_run_logger()
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
        "%s: %s received %d, accepted %d, quarantined %d",
        department,
        path.name,
        outcome.rows_received,
        outcome.rows_accepted,
        outcome.rows_quarantined,
    )
    return {**summary, "status": outcome.status, "pseudonymisation": counts.to_dict()}


@task(persist_result=False, cache_policy=NO_CACHE)
@guarded
def link_population(settings: Settings, key_id: str) -> dict[str, Any]:
    """Link the latest accepted delivery of every department into one population of residents."""
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
    return result.to_dict()


@task(persist_result=False, cache_policy=NO_CACHE)
@guarded
def stage_candidate(settings: Settings, release_id: str, metadata: dict) -> dict[str, Any]:
    """Tabulate the cohorts, stage them, and run the independent disclosure checks."""
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
    # Kept so the gates can run again at approval on exactly these inputs.
    release_checks.save_gate_inputs(settings.root, release_id, anonymised, cohorts, policy)
    release_checks.differencing_audit(staged, policy)
    sealed = outputs.seal(catalogue.staging_dir(settings.root, release_id))
    return {"tables": counts, "checks": checks.to_dict(), "outputs": sealed}


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


def account_rows(deliveries, linked, anonymised) -> dict[str, Any]:
    return release_checks.account_rows(
        received=sum(d.rows_received for d in deliveries),
        quarantined=sum(d.rows_quarantined for d in deliveries),
        accepted=sum(d.rows_accepted for d in deliveries),
        linked_records=linked["population"]["records"],
        people=linked["population"],
        anonymised=anonymised,
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
):
    people = linked["population"]
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
        built_by=audit.actor(),
        approvers_required=policy.approvers_required,
        outputs=staged["outputs"],
    )


@flow(name="share_cohorts", log_prints=False)
@guarded
def share_cohorts(
    root: str = "data",
    contracts: str = "data_contracts",
    demo: bool = False,
    demo_approval: bool = False,
    wait_for_decision: bool | None = None,
    decision_timeout_seconds: int = DECISION_TIMEOUT_SECONDS,
) -> str:
    """Run every stage on the landing extracts and stage a release for IG approval.

    Returns the release id. With `demo_approval` (demo mode only, on extracts the synthetic
    generator wrote) the release is approved automatically and labelled as such. In a run from a
    deployment (`wait_for_decision` None) or with `wait_for_decision`, the run then pauses for the
    officers' decisions with a form; a pause that times out leaves the release staged.
    """
    quiet_user_error_tracebacks()
    if demo_approval and not demo:
        raise ConfigError("automatic approval exists only in demo mode (synthetic data, demo key)")
    settings = Settings(root=Path(root).resolve(), contracts=Path(contracts).resolve(), demo=demo)
    if demo_approval:
        _refuse_foreign_extracts(settings.root)
    logger = get_run_logger()
    contract_set = load_contracts(settings.contracts)
    key_id = resolve_key(demo=demo).key_id
    files = landing_files(settings.root, contract_set)
    logger.info("found %d landing file(s) for %d contract(s)", len(files), len(contract_set))
    results = [process_delivery(settings, department, path) for department, path in files]
    for result in results:
        if result["status"] == "rejected":
            audit.record_event(
                settings.root,
                "delivery_rejected",
                department=result["department"],
                file=result["file"],
                reason=result["reason"],
            )
    linked = link_population(settings, key_id)
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
    accounting = account_rows(deliveries, linked, anonymised)
    release_checks.require_balanced(accounting)
    policy = load_policy(settings.contracts / "disclosure_policy.yaml")
    # Staging changes releases: it holds the data root's lock like every decision.
    with root_lock(settings.root, f"stage release {release_id}", wait_seconds=LOCK_WAIT_SECONDS):
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
        )
        json_path, html_path = write_report(settings.root, report)
        audit.record_event(
            settings.root,
            "release_staged",
            release_id=release_id,
            key_id=key_id,
            tables=[t["table"] for t in staged["tables"]],
        )
    create_markdown_artifact(
        markdown=markdown_summary(report),
        key="anonymisation-report",
        description=f"Release {release_id}: counts only",
    )
    logger.info("release %s staged; report at %s", release_id, html_path)
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
            channel=POLICY_CHANNEL,
        )
    elif wait_for_decision or (wait_for_decision is None and from_deployment()):
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
