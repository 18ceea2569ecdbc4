"""Cohort table definitions (`data_contracts/cohorts.yaml`) and derived indicators
(`data_contracts/indicators.yaml`), as declared for analysts and IG officers.

A cohort table counts units (residents or households) of the linked population, optionally
filtered (`where`, a SQL expression over population columns), by dimensions. A dimension takes a
population column as it is, or generalised to a level of its hierarchy (`level`), or banded
(`bands`, for whole numbers such as how many indicators a resident has), or expanded from a
list column so a unit is counted once per member (`expand: each`, a resident known to two
departments counts once in each) or once per pair of members (`expand: pair`, two dimensions
over the same list: the department-by-department overlap matrix, each pair once, a <= b).
Definitions are validated against the population's columns before any data is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.policy import load_yaml_model

NAME = r"^[a-z][a-z0-9_]*$"


class Dimension(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME, description="published column name")
    source: str = Field(pattern=NAME, description="population column it is taken from")
    description: str = ""
    level: int | None = Field(default=None, ge=0, description="hierarchy level of `source`")
    # Band labels for a whole-number column: "3" holds exactly 3, "3+" holds 3 and more.
    bands: tuple[str, ...] | None = None
    expand: Literal["each", "pair"] | None = None
    # Publish only these values of the dimension (for example two departments of a list):
    # the table counts nothing else.
    only: tuple[str, ...] | None = None
    # A sensitive dimension (an indicator, a care status): within every group of the other
    # dimensions, all or none of the units sharing one value is attribute disclosure.
    sensitive: bool = False

    @model_validator(mode="after")
    def _one_transformation(self) -> Dimension:
        chosen = [x for x in (self.level, self.bands, self.expand) if x is not None]
        if len(chosen) > 1:
            raise ValueError("a dimension takes at most one of level, bands, expand")
        if self.bands is not None:
            band_lower_bounds(self.bands)  # raises on a malformed band
        return self


def band_lower_bounds(bands: tuple[str, ...]) -> list[tuple[int, bool]]:
    """`("0", "1", "2", "3+")` -> [(0, False), (1, False), (2, False), (3, True)]."""
    bounds = []
    for label in bands:
        open_ended = label.endswith("+")
        number = label.removesuffix("+")
        if not number.isdigit():
            raise ValueError(f"band '{label}' is not a whole number or 'N+'")
        bounds.append((int(number), open_ended))
    if [b for b, _ in bounds] != sorted({b for b, _ in bounds}):
        raise ValueError("bands must increase")
    if any(open_ended for _, open_ended in bounds[:-1]):
        raise ValueError("only the last band may be open-ended ('N+')")
    return bounds


class Measure(BaseModel):
    """A magnitude published beside a table's count: the sum or the median of a numeric person
    attribute over the cell's units (docs: README, "Magnitude tables"). Units with no value of
    the attribute add nothing to a sum and are left out of a median."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["sum", "median"]
    attribute: str = Field(pattern=NAME, description="a numeric population column")
    # Published column name; defaults to <attribute>_<kind>, e.g. weekly_amount_sum.
    name: str | None = Field(default=None, pattern=NAME)
    unit: str = Field(description="what one of the measure counts, e.g. 'pounds per week'")
    description: str = ""

    @property
    def column(self) -> str:
        return self.name or f"{self.attribute}_{self.kind}"


class CohortTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^cohort_[a-z0-9_]+$")
    title: str
    description: str
    # The question the table helps answer: a table nobody needs is a risk with no benefit.
    question: str
    unit: Literal["people", "households"]
    where: str | None = None
    dimensions: tuple[Dimension, ...] = Field(min_length=1)
    # Optional: a sum or median published beside the count, with magnitude-cell checks.
    measure: Measure | None = None

    @property
    def dimension_names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    @model_validator(mode="after")
    def _consistent(self) -> CohortTable:
        names = self.dimension_names
        if len(set(names)) != len(names) or self.unit in names:
            raise ValueError("dimension names must be unique and differ from the unit")
        pairs = [d for d in self.dimensions if d.expand == "pair"]
        if pairs and (len(pairs) != 2 or pairs[0].source != pairs[1].source):
            raise ValueError("expand: pair needs exactly two dimensions over the same list")
        if self.measure is not None and self.measure.column in {*names, self.unit, "withheld"}:
            raise ValueError("the measure's column name must differ from the other columns")
        return self


class CohortDefinitions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tables: tuple[CohortTable, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> CohortDefinitions:
        names = [t.name for t in self.tables]
        if len(set(names)) != len(names):
            raise ValueError("table names must be unique")
        return self


class Indicator(BaseModel):
    """A yes/no fact about a resident, derived from one department's records.

    `rule` is a SQL expression over that department's cohort attributes, evaluated on each of
    the resident's records there; the resident has the indicator when any record satisfies it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME)
    department: str
    description: str
    rule: str


class IndicatorDefinitions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    indicators: tuple[Indicator, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> IndicatorDefinitions:
        names = [i.name for i in self.indicators]
        if len(set(names)) != len(names):
            raise ValueError("indicator names must be unique")
        return self


def load_cohorts(path: Path) -> CohortDefinitions:
    return load_yaml_model(path, CohortDefinitions)  # type: ignore[return-value]


def load_indicators(path: Path) -> IndicatorDefinitions:
    return load_yaml_model(path, IndicatorDefinitions)  # type: ignore[return-value]
