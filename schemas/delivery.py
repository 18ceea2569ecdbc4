"""What happened to one delivery: the record kept in the delivery registry and shown in reports.

Counts, names and fingerprints only: never a cell value. The accounting identity
`rows_received == rows_accepted + rows_quarantined` holds for every outcome; a rejected delivery
is held back as a whole, so all of its rows count as quarantined under its rejection rule.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DeliveryStatus = Literal["accepted", "rejected"]


class DeliveryOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    delivery_id: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the file")
    department: str
    file_name: str
    contract_id: str
    contract_version: str
    extract_date: date
    status: DeliveryStatus
    rows_received: int = Field(ge=0)
    rows_accepted: int = Field(ge=0)
    rows_quarantined: int = Field(ge=0)
    # Rows breaking each rule; a row breaking two rules counts under both.
    quarantine_by_rule: dict[str, int] = Field(default_factory=dict)
    # "rule:column" -> rows, for the data owner's fix list.
    quarantine_by_column: dict[str, int] = Field(default_factory=dict)
    dropped_columns: tuple[str, ...] = ()
    renamed_columns: dict[str, str] = Field(default_factory=dict)
    missing_optional_columns: tuple[str, ...] = ()
    neutralised_cells: int = 0
    rejection: str | None = None
    rejection_rule: str | None = None
    quarantine_file: str | None = None
    processed_at: datetime = Field(default_factory=lambda: datetime.now().astimezone())

    @property
    def short_id(self) -> str:
        return self.delivery_id[:16]

    @model_validator(mode="after")
    def _accounts_for_every_row(self) -> DeliveryOutcome:
        if self.rows_received != self.rows_accepted + self.rows_quarantined:
            raise ValueError("rows_received must equal rows_accepted + rows_quarantined")
        if (self.status == "rejected") != (self.rejection is not None):
            raise ValueError("a rejected delivery, and only one, carries a rejection")
        if self.status == "rejected" and self.rows_accepted:
            raise ValueError("a rejected delivery accepts no rows")
        return self
