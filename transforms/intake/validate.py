"""Validate a delivery against its contract with Great Expectations, in bounded chunks.

The only module that imports `great_expectations` (docs/architecture.md, Layers). Each contract
compiles to two GX suites:

- the row suite, run on each chunk of typed rows: required, unique, allowed values, ranges,
  patterns, NHS number check digit, declared cross-field rules, and column types;
- the delivery suite, run once on a one-row summary of the delivery: row-count bounds,
  freshness (the extract's age within the contract's latency SLA) and the quarantine limit.

GX has no Polars engine, so each chunk is converted to pandas here and nowhere else. Results use
format COMPLETE with `unexpected_index_column_names=["_row_id"]` and `exclude_unexpected_values`,
so failing rows are known by row number, never by value.

Rows that break a rule go to quarantine (`<root>/quarantine/<department>/<id16>.parquet`, a
restricted zone) with row number, rule and column; file-level failures reject the delivery as a
whole with a one-line `DeliveryRejected` naming file, rule, column and count.

The Polars work around GX lives beside it: reading, typing and tallying chunks in
`delivery_chunks`, the delivery summary, rejection wording and outcomes in `delivery_checks`.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

import polars as pl

from schemas.contract import Column, DepartmentContract
from schemas.delivery import DeliveryOutcome
from schemas.errors import DeliveryRejected
from transforms.intake import ingest
from transforms.intake.checks import (
    CONTAINED,
    accepted_outcome,
    delivery_summary,
    failure,
    quarantine_rows,
    rejected_outcome,
    rejection_detail,
)
from transforms.intake.chunks import (
    BREACH_SCHEMA,
    AcceptedRows,
    Collected,
    DeliveryRows,
    Discarded,
    Tally,
    empty_typed,
    prepared_chunks,
)
from transforms.intake.ingest import ROW_NUMBER, reject
from transforms.intake.names import printable
from transforms.intake.quarantine import quarantine_path, write_quarantine
from transforms.intake.registry import DeliveryRegistry
from transforms.intake.source import Source, open_source

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.execution_engine import pandas_execution_engine  # noqa: E402
from great_expectations.expectations import expectation as _gx_expectation  # noqa: E402

logging.getLogger("great_expectations").setLevel(logging.ERROR)
# Some GX modules set their own logger to INFO, which outranks the parent's level: every run
# logged "Created temporary directory '/tmp/...' for ephemeral docs site", a directory GX
# removes at once. Those loggers inherit ERROR instead.
for _name, _logger in list(logging.root.manager.loggerDict.items()):
    if _name.startswith("great_expectations.") and isinstance(_logger, logging.Logger):
        _logger.setLevel(logging.NOTSET)
# GX fingerprints every in-memory batch by hashing all its cells (a fifth of the run time on a
# chunk). The delivery is already fingerprinted with sha256, so that hash buys nothing here.
pandas_execution_engine.HASH_THRESHOLD = 0
# GX rebuilds each expectation's configuration on every use, converting its class name to
# snake case with a regex each time (a tenth of the validation time on a 250k-row chunk).
# The conversion is a pure function of the name, so it is remembered.
_gx_expectation.camel_to_snake = cache(_gx_expectation.camel_to_snake)

ROW_ID = "_row_id"
# The rule of a date outside its column's plausible range (computed in Polars, asserted by GX).
PLAUSIBLE = "plausible_range"
RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": [ROW_ID],
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
    "partial_unexpected_count": 0,
}
# Dtype names pandas gives the typed Polars columns (Int64 with nulls becomes float64).
# GX 1.24 does not recognise pandas 3's default string dtype ("str") in type checks, so string
# columns carry no GX type expectation: Polars typed them, and strings cannot fail to be strings.
PANDAS_TYPES = {
    "date": ["datetime64", "datetime64[ms]", "datetime64[us]", "datetime64[ns]"],
    "integer": ["int64", "Int64", "float64"],
    "number": ["float64", "Float64"],
    "boolean": ["bool", "boolean", "object"],
}
_OPERATORS = {">=": (False, True), ">": (False, False), "<=": (True, True), "<": (True, False)}


@dataclass(frozen=True)
class Received:
    """The delivery's outcome, and its accepted rows (canonical names, typed, with
    `row_number`) unless they went elsewhere as they were accepted (`accepted_to`)."""

    frame: pl.DataFrame | None
    outcome: DeliveryOutcome


# Where accepted rows go, opened with the delivery's id and extract date (known once the file is
# open): a context manager whose rows are kept only if the delivery is accepted, that is if its
# block ends without an exception (the flow's token file, `transforms.identity.secure`).
AcceptedTo = Callable[[str, date], AbstractContextManager[AcceptedRows]]


def discard_accepted(delivery_id: str, extract_date: date) -> AbstractContextManager[Discarded]:
    """`accepted_to` for a dry run: the outcome is all it keeps."""
    return nullcontext(Discarded())


# --- GX context and suites -------------------------------------------------------------------


@cache
def _batch_definition():
    """One ephemeral GX context per process (GX is slow to start), progress bars off."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("cohortshare").add_dataframe_asset("frame")
    return context, asset.add_batch_definition_whole_dataframe("whole")


