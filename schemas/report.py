"""What an anonymisation report contains. Counts, names, levels and ids only: never a value."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class DeliverySummary(BaseModel):
    model_config = ConfigDict(extra="allow")

    department: str
    file_name: str
    delivery_id: str
    contract_version: str
    status: str
    rows_received: int
    rows_accepted: int
    rows_quarantined: int


class ReleaseReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    release_id: str
    created_at: str
    status: str  # "awaiting approval", "approved", "rejected"
    key_id: str
    demo: bool
    policy: dict[str, Any]
    contracts: dict[str, str]  # department -> contract id and version
    deliveries: list[DeliverySummary]
    pseudonymisation: dict[str, Any]
    linkage: dict[str, Any]
    # Opt-out register: objections received, matched, applied; records removed (counts only).
    opt_out: dict[str, Any] | None = None
    # The residents' transparency notice: its declared content and measured readability.
    transparency: dict[str, Any] | None = None
    population: dict[str, Any]
    anonymisation: dict[str, Any]
    tables: list[dict[str, Any]]
    # How the release was protected as a whole: audit rounds, cells withheld beyond each
    # table's own protection, and the differencing audit's figures.
    protection: dict[str, Any] = {}
    # Who is hidden: {table: {"unit", "dimensions": {dimension: {value: {units, hidden}}}}}
    hidden: dict[str, Any] = {}
    # Per group of interest (department, ethnic group, age band, indicator): for each value,
    # the largest share hidden in any table where it is a dimension, and that table.
    worst_hidden: dict[str, Any] = {}
    accounting: dict[str, Any]
    checks: dict[str, Any]
    limitations: list[str]
    approval: dict[str, Any] | None = None
    # Files and folders in landing/ the run did not read, escaped, with why: {path, reason}.
    not_ingested: list[dict[str, str]] = []
