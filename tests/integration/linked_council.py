"""A token-level council for linkage tests: what `secure/pseudonymised/` holds, made in NumPy.

Residents with one identifier id per linkage rule, five departments drawing overlapping
residents, identifiers missing as each department's system often lacks them, typed wrongly
(a different token), shared by two residents (a conflict the linker must refuse), and records
with no token at all; the departments' declared attributes; an opt-out register. Tokens are
plain text (`<rule>-<id>`): linkage only compares them. Seeded, so the same seed gives the same
files on any machine.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from transforms.files import write_parquet

RULES = ("nhs_number", "ni_number", "name_dob_sector", "name_dob", "forename_dob_postcode",
         "name_postcode", "veto_date_of_birth", "household")
# Share of residents each department holds, and the chance each of its records has a token.
DEPARTMENTS = {
    "adult_social_care": (0.04, {"nhs_number": 0.95, "ni_number": 0.1, "household": 0.3}),
    "benefits": (0.25, {"nhs_number": 0.0, "ni_number": 0.97, "household": 0.9}),
    "childrens_services": (0.02, {"nhs_number": 0.7, "ni_number": 0.0, "household": 0.8}),
    "council_tax": (0.6, {"nhs_number": 0.0, "ni_number": 0.4, "dob": 0.45, "household": 0.97}),
    "housing": (0.15, {"nhs_number": 0.0, "ni_number": 0.85, "household": 1.0}),
}
DOB_RULES = ("name_dob_sector", "name_dob", "forename_dob_postcode", "veto_date_of_birth")
EXTRACT_DATE = date(2026, 11, 1)


def _tokens(rng, rule: str, ids: np.ndarray, present: np.ndarray, noise: float) -> pl.Series:
    """`<rule>-<id>` where present; a typo (noise) is an id no resident has."""
    n = ids.shape[0]
    typo = rng.random(n) < noise
    ids = np.where(typo, 10**9 + rng.integers(0, 10**6, n), ids)
    text = pl.lit(f"{rule}-") + pl.lit(pl.Series(ids).cast(pl.String))
    return pl.select(pl.when(pl.lit(pl.Series(present))).then(text)).to_series().alias(
        f"tok_{rule}"
    )


def _identifiers(rng, residents: int) -> dict[str, np.ndarray]:
    """One id per resident and rule; some collide on purpose (two people, one name and DOB)."""
    ids = {rule: np.arange(residents) for rule in RULES}
    ids["household"] = np.arange(residents) // 2
    # 1% share a name, date of birth and sector with another resident: conflicts for nhs/ni.
    twins = rng.choice(residents, residents // 100, replace=False)
    for rule in ("name_dob_sector", "name_dob", "name_postcode"):
        ids[rule] = ids[rule].copy()
        ids[rule][twins] = ids[rule][(twins + 1) % residents]
    return ids


def _department(rng, name: str, residents: int, ids: dict, share: float, presence: dict):
    n = int(residents * share)
    who = rng.choice(residents, n, replace=False)
    columns: dict[str, pl.Series] = {
        "department": pl.Series([name] * n, dtype=pl.String),
        "row_number": pl.Series(rng.permutation(n) + 1, dtype=pl.Int64),
    }
    has_dob = rng.random(n) < presence.get("dob", 0.97)
    for rule in RULES:
        present = rng.random(n) < presence.get(rule, 0.9)
        if rule in DOB_RULES:
            present &= has_dob
        noise = 0.0 if rule in ("nhs_number", "ni_number") else 0.03
        columns[f"tok_{rule}"] = _tokens(rng, rule, ids[rule][who], present, noise)
    # A few records with no token at all (nothing valid to link on).
    bare = rng.random(n) < 0.005
    for rule in RULES:
        column = columns[f"tok_{rule}"]
        columns[f"tok_{rule}"] = column.zip_with(pl.Series(~bare), pl.Series([None] * n,
                                                                             dtype=pl.String))
    age = rng.integers(0, 100, n)
    columns["age"] = pl.Series(np.where(has_dob, age, -1), dtype=pl.Int16).replace(-1, None)
    lsoa = rng.integers(0, 40, n)
    columns["lsoa"] = pl.Series([f"E0100{i:04d}" for i in lsoa]).zip_with(
        pl.Series(rng.random(n) > 0.02), pl.Series([None] * n, dtype=pl.String))
    columns["sex"] = pl.Series(rng.choice(["F", "M", None], n, p=[0.49, 0.49, 0.02]).tolist())
    columns["ethnicity"] = pl.Series(rng.choice(["A1", "B2", "W1", None], n).tolist())
    frame = pl.DataFrame(columns)
    return frame.with_columns(_attributes(rng, name, n)), who


def _attributes(rng, name: str, n: int) -> list[pl.Series]:
    pick = lambda values: pl.Series(rng.choice(values, n).tolist())  # noqa: E731
    days = lambda: pl.Series(  # noqa: E731
        np.datetime64("2015-01-01") + rng.integers(0, 3000, n).astype("timedelta64[D]")
    ).cast(pl.Date)
    if name == "adult_social_care":
        return [pick(["physical", "memory", None]).alias("support_reason"),
                pick(["home care", "residential", None]).alias("service_type"),
                days().alias("support_start_date")]
    if name == "benefits":
        return [pick(["Housing Benefit", "Council Tax Reduction", "Other"]).alias("benefit_type"),
                pl.Series(rng.random(n) * 300).round(2).alias("weekly_amount")]
    if name == "childrens_services":
        return [pick(["Child in Need", "Looked After Child", "Closed"]).alias("care_status"),
                days().alias("referral_date")]
    if name == "council_tax":
        return [pick(["A", "B", "C", "D"]).alias("band"),
                pick(["true", "false", None]).alias("single_person_discount")]
    return [pick(["council", "private", None]).alias("tenure"),
            pl.Series(rng.integers(1, 7, n), dtype=pl.Int64).alias("household_size"),
            pick([True, False, None]).alias("in_rent_arrears")]


def write_council(folder: Path, residents: int, seed: int) -> tuple[list[Path], Path]:
    """Write each department's token file and the register's; return (department paths,
    register path)."""
    rng = np.random.default_rng(seed)
    ids = _identifiers(rng, residents)
    paths = []
    folder.mkdir(parents=True, exist_ok=True)
    for name, (share, presence) in DEPARTMENTS.items():
        frame, _ = _department(rng, name, residents, ids, share, presence)
        path = folder / f"{name}.parquet"
        write_parquet(frame, path)
        paths.append(path)
    register, who = _department(rng, "opt_out", residents, ids, 0.02, {"nhs_number": 0.6})
    m = register.height
    register = register.select(
        "department", "row_number", *[f"tok_{r}" for r in RULES], "age", "lsoa", "sex",
        "ethnicity",
    ).with_columns(
        pl.Series(rng.choice(["all", "service_planning", "research"], m).tolist()).alias("scope"),
        (pl.lit(EXTRACT_DATE) - pl.duration(days=pl.Series(rng.integers(-20, 400, m))))
        .alias("objection_date"),
    )
    register_path = folder / "opt_out.parquet"
    write_parquet(register, register_path)
    return paths, register_path
