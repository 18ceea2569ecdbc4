"""How current each department's data is: its newest delivery by arrival, that delivery's extract
date, and whether it is overdue under the department's contract.

"Newest" means the delivery that arrived last (the registry's order), never the latest extract
date or file name: a corrected file sent the same day must replace the one before it, and a
department that re-sends an older extract means it. A department is *stale* when its newest
extract is older than its delivery interval (ODCS slaProperties `frequency`) plus its latency
(`latency`): the next delivery is overdue. It is *missing* when nothing of it was ever accepted.
Counts, dates and names only: no row is read here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any, Literal

from schemas.contract import FREQUENCY_DAYS, DepartmentContract
from schemas.delivery import DeliveryOutcome

FreshnessStatus = Literal["fresh", "stale", "missing"]


@dataclass(frozen=True)
class DepartmentFreshness:
    department: str
    status: FreshnessStatus
    extract_date: date | None = None
    age_days: int | None = None
    allowed_days: int | None = None  # frequency + latency; None: the contract sets no limit
    frequency: str | None = None
    file_name: str | None = None
    delivery_id: str | None = None

    def describe(self) -> str:
        if self.status == "missing":
            return f"{self.department}: no accepted delivery"
        limit = f" (allowed {self.allowed_days})" if self.allowed_days is not None else ""
        return (
            f"{self.department}: newest extract {self.extract_date} ({self.file_name}), "
            f"{self.age_days} day(s) old{limit}: {self.status}"
        )

    def overdue_extract(self) -> date | None:
        """The date of the extract that is overdue: the one `frequency` after the newest (the
        newest itself when the contract sets only a latency). None unless stale."""
        if self.status != "stale" or self.extract_date is None:
            return None
        return self.extract_date + timedelta(days=FREQUENCY_DAYS.get(self.frequency or "", 0))

    def due_by(self) -> date | None:
        """The last day the overdue extract could arrive on time. None unless stale."""
        if self.status != "stale" or self.extract_date is None or self.allowed_days is None:
            return None
        return self.extract_date + timedelta(days=self.allowed_days)

    def lateness(self) -> str:
        """One line for an alert: department and dates, never a value. '' when fresh."""
        if self.status == "missing":
            return f"{self.department}: no accepted delivery yet"
        if self.status != "stale":
            return ""
        return (
            f"{self.department}: extract of {self.overdue_extract()} overdue since "
            f"{self.due_by()} (newest {self.extract_date}, {self.age_days} day(s) old, "
            f"allowed {self.allowed_days})"
        )

    def to_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["extract_date"] = self.extract_date.isoformat() if self.extract_date else None
        return found


def latest_by_arrival(outcomes: Iterable[DeliveryOutcome]) -> dict[str, DeliveryOutcome]:
    """Each department's accepted delivery that arrived last; `outcomes` oldest first, as the
    registry keeps them."""
    latest: dict[str, DeliveryOutcome] = {}
    for outcome in outcomes:
        if outcome.status == "accepted":
            latest[outcome.department] = outcome
    return latest


def allowed_age_days(contract: DepartmentContract) -> int | None:
    """How old a department's newest extract may be before the next one is overdue."""
    if contract.frequency is None and contract.max_latency_days is None:
        return None
    interval = FREQUENCY_DAYS[contract.frequency] if contract.frequency else 0
    return interval + (contract.max_latency_days or 0)


def assess_freshness(
    contracts: Mapping[str, DepartmentContract],
    latest: Mapping[str, DeliveryOutcome],
    today: date,
) -> list[DepartmentFreshness]:
    """One verdict per contracted department, in department order."""
    found = []
    for department, contract in sorted(contracts.items()):
        outcome = latest.get(department)
        if outcome is None:
            found.append(
                DepartmentFreshness(department, "missing", frequency=contract.frequency)
            )
            continue
        age = (today - outcome.extract_date).days
        allowed = allowed_age_days(contract)
        status: FreshnessStatus = "stale" if allowed is not None and age > allowed else "fresh"
        found.append(
            DepartmentFreshness(
                department,
                status,
                extract_date=outcome.extract_date,
                age_days=age,
                allowed_days=allowed,
                frequency=contract.frequency,
                file_name=outcome.file_name,
                delivery_id=outcome.delivery_id,
            )
        )
    return found
