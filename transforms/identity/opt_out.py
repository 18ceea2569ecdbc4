"""Opt-outs: remove every record of a resident who objected, before the population is built.

The opt-out register (data_contracts/opt_out.odcs.yaml) is received like a department's extract:
validated, quarantined, and pseudonymised with the same normalisers and keyed tokens, so an
objection is matched to departments' records by token equality alone. This module sees tokens,
dates and scopes, never an identifier.

Rules (DESIGN.md, privacy property 6):
- An objection applies to a release when its scope is "all" or the pipeline's declared purpose
  (data_contracts/transparency.yaml) and it is dated on or before the release's extract date
  (the latest extract date of the departments' deliveries); a later one is received, not
  applied yet.
- An objection matches a linked person when any linkage rule's token agrees with any of that
  person's records. Vetoes and conflict refusals are deliberately not applied here: linkage
  refuses doubtful joins to keep counts right, but an objection errs on the side of the
  resident, so a resident matched only by a weaker rule (name, date of birth, postcode) is
  removed too, and counted as such.
- Removing a person removes every record of theirs in every department: linkage has already
  joined them, which is why opt-outs are applied to the linked records.

Only counts leave: objections received, matched, applied, and records removed per department.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from transforms.identity.link import LinkageRules, TokenColumns

SCOPE_ALL = "all"


@dataclass
class OptOutCounts:
    """What the opt-out register did to one release: counts only."""

    purpose: str
    as_of: str | None = None  # the release's extract date, ISO
    register_delivery_id: str | None = None
    objections_received: int = 0
    objections_matched: int = 0
    objections_applied: int = 0
    objections_not_yet_applicable: int = 0  # dated after the release's extract date
    objections_other_purpose: int = 0  # scope names another purpose
    objections_applicable_unmatched: int = 0  # apply, but no record found
    objections_matched_by_rule: dict[str, int] = field(default_factory=dict)
    residents_removed: int = 0
    residents_matched_only_by_weaker_rule: int = 0
    records_removed_by_department: dict[str, int] = field(default_factory=dict)

    @property
    def records_removed(self) -> int:
        return sum(self.records_removed_by_department.values())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["records_removed"] = self.records_removed
        return data


def apply_opt_outs(
    linked: pl.DataFrame,
    register: pl.DataFrame | None,
    rules: LinkageRules,
    purpose: str,
    as_of: date,
    tokens: TokenColumns | None = None,
) -> tuple[pl.DataFrame, OptOutCounts]:
    """Linked records without those of residents whose objection applies; and the counts.

    `linked` is `link`'s output (tokens, department, person_key), or `link_files`' (no tokens)
    with its token columns as `tokens`, row for row; `register` the opt-out register's token
    frame (tokens, row_number, objection_date, scope), or None if none was ever accepted.
    """
    removed, counts = objecting_residents(linked, register, rules, purpose, as_of, tokens)
    if removed.len() == 0:
        return linked, counts
    return linked.filter(~pl.col("person_key").is_in(removed.implode())), counts


def objecting_residents(
    linked: pl.DataFrame,
    register: pl.DataFrame | None,
    rules: LinkageRules,
    purpose: str,
    as_of: date,
    tokens: TokenColumns | None = None,
) -> tuple[pl.Series, OptOutCounts]:
    """The person keys of the residents whose objection applies, and the counts, for a caller
    that leaves their records out as it reads them (`build_population(removed=...)`): a
    filtered copy of 10M records held 3.5 GB more at its peak."""
    counts = OptOutCounts(purpose=purpose, as_of=as_of.isoformat())
    if register is None or register.height == 0:
        return pl.Series("person_key", [], dtype=pl.String), counts
    objections = register.select(
        pl.col("row_number").alias("_objection"),
        pl.col("scope").is_in([SCOPE_ALL, purpose]).alias("_in_scope"),
        (pl.col("objection_date").cast(pl.Date) <= pl.lit(as_of)).alias("_due"),
    )
    counts.objections_received = objections.height
    counts.objections_not_yet_applicable = int((~objections["_due"]).sum())
    counts.objections_other_purpose = int((~objections["_in_scope"]).sum())

    tokens = tokens if tokens is not None else TokenColumns.from_frame(linked)
    # One row per (objection, person): the most trusted rule that matched.
    matches = _matches(linked, tokens, register, rules)
    names = [rule.name for rule in rules.rules]
    strong = {names.index(n) for n in rules.conflicts.unique_per_person if n in names}
    per_objection = matches.group_by("_objection").agg(pl.col("_rule").min())
    counts.objections_matched = per_objection.height
    for priority, number in per_objection.group_by("_rule").len().sort("_rule").iter_rows():
        counts.objections_matched_by_rule[names[priority]] = int(number)

    applicable = objections.filter(pl.col("_in_scope") & pl.col("_due"))
    applied = matches.join(applicable.select("_objection"), on="_objection", how="semi")
    counts.objections_applied = applied.get_column("_objection").n_unique()
    counts.objections_applicable_unmatched = applicable.height - counts.objections_applied
    people = applied.group_by("person_key").agg(pl.col("_rule").min())
    counts.residents_removed = people.height
    counts.residents_matched_only_by_weaker_rule = int(
        (~people.get_column("_rule").is_in(sorted(strong))).sum()
    )
    removed = pl.col("person_key").is_in(people.get_column("person_key").implode())
    by_department = (
        linked.select(pl.col("department").filter(removed))  # one column, not every record
        .group_by("department").len().sort("department").iter_rows()
    )
    counts.records_removed_by_department = {d: int(n) for d, n in by_department}
    return people.get_column("person_key"), counts


def _matches(
    linked: pl.DataFrame, tokens: TokenColumns, register: pl.DataFrame, rules: LinkageRules
) -> pl.DataFrame:
    """(objection, person_key, most trusted rule that matched) for every token agreement."""
    found = []
    for priority, rule in enumerate(rules.rules):
        column = rule.token_column
        if column not in register.columns or column not in tokens.names:
            continue
        left = register.select(pl.col("row_number").alias("_objection"), column).drop_nulls()
        # Only records holding a token some objection holds can match: a small share.
        held = tokens.rows_holding(column, left.get_column(column))
        right = held.select(
            linked.get_column("person_key").gather(held.get_column("_row")), column
        ).unique()
        found.append(
            left.join(right, on=column).select(
                "_objection", "person_key", pl.lit(priority, dtype=pl.Int64).alias("_rule")
            )
        )
    if not found:
        return pl.DataFrame(
            schema={"_objection": pl.Int64, "person_key": pl.String, "_rule": pl.Int64}
        )
    return pl.concat(found).group_by("_objection", "person_key").agg(pl.col("_rule").min())


def registers_apart(
    inputs: dict[Path, dict[str, Any]], register_names: Iterable[str]
) -> tuple[dict[Path, dict[str, Any]], dict[Path, dict[str, Any]]]:
    """Split the secure zone's latest deliveries into departments' and opt-out registers'."""
    names = set(register_names)
    departments = {p: m for p, m in inputs.items() if m["department"] not in names}
    registers = {p: m for p, m in inputs.items() if m["department"] in names}
    return departments, registers


def read_register(registers: dict[Path, dict[str, Any]]) -> tuple[pl.DataFrame | None, str | None]:
    """The latest accepted register's token frame and delivery id; (None, None) if none."""
    if not registers:
        return None, None
    path, meta = max(registers.items(), key=lambda item: (item[1]["extract_date"], item[0].name))
    return pl.read_parquet(path), meta["delivery_id"]


def release_extract_date(inputs: dict[Path, dict[str, Any]]) -> date:
    """The release's extract date: the latest extract date of the departments' deliveries."""
    return max(date.fromisoformat(meta["extract_date"]) for meta in inputs.values())
