"""A demo-sized published catalogue made quickly: a seeded population of residents, counted into
the cohort tables the council declares, staged and published with the real catalogue code (no
Prefect run, so tests that only need a catalogue stay fast).

The cohort definitions are the council's own (`data_contracts/cohorts.yaml`), so the guide's
examples run against the tables a release really has. The tables have the
shape staged cohort tables have: dimension columns, the count named by its unit (NULL where
withheld) and `withheld`. Cells below the policy's minimum published count are withheld and the
rest rounded; the disclosure code's own tests cover how cells are protected.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl

from schemas.policy import load_policy
from transforms.disclosure.hierarchy import load_hierarchies
from transforms.release import catalogue
from transforms.release.catalogue_docs import table_definitions

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "data_contracts"
FIXTURES = REPO / "data_contracts"
DEPARTMENTS = ("adult_social_care", "benefits", "childrens_services", "council_tax", "housing")
INDICATORS = (
    "rent_arrears",
    "receiving_adult_social_care",
    "child_known_to_social_care",
    "means_tested_benefit",
    "council_tax_discount",
)
CARE_STATUSES = ("Child in Need", "Child Protection Plan", "Looked After Child", "Closed")
APPROVAL = {
    "decision": "approved",
    "name": "A. Officer",
    "role": "IG lead",
    "decided_at": "2026-11-21T09:30:00+00:00",
    "conditions": "",
}


def demo_contracts(folder: Path) -> Path:
    """`data_contracts/` with the guide's cohort definitions: what publish_demo describes."""
    target = folder / "data_contracts"
    if not target.exists():
        shutil.copytree(CONTRACTS, target)
        for name in ("cohorts.yaml", "indicators.yaml"):
            shutil.copyfile(FIXTURES / name, target / name)
    return target


def population(residents: int = 4000, seed: int = 7) -> pl.DataFrame:
    """One row per resident with every population column the cohort definitions use."""
    rng = np.random.default_rng(seed)
    lsoas = [f"E01999{n:03d}" for n in range(1, 129)]
    ages = [str(a) for a in range(0, 100)] + ["unknown"]
    ethnic = ["A1", "A2", "B1", "B2", "M1", "W1", "W2", "W5", "O1", "NS"]
    departments = [
        sorted(rng.choice(DEPARTMENTS, size=rng.integers(1, 4), replace=False).tolist())
        for _ in range(residents)
    ]
    indicators = [
        sorted(rng.choice(INDICATORS, size=rng.integers(0, 4), replace=False).tolist())
        for _ in range(residents)
    ]
    frame = pl.DataFrame(
        {
            "person_key": [f"p{i}" for i in range(residents)],
            "household_key": [f"h{h}" for h in rng.integers(0, residents // 2, residents)],
            "age": rng.choice(ages, residents),
            "sex": rng.choice(["F", "M", "U"], residents, p=[0.5, 0.48, 0.02]),
            "ethnicity": rng.choice(ethnic, residents),
            "lsoa": rng.choice(lsoas, residents),
            "departments": departments,
            "indicators": indicators,
            "care_status": rng.choice(CARE_STATUSES, residents),
        }
    ).with_columns(
        indicator_count=pl.col("indicators").list.len().cast(pl.Int64),
        in_rent_arrears=pl.when(pl.col("indicators").list.contains("rent_arrears"))
        .then(pl.lit("yes"))
        .otherwise(pl.lit("no")),
        # Yes/no columns are booleans in the population, published as "yes"/"no".
        means_tested_benefit=pl.col("indicators").list.contains("means_tested_benefit"),
        rent_arrears=pl.col("indicators").list.contains("rent_arrears"),
        weekly_amount=pl.lit(80.0),
        **{f"known_to_{d}": pl.col("departments").list.contains(d) for d in DEPARTMENTS},
    )
    involved = (
        frame.explode("departments")
        .group_by("household_key")
        .agg(pl.col("departments").n_unique().cast(pl.Int64).alias("household_departments"))
    )
    return frame.join(involved, on="household_key", how="left")


def _band(values: pl.Expr, bands: list[str]) -> pl.Expr:
    expression = pl.lit(None, dtype=pl.String)
    for label in reversed(bands):
        low = int(label.removesuffix("+"))
        test = values >= low if label.endswith("+") else values == low
        expression = pl.when(test).then(pl.lit(label)).otherwise(expression)
    return expression


def _table(people: pl.DataFrame, definition: dict, hierarchies, policy) -> pl.DataFrame:
    frame = people.filter(pl.sql_expr(definition["where"])) if definition.get("where") else people
    dimensions = definition["dimensions"]
    pair = [n for n, d in dimensions.items() if d.get("expand") == "pair"]
    for name, dimension in dimensions.items():
        source = pl.col(dimension["source"])
        if dimension.get("expand"):
            frame = frame.with_columns(source.alias(name)).explode(name)
        elif dimension.get("bands"):
            frame = frame.with_columns(_band(source, dimension["bands"]).alias(name))
        elif dimension.get("level"):
            rows = hierarchies[dimension["source"]].table()
            mapping = {row[0]: row[dimension["level"]] for row in rows}
            frame = frame.with_columns(source.replace_strict(mapping).alias(name))
        elif people.schema[dimension["source"]] == pl.Boolean:
            yes_no = pl.when(source).then(pl.lit("yes")).otherwise(pl.lit("no"))
            frame = frame.with_columns(yes_no.alias(name))
        else:
            frame = frame.with_columns(source.cast(pl.String).alias(name))
    if pair:
        frame = frame.filter(pl.col(pair[0]) <= pl.col(pair[1]))
    if definition["unit"] == "households":
        frame = frame.unique(["household_key", *dimensions])
    counts = frame.group_by(list(dimensions)).len()
    withheld = pl.col("len") < policy.min_published_count
    base = policy.rule.round_to
    rounded = ((pl.col("len") + base // 2) // base * base).cast(pl.Int64)
    return counts.select(
        *dimensions,
        pl.when(withheld).then(None).otherwise(rounded).alias(definition["unit"]),
        withheld.alias("withheld"),
    ).sort(list(dimensions))


def publish_demo(root: Path, release_id: str, seed: int = 7, residents: int = 4000) -> Path:
    """Count, stage and publish one release; returns the catalogue path."""
    contracts = demo_contracts(root.parent)
    policy = load_policy(contracts / "disclosure_policy.yaml")
    hierarchies = load_hierarchies(contracts / "hierarchies", ["age", "ethnicity", "lsoa"])
    people = population(residents, seed)
    tables = {
        name: _table(people, definition, hierarchies, policy)
        for name, definition in table_definitions(contracts / "cohorts.yaml").items()
    }
    catalogue.stage_release(root, release_id, tables, {"release_id": release_id})
    return catalogue.publish_release(root, release_id, APPROVAL, contracts)
