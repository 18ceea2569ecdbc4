"""Benchmark the release's disclosure control: `python -m benchmarks release [--residents N]`.

Builds a linked population of N residents shaped like the pipeline's (the synthetic council's
residents, with departments, attributes and indicators drawn as the council's caseloads run),
then times the default cohort set (`data_contracts/cohorts.yaml`) through tabulation, the
independent differencing audit (built once, re-run each round) and protection of the whole
release until the audit passes. Prints one
JSON object: per-phase seconds, cells, cells withheld, people hidden, peak memory, and the
baseline measured in the same run: counting the same tables' cells with plain Polars group-bys
(no protection), the floor any method pays.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks._measure import peak_rss_mb
from schemas.cohorts import load_cohorts
from schemas.policy import load_policy
from transforms.disclosure import load_hierarchies, perturb_release, protect_release
from transforms.disclosure.tabulate import units
from transforms.release.differencing import Auditor
from transforms.synthetic import build_population

CONTRACTS = Path(__file__).resolve().parents[1] / "data_contracts"
DEPARTMENTS = ("adult_social_care", "benefits", "childrens_services", "council_tax", "housing")
CARE_STATUSES = ("Child in Need", "Child Protection Plan", "Looked After Child")


def _hex(byte: pl.Expr) -> pl.Expr:
    digits = pl.lit("0123456789abcdef")
    return pl.concat_str(digits.str.slice(byte // 16, 1), digits.str.slice(byte % 16, 1))


def linked_population(residents: int, seed: int) -> pl.DataFrame:
    """A population frame with the columns the default cohorts use, no identifiers."""
    people, households = build_population(residents, seed)
    people = people.join(households.select("household_id", "lsoa_code"), on="household_id")
    rng = np.random.default_rng(seed)
    n = people.height
    age = people["age"].to_numpy()
    adult, child = age >= 18, age < 18
    known = {
        "adult_social_care": adult & (rng.random(n) < np.where(age >= 75, 0.12, 0.015)),
        "benefits": adult & (rng.random(n) < 0.18),
        "childrens_services": child & (rng.random(n) < 0.035),
        "council_tax": people["is_household_reference"].to_numpy() & (rng.random(n) < 0.97),
        "housing": people["is_household_reference"].to_numpy() & (rng.random(n) < 0.2),
    }
    keep = np.any(np.stack(list(known.values())), axis=0)
    arrears = known["housing"] & (rng.random(n) < np.where(known["benefits"], 0.4, 0.3))
    means_tested = known["benefits"] & (rng.random(n) < 0.7)
    discount = known["council_tax"] & (rng.random(n) < 0.35)
    flags = {
        "rent_arrears": arrears,
        "receiving_adult_social_care": known["adult_social_care"],
        "child_known_to_social_care": known["childrens_services"],
        "means_tested_benefit": means_tested,
        "council_tax_discount": discount,
    }
    # Keys end in a uniform hex byte like the pipeline's SHA-256 pseudonyms (cell-key
    # perturbation reads its record key from it).
    byte = pl.col("resident_id").hash(seed) % 256
    household_byte = pl.col("household_id").hash(seed) % 256
    frame = people.select(
        pl.format("p{}_{}", pl.col("resident_id"), _hex(byte)).alias("person_key"),
        pl.format("h{}_{}", pl.col("household_id"), _hex(household_byte)).alias("household_key"),
        pl.col("age").cast(pl.String),
        "sex",
        "ethnicity",
        pl.col("lsoa_code").alias("lsoa"),
    ).with_columns(
        pl.Series(f"known_to_{d}", v) for d, v in known.items()
    ).with_columns(pl.Series(k, v) for k, v in flags.items()).with_columns(
        in_rent_arrears=pl.when("known_to_housing").then(pl.Series(arrears)),
        care_status=pl.when("known_to_childrens_services").then(
            pl.Series(np.asarray(CARE_STATUSES)[rng.integers(0, 3, n)])
        ),
        departments=pl.concat_list(
            pl.when(f"known_to_{d}").then(pl.lit(d)) for d in DEPARTMENTS
        ).list.drop_nulls(),
        indicators=pl.concat_list(pl.when(k).then(pl.lit(k)) for k in flags).list.drop_nulls(),
        indicator_count=pl.sum_horizontal(pl.col(k).cast(pl.Int64) for k in flags),
    ).filter(pl.Series(keep))
    household_departments = (
        frame.explode("departments").group_by("household_key")
        .agg(household_departments=pl.col("departments").n_unique().cast(pl.Int64))
    )
    return frame.join(household_departments, on="household_key", how="left")


def _write_population(residents: int, seed: int, path: Path) -> tuple[float, float]:
    started = time.perf_counter()
    # About half of a borough's residents are known to at least one department here.
    linked_population(int(residents / 0.5), seed).write_parquet(path)
    return time.perf_counter() - started, peak_rss_mb()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks release", description=__doc__)
    parser.add_argument("--residents", type=int, default=2_000_000,
                        help="linked residents to aim for (default 2,000,000)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    # The population is built in a child process and read back from Parquet, as the pipeline
    # reads secure/linked/population.parquet: this process's peak memory is the release's own,
    # not generating the synthetic council's residents.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "population.parquet"
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            build_seconds, build_peak_mb = pool.submit(
                _write_population, args.residents, args.seed, path
            ).result()
        population = pl.read_parquet(path)
    cohorts = load_cohorts(CONTRACTS / "cohorts.yaml")
    policy = load_policy(CONTRACTS / "disclosure_policy.yaml")
    hierarchies = load_hierarchies(CONTRACTS / "hierarchies")

    started = time.perf_counter()
    for table in cohorts.tables:
        units(population, table, hierarchies).group_by(table.dimension_names).len()
    baseline_seconds = time.perf_counter() - started

    started = time.perf_counter()
    auditor = Auditor(population, cohorts, hierarchies, policy)
    build_audit_seconds = time.perf_counter() - started
    audit_seconds = [0.0]

    def audit(tables):
        began = time.perf_counter()
        failures = auditor.audit(tables).failures
        audit_seconds[0] += time.perf_counter() - began
        return failures

    protect = perturb_release if policy.method == "cell_key" else protect_release
    protected = protect(population, cohorts, policy, hierarchies, audit)
    final = auditor.audit(protected.tables)
    seconds = time.perf_counter() - started
    counts = [c.to_dict() for c in protected.counts]
    result = {
        "name": "release",
        "rows": {"linked_residents": population.height, "tables": len(cohorts.tables)},
        "seconds": round(seconds, 3),
        "phases": {
            "build_population_seconds": round(build_seconds, 3),
            "build_population_peak_rss_mb": build_peak_mb,
            "audit_build_seconds": round(build_audit_seconds, 3),
            "audit_seconds": round(audit_seconds[0], 3),
            "tabulate_and_protect_seconds": round(
                seconds - build_audit_seconds - audit_seconds[0], 3
            ),
            "audit_rounds": protected.rounds,
            "audit_atoms": final.atoms,
            "audit_linear_programs": final.linear_programs,
            "audit_failures": final.failed,
        },
        "cells": sum(c["cells"] for c in counts),
        "method": policy.method,
        "cells_withheld": sum(c["cells_suppressed"] for c in counts),
        "cells_perturbed": sum(c.get("cells_perturbed", 0) for c in counts),
        "units_in_withheld_cells": sum(c["units_in_suppressed_cells"] for c in counts),
        "units_counted": sum(c["units_in_suppressed_cells"] + c["units_in_published_cells"]
                             for c in counts),
        "peak_rss_mb": peak_rss_mb(),  # tabulate, protect and audit (population built apart)
        "baseline": "counting the same cells with Polars group-bys, no protection",
        "baseline_seconds": round(baseline_seconds, 3),
        "ratio": round(seconds / baseline_seconds, 3),
    }
    print(json.dumps(result))
    return 0
