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


class OutputFile(BaseModel):
    """One staged file, bound to the decision by its full sha256 (path relative to the
    release folder)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    sha256: str
    bytes: int


class ReleaseReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    release_id: str
    created_at: str
    status: str  # "awaiting approval", "awaiting second approval", "approved", "rejected",
    # "withdrawn"
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
    # The final decision (approved or rejected), and every decision recorded in order (one or
    # two approvals, a rejection, a withdrawal), each with its OS user and host.
    approval: dict[str, Any] | None = None
    decisions: list[dict[str, Any]] = []
    # Who ran the build (OS user, uid, host): an approver must be someone else.
    built_by: dict[str, Any] | None = None
    approvers_required: int = 1
    outputs: list[OutputFile] = []
