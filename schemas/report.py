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
    population: dict[str, Any]
    anonymisation: dict[str, Any]
    tables: list[dict[str, Any]]
    accounting: dict[str, Any]
    checks: dict[str, Any]
    limitations: list[str]
    # Each contracted department's newest extract by arrival: date, age, fresh/stale/missing.
    freshness: list[dict[str, Any]] = []
    approval: dict[str, Any] | None = None
