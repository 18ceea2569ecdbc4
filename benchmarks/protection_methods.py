"""Compare the two protection methods on one linked population (issue 8: pick the default by
measurement): `python -m benchmarks protection_methods --root data`.

For each method (suppression with the release-wide audit, cell-key perturbation) it protects
every table of data_contracts/cohorts.yaml, runs the independent audit, and prints one JSON
object: cells withheld / perturbed, people hidden (worst share per department and ethnic group
in any table where it is a dimension), the audit's result, the mean absolute error of the
published counts against the true counts (withheld cells left out), and seconds. Reads the
restricted population in secure/; prints counts only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import polars as pl

from schemas.cohorts import load_cohorts
from schemas.policy import load_policy
from transforms.disclosure import load_hierarchies, perturb_release, protect_release
from transforms.disclosure.protect import worst_hidden_share
from transforms.disclosure.tabulate import true_cells
from transforms.release import differencing

GROUPS = {
    "department": {"department", "department_a", "department_b"},
    "ethnic group": {"ethnic_group"},
}


def _error(population, cohorts, hierarchies, tables) -> dict:
    """Mean absolute error of published counts (withheld cells left out) and how many cells."""
    total, cells = 0, 0
    for table in cohorts.tables:
        truth = true_cells(population, table, hierarchies)
        joined = (
            tables[table.name]
            .join(truth, on=table.dimension_names, how="left", nulls_equal=True)
            .filter(~pl.col("withheld"))
        )
        total += int((joined[table.unit] - joined["_true"]).abs().sum())
        cells += joined.height
    return {"mean_absolute_error": round(total / max(cells, 1), 4), "published_cells": cells}


def measure(population, cohorts, policy, hierarchies) -> dict:
    started = time.perf_counter()
    auditor = differencing.Auditor(population, cohorts, hierarchies, policy)
    protect = perturb_release if policy.method == "cell_key" else protect_release
    protected = protect(
        population, cohorts, policy, hierarchies, lambda t: auditor.audit(t).failures
    )
    audit = auditor.audit(protected.tables)
    seconds = time.perf_counter() - started
    worst = worst_hidden_share(protected.hidden, GROUPS)
    counts = [c.to_dict() for c in protected.counts]
    return {
        "method": policy.method,
        "seconds_protect_and_audit": round(seconds, 2),
        "cells": sum(c["cells"] for c in counts),
        "cells_withheld": sum(c["cells_suppressed"] for c in counts),
        "audit_rounds": protected.rounds,
        "cells_perturbed": sum(c.get("cells_perturbed", 0) for c in counts),
        "cells_published_as_zero": sum(c.get("cells_published_as_zero", 0) for c in counts),
        "units_hidden_all_tables": sum(
            v["hidden"]
            for t in protected.hidden.values()
            for values in list(t["dimensions"].values())[:1]
            for v in values.values()
        ),
        "worst_hidden_share": {
            group: {value: list(entry) for value, entry in sorted(values.items())}
            for group, values in worst.items()
        },
        "audit": {
            "passed": audit.passed,
            "failures": audit.failed,
            "primary_cells": audit.primary_cells,
            "narrowest_width": audit.narrowest_width,
        },
        **_error(population, cohorts, hierarchies, protected.tables),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("data"))
    parser.add_argument("--contracts", type=Path, default=Path("data_contracts"))
    args = parser.parse_args(argv)
    population = pl.read_parquet(args.root / "secure" / "linked" / "population.parquet")
    cohorts = load_cohorts(args.contracts / "cohorts.yaml")
    hierarchies = load_hierarchies(args.contracts / "hierarchies")
    base = load_policy(args.contracts / "disclosure_policy.yaml")
    from schemas.policy import load_ptable

    ptable = load_ptable(args.contracts / (base.ptable or "ptable.yaml"))
    results = []
    for method in ("suppression", "cell_key"):
        policy = base.model_copy(
            update={"method": method, "perturbation": ptable if method == "cell_key" else None}
        )
        results.append(measure(population, cohorts, policy, hierarchies))
    print(json.dumps({"people": population.height, "methods": results}, indent=2))
    return 0
