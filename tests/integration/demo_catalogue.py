"""A demo-sized published catalogue made quickly: a seeded population of generalised residents,
counted into the tables `data_contracts/cohorts.yaml` declares, staged and published with the
real catalogue code (no Prefect run, so tests that only need a catalogue stay fast).

The tables have the shape staged cohort tables have: dimension columns, the count named by its
unit (NULL where withheld) and `withheld`. Cells below the policy's minimum published count are
withheld and the rest rounded; the disclosure code's own tests cover how cells are protected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from schemas.policy import load_policy
from transforms.release import catalogue
from transforms.release.catalogue_docs import table_definitions

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "data_contracts"
DEPARTMENTS = ("adult_social_care", "benefits", "childrens_services", "council_tax", "housing")
AGE_BANDS = ("0-19", "20-39", "40-59", "60-79", "80-99", "unknown")
ETHNIC_GROUPS = ("Asian", "Black", "Mixed", "White", "Other", "Not stated")
APPROVAL = {
    "decision": "approved",
    "name": "A. Officer",
    "role": "IG lead",
    "decided_at": "2026-11-21T09:30:00+00:00",
    "conditions": "",
}


def population(residents: int = 4000, seed: int = 7) -> pl.DataFrame:
    """Residents at the levels a demo run publishes: wards, 20-year bands, high-level groups."""
    rng = np.random.default_rng(seed)
    wards = [f"E05999{n:03d}" for n in range(1, 17)]
    departments = [
        sorted(rng.choice(DEPARTMENTS, size=rng.integers(1, 4), replace=False).tolist())
        for _ in range(residents)
    ]
    frame = pl.DataFrame(
        {
            "person_key": [f"p{i}" for i in range(residents)],
            "household_key": [f"h{h}" for h in rng.integers(0, residents // 2, residents)],
            "age": rng.choice(AGE_BANDS, residents, p=[0.2, 0.25, 0.25, 0.15, 0.05, 0.1]),
            "sex": rng.choice(["F", "M", "U"], residents, p=[0.5, 0.48, 0.02]),
            "ethnicity": rng.choice(
                ETHNIC_GROUPS, residents, p=[0.1, 0.05, 0.04, 0.75, 0.03, 0.03]
            ),
            "lsoa": rng.choice(wards, residents),
            "departments": departments,
        }
    )
    involved = (
        frame.explode("departments")
        .group_by("household_key")
        .agg(pl.col("departments").n_unique().cast(pl.Int64).alias("household_departments"))
    )
    return frame.join(involved, on="household_key", how="left")


def _table(people: pl.DataFrame, definition: dict, threshold: int, base: int) -> pl.DataFrame:
    dimensions = definition["dimensions"]
    frame = people.with_columns(department=pl.col("departments"))
    for dimension in dimensions.values():
        if dimension["source"] == "department" or dimension.get("expand"):
            frame = frame.explode(dimension["source"])
    if definition["unit"] == "households":
        frame = frame.unique(["household_key", *(d["source"] for d in dimensions.values())])
    columns = [
        (
            pl.col(d["source"]).list.join("+")
            if isinstance(frame.schema[d["source"]], pl.List)
            else pl.col(d["source"]).cast(pl.String)
        ).alias(n)
        for n, d in dimensions.items()
    ]
    counts = frame.select(*columns).group_by(list(dimensions)).len()
    withheld = pl.col("len") < threshold
    rounded = ((pl.col("len") + base // 2) // base * base).cast(pl.Int64)
    return counts.select(
        *dimensions,
        pl.when(withheld).then(None).otherwise(rounded).alias(definition["unit"]),
        withheld.alias("withheld"),
    ).sort(list(dimensions))


def publish_demo(root: Path, release_id: str, seed: int = 7, residents: int = 4000) -> Path:
    """Count, stage and publish one release; returns the catalogue path."""
    policy = load_policy(CONTRACTS / "disclosure_policy.yaml")
    people = population(residents, seed)
    tables = {
        name: _table(people, definition, policy.min_published_count, policy.rule.round_to)
        for name, definition in table_definitions(CONTRACTS / "cohorts.yaml").items()
    }
    metadata = {"release_id": release_id, "levels": {"age": 3, "sex": 0, "ethnicity": 1, "lsoa": 1}}
    catalogue.stage_release(root, release_id, tables, metadata)
    return catalogue.publish_release(root, release_id, APPROVAL, CONTRACTS)
