"""A small staged release, built the way the flow stages one but without running the pipeline:
a population, its cohort table, the staged Parquet sealed by sha256, the gate inputs and a
report. Decision tests (approval, crashes, concurrency, the Prefect form) start from it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from schemas.cohorts import CohortDefinitions, CohortTable, Dimension
from schemas.policy import DisclosurePolicy
from schemas.report import ReleaseReport
from transforms.release import catalogue, gates, history, outputs
from transforms.release.report import write_report

COHORTS = CohortDefinitions(
    tables=(
        CohortTable(
            name="cohort_by_area",
            title="People by area",
            description="d",
            question="q",
            unit="people",
            dimensions=(Dimension(name="area", source="lsoa"),),
        ),
    )
)
BUILDER = "builder"
CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"


def policy(approvers: int = 1, **changes) -> DisclosurePolicy:
    values = dict(
        name="test",
        k=10,
        max_suppression=0.0,
        small_number_rule="ons_threshold_10",
        quasi_identifiers=("lsoa",),
        approvers_required=approvers,
    )
    return DisclosurePolicy(**{**values, **changes})


def stage(
    root: Path,
    release_id: str,
    sizes: dict[str, int] | None = None,
    *,
    approvers: int = 1,
    demo: bool = False,
    builder: str = BUILDER,
) -> Path:
    """Stage a release of one table (area -> people); return its staging folder."""
    sizes = sizes or {"a": 12, "b": 15}
    chosen = policy(approvers)
    secure = root / "secure" / "anonymised"
    secure.mkdir(parents=True, exist_ok=True)
    population = secure / f"{release_id}.parquet"
    areas = [a for a, n in sizes.items() for _ in range(n)]
    pl.DataFrame({"person_key": [f"p{i}" for i in range(len(areas))], "lsoa": areas}).write_parquet(
        population
    )
    table = pl.DataFrame(
        {"area": list(sizes), "people": list(sizes.values()), "withheld": [False] * len(sizes)}
    )
    staged = catalogue.stage_release(
        root, release_id, {"cohort_by_area": table}, {"release_id": release_id}
    )
    checks = gates.check_release(staged, population, COHORTS, chosen)
    gates.save_gate_inputs(root, release_id, population, COHORTS, chosen, CONTRACTS)
    # The linked population the differencing audit recounts at approval.
    history.keep_population(root, release_id, population)
    folder = catalogue.staging_dir(root, release_id)
    sealed = outputs.seal(folder)
    write_report(
        root,
        ReleaseReport(
            release_id=release_id,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            status="awaiting approval",
            key_id="test-key",
            demo=demo,
            policy={
                **chosen.model_dump(mode="json"),
                "min_published_count": chosen.min_published_count,
                "round_to": chosen.rule.round_to,
                "rule_source": chosen.rule.source,
            },
            contracts={},
            deliveries=[],
            pseudonymisation={},
            linkage={},
            population={"people": len(areas), "records": len(areas), "people_incomplete": 0},
            anonymisation={"levels": {"lsoa": 0}, "suppressed": 0, "released": len(areas)},
            tables=[
                {
                    "table": "cohort_by_area",
                    "unit": "people",
                    "rows_published": len(sizes),
                    "cells_suppressed": 0,
                    "cells_suppressed_secondary": 0,
                    "units_in_suppressed_cells": 0,
                }
            ],
            accounting={"balanced": True},
            checks=checks.to_dict(),
            limitations=[],
            built_by={"os_user": builder, "uid": 0, "host": "test"},
            approvers_required=approvers,
            outputs=sealed,
        ),
    )
    return folder


def listed_as_published(con) -> list[str]:
    """Release ids the catalogue shows as published (a catalogue that also lists withdrawn
    releases marks them in a `status` column)."""
    columns = {r[0] for r in con.sql("DESCRIBE releases").fetchall()}
    where = " WHERE status = 'published'" if "status" in columns else ""
    return [r[0] for r in con.sql(f"SELECT release_id FROM releases{where} ORDER BY 1").fetchall()]