def check_column(column: str, rule: str) -> str:
    """Name of a derived boolean column computed in Polars and asserted by GX."""
    return f"_check_{column}_{rule}"


def _meta(rule: str, column: str) -> dict[str, str]:
    return {"rule": rule, "column": column}


# Python's ASCII whitespace and digits. pandas runs a regex through pyarrow (RE2, fast) unless it
# uses `\\s` (RE2's differs) or `\\d` on non-ASCII data; spelt out as classes, the same pattern
# runs in Arrow. Unicode digits and exotic spaces then fail, as they should in an identifier.
_CLASS_SPELLING = {"s": " \\t\\n\\r\\f\\v", "d": "0-9"}


def arrow_friendly_regex(pattern: str) -> str:
    """Rewrite `\\s` and `\\d` as explicit ASCII classes, inside or outside brackets."""
    out, in_class, i = [], False, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            escaped = pattern[i + 1]
            if escaped in _CLASS_SPELLING:
                spelt = _CLASS_SPELLING[escaped]
                out.append(spelt if in_class else f"[{spelt}]")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        out.append(char)
        i += 1
    return "".join(out)


def _column_expectations(col: Column) -> list[gx.expectations.Expectation]:
    name = col.name
    found: list[gx.expectations.Expectation] = []
    if col.logical_type in PANDAS_TYPES:
        found.append(
            gxe.ExpectColumnValuesToBeInTypeList(
                column=name, type_list=PANDAS_TYPES[col.logical_type], meta=_meta("type", name)
            )
        )
    if col.required:
        found.append(gxe.ExpectColumnValuesToNotBeNull(column=name, meta=_meta("required", name)))
    if col.unique:
        found.append(gxe.ExpectColumnValuesToBeUnique(column=name, meta=_meta("unique", name)))
    if col.allowed_values is not None:
        found.append(
            gxe.ExpectColumnValuesToBeInSet(
                column=name, value_set=list(col.allowed_values), meta=_meta("allowed_values", name)
            )
        )
    if col.minimum is not None or col.maximum is not None:
        found.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=name, min_value=col.minimum, max_value=col.maximum,
                meta=_meta("range", name),
            )
        )
    if col.pattern is not None:
        found.append(
            gxe.ExpectColumnValuesToMatchRegex(
                column=name, regex=arrow_friendly_regex(col.pattern), meta=_meta("pattern", name)
            )
        )
    derived = [col.check_digit, col.issuance_rule, PLAUSIBLE if col.plausible_range else None]
    for rule in (r for r in derived if r is not None):
        found.append(
            gxe.ExpectColumnValuesToBeInSet(
                column=check_column(name, rule), value_set=[True], meta=_meta(rule, name),
            )
        )
    return found


