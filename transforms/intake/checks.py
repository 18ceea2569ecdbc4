"""A delivery as a whole: the summary its delivery-level rules are checked on, the wording of a
rejection, and the outcome recorded for it.

The delivery suite itself (row-count bounds, freshness, quarantine limit) is GX and lives in
`validate`; this module builds what it reads and says what its failures mean, in Polars and
plain Python. Counts and rule names only: no cell value reaches a message.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl

from schemas.contract import DepartmentContract
from schemas.delivery import DeliveryOutcome
from schemas.errors import DeliveryRejected
from transforms.intake.chunks import DeliveryRows
from transforms.intake.common import ROW_NUMBER, reject

# What one delivery's failure can raise and must be contained to that delivery: any exception,
# and a Rust panic in Polars, which Python sees as a BaseException (pyo3's PanicException).
CONTAINED: tuple[type[BaseException], ...] = (Exception, pl.exceptions.PanicException)


def breach_text(breaches: pl.DataFrame, limit: int = 5) -> str:
    """The commonest (rule, column) breaches, for a quarantine-limit rejection."""
    counts = (
        breaches.unique([ROW_NUMBER, "rule", "column"])
        .group_by("rule", "column")
        .len()
        .sort(["len", "rule", "column"], descending=[True, False, False])
    )
    parts = [f"{r['rule']} on '{r['column']}' x{r['len']}" for r in counts.head(limit).to_dicts()]
    more = counts.height - limit
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def counts_by(breaches: pl.DataFrame, by: list[str]) -> dict[str, int]:
    """Rows breaching, by rule (or rule and column): a row counts once per key."""
    grouped = breaches.unique([ROW_NUMBER, *by]).group_by(by).len().sort(by)
    return {":".join(str(v) for v in row[:-1]): int(row[-1]) for row in grouped.iter_rows()}


def delivery_summary(result: DeliveryRows, today: date, extract_date: date) -> dict[str, Any]:
    """The one-row summary the delivery suite checks (plus what its messages quote)."""
    rows_quarantined = result.breaches[ROW_NUMBER].n_unique()
    return {
        "rows_received": result.rows_received,
        "extract_age_days": (today - extract_date).days,
        "quarantined_share": rows_quarantined / max(result.rows_received, 1),
        "rows_quarantined": rows_quarantined,
        "breach_text": breach_text(result.breaches) if rows_quarantined else "",
    }


def rejection_detail(contract: DepartmentContract, summary: dict, problems: list[str]) -> str:
    """What the failed delivery-level rules found, against what the contract allows."""
    details = {
        "row_count": (
            f"{summary['rows_received']} rows, contract allows "
            f"{contract.row_count_min} to {contract.row_count_max or 'any'}"
        ),
        "freshness": (
            f"extract dated {abs(summary['extract_age_days'])} day(s) "
            f"{'before' if summary['extract_age_days'] >= 0 else 'after'} today, contract allows "
            f"0 to {contract.max_latency_days} day(s) before"
        ),
        "quarantine_limit": (
            f"{summary['rows_quarantined']} of {summary['rows_received']} rows quarantined "
            f"({summary['quarantined_share']:.1%}), contract allows "
            f"{contract.quarantine_limit:.1%}; {summary['breach_text']}"
        ),
    }
    return "; ".join(details[p] for p in problems)


def failure(file_name: str, stage: str, exc: BaseException) -> DeliveryRejected:
    """A rejection for an unforeseen failure of one delivery at `stage`, by type only: library
    messages can quote the values that broke them."""
    return reject(
        file_name, "processing_failed",
        f"{stage} failed with {type(exc).__name__} (details withheld; the other deliveries "
        "carry on)",
    )


def rejected_outcome(base: dict[str, Any], exc: DeliveryRejected) -> DeliveryOutcome:
    """A rejected delivery: every row it was read to have is counted as quarantined."""
    received = getattr(exc, "rows_received", 0)
    rule = exc.rule or "rejected"
    return DeliveryOutcome(
        **base, status="rejected", rows_received=received, rows_accepted=0,
        rows_quarantined=received, quarantine_by_rule={rule: received} if received else {},
        rejection=str(exc), rejection_rule=rule,
    )


def accepted_outcome(
    base: dict[str, Any], result: DeliveryRows, rows_quarantined: int
) -> DeliveryOutcome:
    conformance = result.conformance
    return DeliveryOutcome(
        **base,
        status="accepted",
        rows_received=result.rows_received,
        rows_accepted=result.rows_accepted,
        rows_quarantined=rows_quarantined,
        quarantine_by_rule=counts_by(result.breaches, ["rule"]),
        quarantine_by_column=counts_by(result.breaches, ["rule", "column"]),
        dropped_columns=conformance.dropped,
        renamed_columns=conformance.renamed,
        missing_optional_columns=conformance.missing_optional,
        neutralised_cells=result.neutralised,
    )


def quarantine_rows(result: DeliveryRows) -> pl.DataFrame:
    """One row per (row_number, rule, column) breach, with the raw row as text."""
    quarantine = result.breaches.unique([ROW_NUMBER, "rule", "column"]).sort(
        [ROW_NUMBER, "rule", "column"]
    )
    if quarantine.height:
        quarantine = quarantine.join(result.quarantined_raw, on=ROW_NUMBER, how="left")
    return quarantine
