"""Checks every candidate release must pass before it can be published.

These deliberately do not reuse the tabulation code: they read the staged files back with
DuckDB SQL, so a bug in the Polars tabulation cannot publish a small cell unnoticed. The record-
level output of the anonymiser is held to k here too.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import polars as pl

from schemas.cohorts import CohortDefinitions
from schemas.errors import DisclosureError
from schemas.policy import DisclosurePolicy

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
            # A published row shows a count of at least k (or a zero, where a sensitive dimension
            # lists every value); a withheld row shows none. That each
            # count stands for at least the policy's minimum true count is the differencing
            # audit's to check, from the population, independently of the tabulation.
            ((n, published_small, withheld_with_count),) = con.sql(
                f"SELECT count(*), "
                f"count(*) FILTER (WHERE NOT withheld AND ({table.unit} IS NULL "
                f"OR {table.unit} BETWEEN 1 AND {int(policy.k) - 1})), "
                f"count(*) FILTER (WHERE withheld AND {table.unit} IS NOT NULL) FROM staged"
            ).fetchall()
            rows += n
            below_k += published_small
            if published_small:
                problems.append(
                    f"{path.name}: {published_small} published row(s) show fewer than "
                    f"k={policy.k} {table.unit}"
                )
            if withheld_with_count:
                problems.append(f"{path.name}: {withheld_with_count} withheld row(s) show a count")
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