def _row_expectations(contract: DepartmentContract) -> list[gx.expectations.Expectation]:
    found = [e for col in contract.columns for e in _column_expectations(col)]
    for rule in contract.cross_field_rules:
        swap, or_equal = _OPERATORS[rule.operator]
        a, b = (rule.other, rule.column) if swap else (rule.column, rule.other)
        found.append(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=a, column_B=b, or_equal=or_equal,
                ignore_row_if="either_value_is_missing", meta=_meta(rule.name, rule.column),
            )
        )
    return found


def compile_suite(contract: DepartmentContract) -> gx.ExpectationSuite:
    """The contract's row suite (run per chunk of typed rows)."""
    _batch_definition()  # GX builds suites only inside an active context
    suite = gx.ExpectationSuite(name=f"{contract.department}.rows.{contract.version}")
    for expectation in _row_expectations(contract):
        suite.add_expectation(expectation)
    return suite


def compile_delivery_suite(contract: DepartmentContract) -> gx.ExpectationSuite:
    """The contract's delivery suite (run once, on a one-row summary of the delivery)."""
    _batch_definition()
    suite = gx.ExpectationSuite(name=f"{contract.department}.delivery.{contract.version}")
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(
            column="rows_received", min_value=contract.row_count_min,
            max_value=contract.row_count_max, meta=_meta("row_count", "(file)"),
        )
    )
    if contract.max_latency_days is not None:
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeBetween(
                column="extract_age_days", min_value=0, max_value=contract.max_latency_days,
                meta=_meta("freshness", "(file)"),
            )
        )
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(
            column="quarantined_share", min_value=0, max_value=contract.quarantine_limit,
            meta=_meta("quarantine_limit", "(file)"),
        )
    )
    return suite


ColumnSuites = list[tuple[tuple[str, ...], gx.ExpectationSuite]]
# GX's one ephemeral context is not thread-safe: departments received concurrently in threads
# (flows/runners.py) failed with wrong column types. Only GX calls wait on this lock; reading,
# typing and pseudonymising still overlap.
_GX_LOCK = threading.RLock()
_SUITES: dict[str, tuple[gx.ExpectationSuite, ColumnSuites, gx.ExpectationSuite]] = {}
# Below this many rows one wide batch is quicker: GX's fixed cost per batch then dominates.
NARROW_BATCHES_FROM_ROWS = 20_000


def _expectation_columns(expectation) -> tuple[str, ...]:
    if hasattr(expectation, "column"):
        return (expectation.column,)
    return (expectation.column_A, expectation.column_B)


def _register(context, suite: gx.ExpectationSuite) -> gx.ExpectationSuite:
    if suite.name in {s.name for s in context.suites.all()}:
        context.suites.delete(suite.name)
    return context.suites.add(suite)


def _suites(
    contract: DepartmentContract,
) -> tuple[gx.ExpectationSuite, ColumnSuites, gx.ExpectationSuite]:
    """The row suite, whole and split by the columns each expectation reads, and the delivery
    suite; compiled once per process per contract content.

    GX's pandas engine copies every column of the batch for each expectation's domain, so on a
    large chunk one batch per column (plus row id) is about 2.5 times faster than one wide
    batch, with the same expectations and results."""
    key = contract.model_dump_json()
    with _GX_LOCK:
        return _compiled_suites(key, contract)


def _compiled_suites(
    key: str, contract: DepartmentContract
) -> tuple[gx.ExpectationSuite, ColumnSuites, gx.ExpectationSuite]:
    if key not in _SUITES:
        context, _ = _batch_definition()
        whole = _register(context, compile_suite(contract))
        groups: dict[tuple[str, ...], list] = {}
        for expectation in _row_expectations(contract):
            groups.setdefault(_expectation_columns(expectation), []).append(expectation)
        column_suites = []
        for columns, expectations in groups.items():
            suite = gx.ExpectationSuite(
                name=f"{contract.department}.rows.{contract.version}.{'+'.join(columns)}"
            )
            for expectation in expectations:
                suite.add_expectation(expectation)
            column_suites.append((columns, _register(context, suite)))
        delivery = _register(context, compile_delivery_suite(contract))
        _SUITES[key] = (whole, column_suites, delivery)
    return _SUITES[key]


