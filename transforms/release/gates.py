"""Checks every candidate release must pass before it can be published.

These deliberately do not reuse the tabulation code: the k-anonymity gate recomputes each
published row's true count from the anonymised population with DuckDB SQL, so a bug in the
Polars tabulation cannot publish a small cell unnoticed.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import polars as pl

from schemas.errors import DisclosureError
from schemas.policy import CohortDefinitions, DisclosurePolicy

# Shapes of direct identifiers and pseudonyms; none may appear in a published cell or in
# published metadata. Broad on purpose: a false alarm stops a release, a miss leaks a person.
IDENTIFIER_PATTERNS = {
    "nhs_number": re.compile(r"\b\d{3}[ -]?\d{3}[ -]?\d{4}\b"),
    "ni_number": re.compile(r"\b[A-Za-z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-Da-d]\b"),
    "postcode": re.compile(r"\b[A-Za-z]{1,2}\d[A-Za-z\d]?\s?\d[A-Za-z]{2}\b"),
    "uprn": re.compile(r"\b\d{7,12}\b"),
    "date": re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}[/-]\d{1,2}[/-]\d{4}\b"),
    "email": re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}"),
    "phone": re.compile(r"(?:\+44\s?|\b0)\d{2,4}\s?\d{3}\s?\d{3,4}\b"),
    "token": re.compile(r"\b[0-9a-f]{16,}\b"),
}


@dataclass(frozen=True)
class CheckCounts:
    tables_checked: int
    rows_checked: int
    values_scanned: int
    identifier_matches: int
    rows_below_k: int
    population_classes_below_k: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def scan_values(values: list[str]) -> dict[str, int]:
    """Count values that look like an identifier of each kind (kinds with no match omitted)."""
    hits: dict[str, int] = {}
    for value in values:
        for kind, pattern in IDENTIFIER_PATTERNS.items():
            if pattern.search(value):
                hits[kind] = hits.get(kind, 0) + 1
    return hits


def _true_counts_sql(table, view: str) -> str:
    """SQL for the true count behind each row of one cohort table, written independently."""
    source = "population"
    if table.per_department:
        source = (
            "(SELECT * EXCLUDE (departments), unnest(departments) AS department FROM population)"
        )
    if table.unit == "households":
        source = (
            f"(SELECT household_key, arg_min(COLUMNS(* EXCLUDE (household_key)), person_key) "
            f"FROM {source} WHERE household_key IS NOT NULL GROUP BY household_key)"
        )
    dims = ", ".join(
        f"CAST(array_to_string({src}, '+') AS VARCHAR) AS {out}"
        if src == "departments"
        else f"CAST({src} AS VARCHAR) AS {out}"
        for out, src in table.dimensions.items()
    )
    join = " AND ".join(f"t.{d} IS NOT DISTINCT FROM p.{d}" for d in table.dimensions)
    return (
        f"WITH truth AS (SELECT {dims}, count(*) AS true_count FROM {source} GROUP BY ALL) "
        f"SELECT count(*) FILTER (WHERE true_count IS NULL OR true_count < $k) AS below_k, "
        f"count(*) AS n FROM {view} p LEFT JOIN truth t ON {join}"
    )


def check_release(
    staged: dict[str, Path],
    population: Path,
    cohorts: CohortDefinitions,
    policy: DisclosurePolicy,
) -> CheckCounts:
    """Run the k-anonymity gate and the identifier scan; raise DisclosureError on any failure."""
    problems: list[str] = []
    rows = values = matches = below_k = 0
    con = duckdb.connect()
    try:
        con.execute(f"CREATE VIEW population AS SELECT * FROM read_parquet('{population}')")
        qis = ", ".join(policy.quasi_identifiers)
        classes_below_k = con.sql(
            f"SELECT count(*) FROM (SELECT {qis}, count(*) AS n FROM population "
            f"GROUP BY ALL HAVING n < {int(policy.k)})"
        ).fetchall()[0][0]
        if classes_below_k:
            problems.append(
                f"anonymised population: {classes_below_k} quasi-identifier class(es) smaller than "
                f"k={policy.k}"
            )
        for table in cohorts.tables:
            path = staged[table.name]
            con.execute(f"CREATE OR REPLACE VIEW staged AS SELECT * FROM read_parquet('{path}')")
            ((n_below, n),) = con.sql(
                _true_counts_sql(table, "staged"), params={"k": policy.min_published_count}
            ).fetchall()
            published_small = con.sql(
                f"SELECT count(*) FROM staged WHERE {table.unit} < {int(policy.k)}"
            ).fetchall()[0][0]
            rows += n
            below_k += n_below + published_small
            if n_below or published_small:
                problems.append(
                    f"{path.name}: {n_below + published_small} row(s) stand for fewer than "
                    f"{policy.min_published_count} {table.unit}"
                )
            # Counts are numbers by construction; every text cell is scanned.
            frame = pl.read_parquet(path).select(pl.col(pl.String))
            texts = [v for c in frame.columns for v in frame.get_column(c).drop_nulls()]
            values += len(texts)
            for kind, count in scan_values(texts).items():
                matches += count
                problems.append(f"{path.name}: {count} value(s) shaped like a {kind}")
    finally:
        con.close()
    if problems:
        raise DisclosureError("release failed its disclosure checks: " + "; ".join(problems))
    return CheckCounts(
        tables_checked=len(cohorts.tables),
        rows_checked=rows,
        values_scanned=values,
        identifier_matches=matches,
        rows_below_k=below_k,
        population_classes_below_k=classes_below_k,
    )
