"""Checks every candidate release must pass before it can be published.

These deliberately do not reuse the tabulation code: they read the staged files back with
DuckDB SQL, so a bug in the Polars tabulation cannot publish a small cell unnoticed. The record-
level output of the anonymiser is held to k here too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from schemas.cohorts import CohortDefinitions
from schemas.errors import DisclosureError
from schemas.policy import DisclosurePolicy
from transforms.disclosure.hierarchy import load_hierarchies
from transforms.files import write_text_atomically
from transforms.release import differencing, history, magnitude_audit

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
            con.execute(f"CREATE OR REPLACE VIEW staged AS SELECT * FROM read_parquet('{path}')")
            # A published row shows at least the smallest count the policy publishes (k and
            # the small-number threshold, rounded as published), or a zero where a sensitive
            # dimension lists every value; a withheld row shows none. That each count stands for
            # at least that many people is the differencing audit's to check, from the
            # population, independently of the tabulation.
            base = policy.rule.round_to
            smallest = (policy.min_published_count + base // 2) // base * base
            if policy.method == "cell_key":
                # Perturbed counts come from the perturbation table: 0 or above its js.
                smallest = policy.perturbation.small_counts + 1
            ((n, published_small, withheld_with_count, n_withheld),) = con.sql(
                f"SELECT count(*), "
                f"count(*) FILTER (WHERE NOT withheld AND ({table.unit} IS NULL "
                f"OR {table.unit} BETWEEN 1 AND {int(smallest) - 1})), "
                f"count(*) FILTER (WHERE withheld AND {table.unit} IS NOT NULL), "
                f"count(*) FILTER (WHERE withheld) FROM staged"
            ).fetchall()
            rows += n
            withheld += n_withheld
            below_k += published_small
            if published_small:
                problems.append(
                    f"{path.name}: {published_small} published row(s) show fewer than "
                    f"{smallest} {table.unit}"
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
        population_classes_below_l=classes_below_l,
        rows_withheld=withheld,
    )


def check_perturbation(
    staged: dict[str, Path],
    population: pl.DataFrame,
    cohorts: CohortDefinitions,
    policy: DisclosurePolicy,
    hierarchies: dict,
) -> dict[str, int]:
    """Under cell-key perturbation, every published count must be the true count plus the
    perturbation table's noise for its cell key. Recomputed here in DuckDB SQL from the
    population the release was counted from, apart from the perturbation code: record key =
    the last two hex digits of the unit's pseudonym, cell key = the sum of its members' record
    keys mod 256, noise = the table's entry for (true count, capped at its last row; cell key).
    Raises DisclosureError naming the tables and how many cells differ (never a value)."""
    ptable = policy.perturbation
    if policy.method != "cell_key" or ptable is None:
        return {"cells_checked": 0, "cells_differing": 0}
    entries = []
    for row in ptable.rows:
        first = 0
        for published in sorted(row.to):
            keys = row.to[published]
            entries.append((row.count, first, first + keys - 1, published - row.count))
            first += keys
    noise = pl.DataFrame(
        entries, schema=["row", "first_key", "last_key", "noise"], orient="row"
    )
    recount = differencing._Recount(population, hierarchies, differencing.CURRENT)
    con = recount.con
    recount.register("ptable_noise", noise)
    checked = 0
    differing: dict[str, int] = {}
    try:
        for unit in ("people", "households"):
            tables = [t for t in cohorts.tables if t.unit == unit and t.name in staged]
            if not tables:
                continue
            columns = [d.source for t in tables for d in t.dimensions]
            columns += [
                c for t in tables for c in differencing._where_columns(t.where, recount.columns)
            ]
            keys = ("person_key", "household_key")
            columns = list(dict.fromkeys(c for c in columns if c not in keys))
            recount.coarsen(differencing._finest_levels(tables, recount.columns))
            # Per atom its units and the sum of their record keys: a cell's count and key are
            # sums over its atoms (times the multiplicity), so each table joins its cells to
            # the atoms, not to every unit; the atoms sum the record keys as they are grouped
            # (10M-row council: this gate 8.1 s -> 5.5 s).
            _, atoms_table = recount.atoms(unit, columns, [], record_keys=True)
            for table in tables:
                recount.register("table_cells", recount.cells(table, atoms_table))
                con.execute(
                    f"CREATE OR REPLACE VIEW staged AS SELECT * FROM "
                    f"read_parquet('{staged[table.name]}')"
                )
                dims = [f'"{n}"' for n in table.dimension_names]
                on = " AND ".join(f"s.{d} IS NOT DISTINCT FROM e.{d}" for d in dims)
                ((n, bad),) = con.sql(
                    f"""
                    WITH members AS (
                        SELECT c.*, a.n AS units, a.record_keys
                        FROM {atoms_table} a JOIN table_cells c USING (atom)),
                    cells AS (
                        SELECT {", ".join(dims)}, sum(mult * units) AS true_count,
                               sum(mult * record_keys) % 256 AS cell_key
                        FROM members GROUP BY ALL),
                    expected AS (
                        SELECT c.*, c.true_count + p.noise AS expected FROM cells c
                        JOIN ptable_noise p
                          ON p.row = least(c.true_count, {int(ptable.largest_row)})
                         AND c.cell_key BETWEEN p.first_key AND p.last_key)
                    SELECT count(*),
                           count(*) FILTER (WHERE NOT coalesce(s.withheld, false)
                               AND s.{table.unit} IS DISTINCT FROM coalesce(e.expected, 0))
                    FROM staged s FULL JOIN expected e ON {on}
                    """
                ).fetchall()
                checked += n
                if bad:
                    differing[table.name] = int(bad)
    finally:
        con.close()
    if differing:
        listed = ", ".join(f"{t}: {n}" for t, n in sorted(differing.items()))
        raise DisclosureError(
            f"release failed its disclosure checks: {sum(differing.values())} published "
            f"count(s) are not the true count plus the perturbation table's noise ({listed})"
        )
    return {"cells_checked": checked, "cells_differing": 0}


def differencing_audit(
    root: Path,
    release_id: str,
    staged: dict[str, Path],
    tables: dict[str, pl.DataFrame],
    population: pl.DataFrame,
    cohorts: CohortDefinitions,
    policy: DisclosurePolicy,
    hierarchies: dict,
) -> dict[str, Any]:
    """The independent LP audit again, on the staged files as they now are (`tables`, read
    from `staged`), against the release the tables were counted from (`population`) and the
    last release published before this one."""
    perturbation = check_perturbation(staged, population, cohorts, policy, hierarchies)
    result = differencing.audit_gate(
        population,
        cohorts,
        hierarchies,
        tables,
        policy,
        history.previous_release(root, cohorts, before=release_id),
    )
    return {**result.to_dict(), "perturbation_check": perturbation}


def account_rows(
    received: int,
    quarantined: int,
    accepted: int,
    removed_by_opt_out: int,
    linked_records: int,
    people: dict[str, int],
    people_counted: int,
) -> dict[str, Any]:
    """Every input row ends in exactly one place: the account, and whether it balances.

    Each count comes from the stage that produced it, so the identities can fail: rows
    received are accepted or quarantined; accepted records are removed by an opt-out or
    linked; linked people have no area or are counted in the cohort tables (every one of them:
    no record is suppressed from count tables).
    """
    accounting = {
        "rows_received": received,
        "rows_quarantined": quarantined,
        "records_accepted": accepted,
        "records_removed_by_opt_out": removed_by_opt_out,
        "records_linked": linked_records,
        "people_linked": people["people"],
        "people_withheld_no_area": people["people_incomplete"],
        "people_counted_in_cohort_tables": people_counted,
    }
    accounting["balanced"] = (
        received == accepted + quarantined
        and accepted == removed_by_opt_out + linked_records
        and people["people"] == people["people_incomplete"] + people_counted
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
GATE_INPUTS = ("anonymised.parquet", "policy.json", "cohorts.json", "hierarchies")


def gate_inputs_dir(root: Path, release_id: str) -> Path:
    return root / "secure" / "releases" / release_id


def save_gate_inputs(
    root: Path,
    release_id: str,
    population: Path,
    cohorts: CohortDefinitions,
    policy: DisclosurePolicy,
    contracts: Path,
) -> Path:
    folder = gate_inputs_dir(root, release_id)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "anonymised.parquet"
    tmp = folder / f".anonymised.{os.getpid()}.tmp"
    try:
        os.link(population, tmp)
    except OSError:  # another file system: copy instead
        tmp.write_bytes(population.read_bytes())
    os.replace(tmp, target)
    for name, model in (("policy.json", policy), ("cohorts.json", cohorts)):
        write_text_atomically(folder / name, model.model_dump_json(indent=2))
    hierarchies = folder / "hierarchies"
    if not hierarchies.exists():  # a re-run of the same staging keeps the first copy
        shutil.copytree(Path(contracts) / "hierarchies", hierarchies)
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
    counts = check_release(staged, folder / "anonymised.parquet", cohorts, policy)
    # Read once for both audits: the population is a row per resident.
    population = pl.read_parquet(history.population_path(root, release_id))
    tables = {name: pl.read_parquet(path) for name, path in staged.items()}
    hierarchies = load_hierarchies(folder / "hierarchies")
    differencing_audit(root, release_id, staged, tables, population, cohorts, policy, hierarchies)
    # Sums and medians again: none from a sensitive cell, and no withheld sum recoverable.
    magnitude_audit.audit_measures(tables, population, cohorts, policy, hierarchies)
    return counts