def _run(suite: gx.ExpectationSuite, frame) -> list:
    with _GX_LOCK:
        _, batch_definition = _batch_definition()
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        return batch.validate(suite, result_format=RESULT_FORMAT).results


def _row_ids(result) -> list[int]:
    ids: list[int] = []
    for item in result.result.get("unexpected_index_list") or []:
        value = item[ROW_ID] if isinstance(item, dict) else item
        if isinstance(value, list | tuple):
            ids.extend(int(v) for v in value)
        else:
            ids.append(int(value))
    return ids


# --- one chunk -------------------------------------------------------------------------------


def _with_checks(
    typed: pl.DataFrame, contract: DepartmentContract, extract_date: date | None = None
) -> pl.DataFrame:
    # Null (missing or misshapen: the pattern rule speaks for those) reads as passing. GX skips
    # nulls in these rules anyway, and without nulls pandas keeps the column as numpy bools
    # rather than Python objects, which GX checks several times faster.
    checks = []
    for c in contract.columns:
        values = typed.get_column(c.name)
        if c.check_digit == "nhs_mod11":
            checks.append(ingest.nhs_mod11_valid(values).alias(check_column(c.name, c.check_digit)))
        if c.issuance_rule == "hmrc_ni_prefix":
            valid = ingest.ni_prefix_valid(values)
            checks.append(valid.alias(check_column(c.name, c.issuance_rule)))
        if c.plausible_range is not None:
            checks.append(
                ingest.plausible_dates(values, c, extract_date or date.today())
                .alias(check_column(c.name, PLAUSIBLE))
            )
    checks = [check.fill_null(True) for check in checks]
    return typed.with_columns(checks) if checks else typed


def _set_only_columns(contract: DepartmentContract) -> list[str]:
    """Text columns whose only value rules are required and allowed values: GX's `isin` and
    `isna` give the same answers on a pandas Categorical, at a fraction of the cost."""
    return [
        c.name for c in contract.columns
        if c.logical_type == "string" and c.allowed_values is not None and not c.unique
        and c.pattern is None and c.minimum is None and c.maximum is None
        and c.check_digit is None and c.issuance_rule is None
        and all(c.name not in (r.column, r.other) for r in contract.cross_field_rules)
    ]


def to_gx_frame(
    typed: pl.DataFrame, contract: DepartmentContract, extract_date: date | None = None
):
    """The pandas frame GX validates: typed rows with `_row_id` and derived check columns.

    Via Arrow, so pandas keeps strings in Arrow storage and GX's regexes run in Arrow. Arrow
    dictionary-encodes the allowed-value columns (a per-frame dictionary: Polars' Categorical
    would add every stray value to a process-wide one)."""
    import pyarrow.compute as pc

    table = _with_checks(typed, contract, extract_date).rename({ROW_NUMBER: ROW_ID}).to_arrow()
    for name in _set_only_columns(contract):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pc.dictionary_encode(table.column(index)))
    return table.to_pandas(date_as_object=False)


