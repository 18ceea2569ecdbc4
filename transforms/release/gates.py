"""Checks every candidate release must pass before it can be published.

These deliberately do not reuse the tabulation code: the k-anonymity gate recomputes each
published row's true count from the anonymised population with DuckDB SQL, so a bug in the
Polars tabulation cannot publish a small cell unnoticed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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
    population_classes_below_l: int = 0
    rows_withheld: int = 0

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
    # Withheld rows publish no count, so their true size does not matter here.
    return (
        f"WITH truth AS (SELECT {dims}, count(*) AS true_count FROM {source} GROUP BY ALL) "
        f"SELECT count(*) FILTER (WHERE true_count IS NULL OR true_count < $k) AS below_k, "
        f"count(*) AS n FROM (SELECT * FROM {view} WHERE NOT {_WITHHELD}) p LEFT JOIN truth t "
        f"ON {join}"
    )


# A staged row marked withheld has no count; tables without the column withhold nothing.
_WITHHELD = "coalesce(withheld, false)"


def _view(con, name: str, path: Path) -> None:
    columns = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()}
    extra = "" if "withheld" in columns else ", false AS withheld"
    con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT *{extra} FROM read_parquet('{path}')")


def check_release(
    staged: dict[str, Path],
    population: Path,
    cohorts: CohortDefinitions,
    policy: DisclosurePolicy,
) -> CheckCounts:
    """Run the k-anonymity and l-diversity gates and the identifier scan; raise DisclosureError
    on any failure."""
    problems: list[str] = []
    rows = values = matches = below_k = withheld = 0
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
        classes_below_l = 0
        if policy.l_diversity is not None:
            classes_below_l = con.sql(
                f"SELECT count(*) FROM (SELECT {qis}, count(DISTINCT {policy.sensitive}) AS l "
                f"FROM population GROUP BY ALL HAVING l < {int(policy.l_diversity)})"
            ).fetchall()[0][0]
            if classes_below_l:
                problems.append(
                    f"anonymised population: {classes_below_l} quasi-identifier class(es) with "
                    f"fewer than l={policy.l_diversity} values of {policy.sensitive}"
                )
        for table in cohorts.tables:
            path = staged[table.name]
            _view(con, "staged", path)
            ((n_below, n),) = con.sql(
                _true_counts_sql(table, "staged"), params={"k": policy.min_published_count}
            ).fetchall()
            published_small, n_withheld = con.sql(
                f"SELECT count(*) FILTER (WHERE {table.unit} < {int(policy.k)} "
                f"AND NOT {_WITHHELD}), count(*) FILTER (WHERE {_WITHHELD}) FROM staged"
            ).fetchall()[0]
            withheld += n_withheld
            rows += n + n_withheld
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
        population_classes_below_l=classes_below_l,
        rows_withheld=withheld,
    )


def differencing_audit(staged: dict[str, Path], policy: DisclosurePolicy) -> dict[str, Any]:
    """HOOK for issue 8's independent LP audit of withheld cells (transforms/disclosure/).

    Not on main yet: once it is, call it here so that staging and approval both run it; it
    must raise DisclosureError when a withheld cell's feasible interval is too narrow.
    """
    return {"differencing_audit": "not available in this build"}


def account_rows(
    received: int,
    quarantined: int,
    accepted: int,
    linked_records: int,
    people: dict[str, int],
    anonymised: dict[str, Any],
) -> dict[str, Any]:
    """Every input row ends in exactly one place: the account, and whether it balances.

    Each count comes from the stage that produced it, so the identities can fail.
    """
    accounting = {
        "rows_received": received,
        "rows_quarantined": quarantined,
        "records_accepted": accepted,
        "records_linked": linked_records,
        "people_linked": people["people"],
        "people_withheld_no_area": people["people_incomplete"],
        "people_suppressed_by_anonymiser": anonymised["suppressed"],
        "people_released_to_cohort_tables": anonymised["released"],
    }
    accounting["balanced"] = (
        received == accepted + quarantined
        and accepted == linked_records
        and people["people"]
        == people["people_incomplete"] + anonymised["suppressed"] + anonymised["released"]
    )
    return accounting


def require_balanced(accounting: dict[str, Any]) -> None:
    """An account that does not add up stops the release before anything is staged."""
    if not accounting["balanced"]:
        figures = ", ".join(f"{k} {v}" for k, v in accounting.items() if k != "balanced")
        raise DisclosureError(f"the row account does not balance ({figures}); nothing staged")


# What the gates need to run again at approval, kept in the restricted secure zone: the
# anonymised population the release was tabulated from (hard-linked, so a later run replacing
# secure/anonymised/ does not change it), and the policy and cohort definitions used.
GATE_INPUTS = ("population.parquet", "policy.json", "cohorts.json")


def gate_inputs_dir(root: Path, release_id: str) -> Path:
    return root / "secure" / "releases" / release_id


def save_gate_inputs(
    root: Path,
    release_id: str,
    population: Path,
    cohorts: CohortDefinitions,
    policy: DisclosurePolicy,
) -> Path:
    folder = gate_inputs_dir(root, release_id)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "population.parquet"
    tmp = folder / f".population.{os.getpid()}.tmp"
    try:
        os.link(population, tmp)
    except OSError:  # another file system: copy instead
        tmp.write_bytes(population.read_bytes())
    os.replace(tmp, target)
    for name, model in (("policy.json", policy), ("cohorts.json", cohorts)):
        (folder / name).write_text(model.model_dump_json(indent=2))
    return folder


def recheck(root: Path, release_id: str, staged_folder: Path) -> CheckCounts:
    """Run every gate again on the staged files, with the inputs saved at staging."""
    folder = gate_inputs_dir(root, release_id)
    if not all((folder / name).exists() for name in GATE_INPUTS):
        raise DisclosureError(
            f"release {release_id}: the inputs its gates need are missing from "
            f"{folder}; it cannot be checked again, so it cannot be published"
        )
    policy = DisclosurePolicy.model_validate(json.loads((folder / "policy.json").read_text()))
    cohorts = CohortDefinitions.model_validate(json.loads((folder / "cohorts.json").read_text()))
    staged = {t.name: staged_folder / f"{t.name}.parquet" for t in cohorts.tables}
    missing = sorted(p.name for p in staged.values() if not p.exists())
    if missing:
        raise DisclosureError(
            f"release {release_id}: staged table(s) missing: {', '.join(missing)}"
        )
    counts = check_release(staged, folder / "population.parquet", cohorts, policy)
    differencing_audit(staged, policy)
    return counts
