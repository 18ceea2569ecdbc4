"""What an anonymisation report contains. Counts, names, levels and ids only: never a value.

The report is read by an information governance (IG) officer, not a statistician: besides the
counts each stage produced, it carries the declared purpose of the release
(`data_contracts/release_purpose.yaml`), the privacy role and treatment of every variable, the
generalisation levels in words, and the software that made it. Fields added by later stages are
optional so that older reports still load; the HTML renders any field it does not know as a
plain table, so a new section needs no template change.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.policy import load_yaml_model

PURPOSE_FILE = "release_purpose.yaml"


class DataSharingAgreement(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reference: str = Field(min_length=1)
    title: str = Field(min_length=1)
    parties: tuple[str, ...] = ()
    valid_until: date | None = None


class ReleasePurpose(BaseModel):
    """Why the council releases these cohorts and under what authority (first page of the
    report). Declared by the data controller in `data_contracts/release_purpose.yaml`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str = Field(min_length=1, description="what is being released, in one line")
    purpose: str = Field(min_length=1, description="why, in plain words")
    controller: str = Field(min_length=1)
    lawful_basis: str = Field(min_length=1, description="UK GDPR Article 6 basis")
    special_category_condition: str | None = Field(
        default=None, description="UK GDPR Article 9 condition, when special category data"
    )
    data_sharing_agreement: DataSharingAgreement
    dpia_reference: str | None = None
    audience: str = Field(min_length=1, description="who may use the published cohorts")
    contact: str = Field(min_length=1, description="whom to ask about this release")


def load_purpose(path: Path) -> ReleasePurpose:
    """Read and check the release purpose; every problem is reported at once."""
    return load_yaml_model(path, ReleasePurpose)  # type: ignore[return-value]


class VariableTreatment(BaseModel):
    """One column of one department's contract: what it is and what the pipeline does to it."""

    model_config = ConfigDict(extra="allow")

    department: str
    column: str
    description: str
    privacy_role: str
    treatment: str
    identifier_type: str | None = None


class DeliverySummary(BaseModel):
    model_config = ConfigDict(extra="allow")

    department: str
    file_name: str
    delivery_id: str
    contract_version: str
    extract_date: str | None = None
    quarantine_by_rule: dict[str, int] = {}
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
    # For the IG officer (transforms/release/report.py, describe_release): the declared purpose
    # (None when release_purpose.yaml is missing: the report then says so on its first page),
    # every variable's role and treatment, each quasi-identifier's hierarchy levels in words
    # (index = level), table titles and dimensions in words from cohorts.yaml, software
    # versions and git commit.
    purpose: ReleasePurpose | None = None
    variables: list[VariableTreatment] = []
    level_words: dict[str, list[str]] = {}
    table_titles: dict[str, str] = {}
    table_dimensions: dict[str, list[dict[str, Any]]] = {}  # table -> [{name, words}]
    software: dict[str, Any] = {}
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
    # Sums and medians: the rules in plain words, per table the cells withheld by each rule
    # (counts of cells only), and the independent checks' figures.
    magnitude: dict[str, Any] = {}
    accounting: dict[str, Any]
    checks: dict[str, Any]
    limitations: list[str]
    # Each contracted department's newest extract by arrival: date, age, fresh/stale/missing.
    freshness: list[dict[str, Any]] = []
    # The final decision (approved or rejected), and every decision recorded in order (one or
    # two approvals, a rejection, a withdrawal), each with its OS user and host.
    approval: dict[str, Any] | None = None
    # Files and folders in landing/ the run did not read, escaped, with why: {path, reason}.
    not_ingested: list[dict[str, str]] = []
    decisions: list[dict[str, Any]] = []
    # Who ran the build (OS user, uid, host): an approver must be someone else.
    built_by: dict[str, Any] | None = None
    approvers_required: int = 1
    outputs: list[OutputFile] = []