def validate_gx_frame(frame, contract: DepartmentContract, file_name: str) -> pl.DataFrame:
    """Run the row suite on a frame from `to_gx_frame`; breaches as (row_number, rule, column)."""
    if len(frame) == 0:
        return pl.DataFrame(schema=BREACH_SCHEMA)
    whole, column_suites, _ = _suites(contract)
    breaches: list[pl.DataFrame] = []
    if len(frame) < NARROW_BATCHES_FROM_ROWS:
        results = _run(whole, frame)
    else:
        results = [
            result
            for columns, suite in column_suites
            for result in _run(suite, frame[[ROW_ID, *columns]])
        ]
    for result in results:
        meta = result.expectation_config.meta or {}
        rule, column = meta.get("rule", "unknown"), meta.get("column", "unknown")
        if result.exception_info and result.exception_info.get("raised_exception"):
            raise RuntimeError(f"GX could not evaluate rule '{rule}' on column '{column}'")
        if result.success:
            continue
        if rule == "type":
            raise reject(file_name, "type_not_coercible", f"column '{column}' is not typed")
        ids = _row_ids(result)
        breaches.append(
            pl.DataFrame({ROW_NUMBER: ids}, schema={ROW_NUMBER: pl.Int64}).with_columns(
                rule=pl.lit(rule), column=pl.lit(column)
            )
        )
    if not breaches:
        return pl.DataFrame(schema=BREACH_SCHEMA)
    return pl.concat(breaches)


def validate_delivery_summary(contract: DepartmentContract, file_name: str, summary: dict):
    """Run the delivery suite on the one-row summary; raise the first failure found."""
    import pandas as pd

    _, _, delivery_suite = _suites(contract)
    problems = []
    for result in _run(delivery_suite, pd.DataFrame([summary])):
        if result.success:
            continue
        rule = (result.expectation_config.meta or {}).get("rule", "unknown")
        problems.append(rule)
    if not problems:
        return
    rule = problems[0]
    exc = reject(file_name, rule, rejection_detail(contract, summary, problems))
    exc.rows_received = summary["rows_received"]  # type: ignore[attr-defined]
    raise exc


# --- one delivery ----------------------------------------------------------------------------


def _validate(
    source: Source, contract: DepartmentContract, extract_date: date, chunk_rows: int,
    accepted: AcceptedRows,
) -> DeliveryRows:
    name = source.name
    extract = ingest.open_extract(source, contract, chunk_rows)
    conformance = ingest.conform_header(extract.header, contract, name)
    tally = Tally(source, contract, conformance, chunk_rows, accepted)
    gx_frame = functools.partial(to_gx_frame, extract_date=extract_date)
    for chunk in prepared_chunks(extract, contract, conformance, name, gx_frame):
        rule_breaches = (
            validate_gx_frame(chunk.gx_frame, contract, name)
            if chunk.gx_frame is not None else pl.DataFrame(schema=BREACH_SCHEMA)
        )
        chunk.gx_frame = None  # free the pandas copy before the next chunk arrives
        tally.add(chunk, rule_breaches)
        del chunk
    return tally.finish()


def _inspect(
    source: Source, contract: DepartmentContract, today: date, extract_date: date,
    registry: DeliveryRegistry | None, chunk_rows: int, accepted: AcceptedRows,
) -> tuple[DeliveryRows, dict]:
    fingerprint = source.fingerprint
    if registry is not None:
        previous = registry.find(fingerprint)
        if previous is not None and registry.is_processed(fingerprint, contract.version):
            raise reject(
                source.name, "already_processed",
                f"delivery {fingerprint[:16]} was already processed "
                f"({previous.status}, {previous.processed_at:%Y-%m-%d %H:%M})",
            )
    result = _validate(source, contract, extract_date, chunk_rows, accepted)
    summary = delivery_summary(result, today, extract_date)
    try:
        validate_delivery_summary(contract, source.name, summary)
    except DeliveryRejected as exc:
        exc.rows_received = result.rows_received  # type: ignore[attr-defined]
        raise
    return result, summary


