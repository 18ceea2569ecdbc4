"""From linked departmental records to one row per resident: the population the anonymiser sees.

A resident seen by several departments may carry different quasi-identifier values in each
(a typo in a date of birth, a house move). We take each value from the department that records
it most reliably, in the order of `SOURCE_PRIORITY`, so the choice is explainable to an IG officer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import polars as pl

# Departments whose identity data is checked against documents come first: benefits claims and
# social care assessments verify date of birth; council tax often does not record it at all.
SOURCE_PRIORITY = ("benefits", "adult_social_care", "childrens_services", "housing", "council_tax")

SEX_UNKNOWN = "U"
ETHNICITY_NOT_STATED = "NS"
# Age is a category here ("37" or "unknown"): council tax rarely records a date of birth, and
# dropping everyone known only to council tax would bias every cohort. The age hierarchy
# declares the same label.
AGE_UNKNOWN = "unknown"


@dataclass(frozen=True)
class PopulationCounts:
    records: int
    people: int
    households: int
    people_incomplete: int  # no usable area (postcode outside the borough): in no cohort

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def build_population(linked: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, PopulationCounts]:
    """Collapse linked records to residents.

    Returns (population, incomplete, counts): `population` has one row per resident with
    person_key, household_key, age (text: whole years or "unknown"), sex, ethnicity, lsoa,
    departments (sorted list) and household_departments; `incomplete` lists the person keys
    with no area.
    """
    priority = {dept: i for i, dept in enumerate(SOURCE_PRIORITY)}
    ranked = linked.with_columns(
        pl.col("department").replace_strict(priority, default=len(priority)).alias("_rank")
    ).sort("_rank", "row_number")
    people = ranked.group_by("person_key", maintain_order=True).agg(
        pl.col("household_key").drop_nulls().first(),
        pl.col("age").drop_nulls().first().cast(pl.String).fill_null(AGE_UNKNOWN),
        pl.col("sex").drop_nulls().first().fill_null(SEX_UNKNOWN),
        pl.col("ethnicity").drop_nulls().first().fill_null(ETHNICITY_NOT_STATED),
        pl.col("lsoa").drop_nulls().first(),
        pl.col("department").unique().sort().alias("departments"),
    )
    household_departments = (
        people.filter(pl.col("household_key").is_not_null())
        .explode("departments")
        .group_by("household_key")
        .agg(pl.col("departments").n_unique().cast(pl.Int64).alias("household_departments"))
    )
    people = people.join(household_departments, on="household_key", how="left").sort("person_key")
    complete = pl.col("lsoa").is_not_null()
    population = people.filter(complete)
    incomplete = people.filter(~complete).select("person_key")
    counts = PopulationCounts(
        records=linked.height,
        people=people.height,
        households=people.get_column("household_key").drop_nulls().n_unique(),
        people_incomplete=incomplete.height,
    )
    return population, incomplete, counts