def inspect_delivery(
    path: Path,
    contract: DepartmentContract,
    today: date,
    *,
    registry: DeliveryRegistry | None = None,
    chunk_rows: int = ingest.DEFAULT_CHUNK_ROWS,
    landing: Path | None = None,
    accepted_to: AcceptedTo | None = None,
) -> tuple[Received, pl.DataFrame]:
    """Read, conform and validate one delivery without writing anything (but what
    `accepted_to` writes).

    Returns the result (its outcome `rejected` for a file-level failure) and the quarantine
    rows (row_number, rule, column and the raw row as text). The file is opened once
    (`source.open_source`; inside `landing` if given) and fingerprinted and read through that
    one descriptor. Any failure while reading it, a native library's panic included, becomes
    this delivery's rejection (`processing_failed`), never the run's end.

    Accepted rows are returned as one frame, or, given `accepted_to`, handed to what it opens
    chunk by chunk as they pass, so that no more than a chunk or two of the file is held.
    """
    path = Path(path)
    name = printable(path.name)
    base = {
        "delivery_id": "0" * 64,  # until the file is open: nothing was read
        "department": contract.department,
        "file_name": name,
        "contract_id": contract.contract_id,
        "contract_version": contract.version,
        "extract_date": ingest.date_in_name(path.name) or today,
    }
    collected = Collected() if accepted_to is None else None
    try:
        with open_source(
            path, landing=landing, max_line_bytes=contract.limits.max_line_bytes
        ) as source:
            extract_date = source.extract_date(ingest.date_in_name)
            base.update(delivery_id=source.fingerprint, extract_date=extract_date)
            destination = (
                nullcontext(collected) if accepted_to is None
                else accepted_to(source.fingerprint, extract_date)
            )
            with destination as accepted:
                result, summary = _inspect(
                    source, contract, today, extract_date, registry, chunk_rows, accepted
                )
    except DeliveryRejected as exc:
        outcome = rejected_outcome(base, exc)
        return Received(_kept(collected, contract, None), outcome), _NO_BREACHES
    except CONTAINED as exc:  # noqa: BLE001 - one delivery's failure must not stop the run
        outcome = rejected_outcome(base, failure(name, "ingest", exc))
        return Received(_kept(collected, contract, None), outcome), _NO_BREACHES
    quarantine = quarantine_rows(result)
    outcome = accepted_outcome(base, result, summary["rows_quarantined"])
    return Received(_kept(collected, contract, outcome), outcome), quarantine


_NO_BREACHES = pl.DataFrame(schema=BREACH_SCHEMA)


def _kept(
    collected: Collected | None, contract: DepartmentContract, accepted: DeliveryOutcome | None
) -> pl.DataFrame | None:
    """The accepted rows, if they were kept here (in file order): none of a rejected delivery."""
    if collected is None:
        return None
    return collected.frame(contract) if accepted is not None else empty_typed(contract)


def receive_delivery(
    path: Path,
    contract: DepartmentContract,
    root: Path,
    today: date,
    *,
    registry: DeliveryRegistry | None = None,
    chunk_rows: int = ingest.DEFAULT_CHUNK_ROWS,
    landing: Path | None = None,
    accepted_to: AcceptedTo | None = None,
) -> Received:
    """Read, conform and validate one delivery; quarantine failing rows; return accepted rows
    (or hand them to `accepted_to` as they pass, as `inspect_delivery` says).

    Raises DeliveryRejected (one line: file, rule, column, count) for a file-level failure; the
    exception carries the rejected outcome as `.outcome` so the caller can record it. Pass a
    registry to reject a delivery already processed. Writes only the quarantine file, atomically
    and idempotently (same name for the same file), so a re-run after a crash resumes cleanly.
    """
    received, quarantine = inspect_delivery(
        path, contract, today, registry=registry, chunk_rows=chunk_rows, landing=landing,
        accepted_to=accepted_to,
    )
    outcome = received.outcome
    if outcome.status == "rejected":
        exc = DeliveryRejected(outcome.rejection)
        exc.outcome = outcome  # type: ignore[attr-defined]
        exc.rule = outcome.rejection_rule  # type: ignore[attr-defined]
        raise exc
    if quarantine.height:
        target = quarantine_path(root, contract.department, outcome.delivery_id)
        write_quarantine(quarantine, target, outcome)
        outcome = outcome.model_copy(update={"quarantine_file": str(target.relative_to(root))})
        received = Received(received.frame, outcome)
    return received
