"""Linkage: one person key per resident across departments, and a household key per property.

Input is the concatenation of every department's token frame (`transforms/pseudonymise.py`):
tokens only, never identifiers. Rules come from `data_contracts/linkage.yaml` and are applied in
priority order; links are transitive (connected components over "shares a token"), so a resident
recorded with different identifiers in different departments becomes one person.

Conflict rule (`refuse_link`): a rule may not bring together different values of an identifier a
person holds only one of (NHS number, NI number) when that identifier's rule has higher priority,
nor different values of an identifier in its own `vetoed_by` list (date of birth). Token groups
of the rule that would do so are refused as a whole (a record that matches two different people
is not guessed at); if chains of otherwise clean groups still join different values, every join
the rule would make inside that cluster is refused. Refusals are counted per rule and per
identifier; nothing is merged, or kept apart, silently.

Person keys are derived from the tokens of each person's most trusted identifier (people kept
apart by a refusal are told apart by their first record's department and row number), never from
the frame's row order, so they do not change when rows are shuffled or other residents added.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.errors import LinkageError

try:  # the vectorised SHA-256 of the HMAC engine (transforms/pseudonymise.py), when installed
    import polars_hash as _polars_hash
except ImportError:  # pragma: no cover - depends on the environment
    _polars_hash = None

DEFAULT_RULES_PATH = Path(__file__).resolve().parents[2] / "data_contracts" / "linkage.yaml"
TOKEN_PREFIX = "tok_"
PERSON_KEY_PREFIX = "p-"
HOUSEHOLD_KEY_PREFIX = "h-"
_KEY_HEX = 24  # 96 bits: collision-free for any borough (birthday bound ~2^48 people)

IdentifierName = Literal[
    "nhs_number", "ni_number", "forename", "surname", "date_of_birth", "postcode", "uprn",
    "email", "phone",
]
Part = Literal["full", "initial", "sector", "district", "year"]
_PARTS_FOR = {
    "initial": {"forename", "surname"},
    "sector": {"postcode"},
    "district": {"postcode"},
    "year": {"date_of_birth"},
}


class RuleField(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    identifier: IdentifierName
    part: Part = "full"

    @model_validator(mode="after")
    def _part_fits(self) -> RuleField:
        if self.part != "full" and self.identifier not in _PARTS_FOR[self.part]:
            raise ValueError(f"part '{self.part}' does not apply to {self.identifier}")
        return self


class LinkageRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    purpose: str | None = None
    fields: tuple[RuleField, ...] = Field(min_length=1)
    # Identifiers that, present in both records and different, stop this rule linking them.
    vetoed_by: tuple[IdentifierName, ...] = ()

    @property
    def token_column(self) -> str:
        return TOKEN_PREFIX + self.name


VETO_PREFIX = "veto_"


def veto_rule(identifier: str) -> LinkageRule:
    """The check-only token of an identifier named in some rule's `vetoed_by`."""
    return LinkageRule(
        name=VETO_PREFIX + identifier,
        description=f"check only: {identifier} must not differ",
        fields=(RuleField(identifier=identifier),),
    )


class ConflictPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    unique_per_person: tuple[str, ...] = ()
    resolution: Literal["refuse_link"] = "refuse_link"


class LinkageRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    purpose: str = Field(default="linkage", pattern=r"^[a-z][a-z0-9_]*$")
    rules: tuple[LinkageRule, ...] = Field(min_length=1)
    household: LinkageRule | None = None
    conflicts: ConflictPolicy = ConflictPolicy()

    @model_validator(mode="after")
    def _consistent(self) -> LinkageRules:
        problems = []
        names = [r.name for r in self.rules] + ([self.household.name] if self.household else [])
        for dup in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"rule name '{dup}' is used twice")
        by_name = {r.name: r for r in self.rules}
        for name in self.conflicts.unique_per_person:
            rule = by_name.get(name)
            if rule is None:
                problems.append(f"conflicts.unique_per_person: '{name}' is not a rule")
            elif len(rule.fields) != 1 or rule.fields[0].part != "full":
                problems.append(
                    f"conflicts.unique_per_person: rule '{name}' must be one full identifier"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def token_rules(self) -> list[tuple[str, LinkageRule]]:
        """Every (purpose, rule) that needs a token column, linkage rules first."""
        made = [(rule.purpose or self.purpose, rule) for rule in self.rules]
        made += [(self.purpose, veto_rule(i)) for i in self.veto_identifiers()]
        if self.household is not None:
            made.append((self.household.purpose or "household", self.household))
        return made

    def veto_identifiers(self) -> list[str]:
        found: list[str] = []
        for rule in self.rules:
            found += [i for i in rule.vetoed_by if i not in found]
        return found

    def token_columns(self) -> list[str]:
        return [rule.token_column for _, rule in self.token_rules()]


def load_linkage_rules(path: Path = DEFAULT_RULES_PATH) -> LinkageRules:
    """Read and validate the declared rules; every problem is reported at once."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LinkageError(f"linkage rules {path} cannot be read ({type(exc).__name__})") from None
    except yaml.YAMLError:
        raise LinkageError(f"linkage rules {path} are not valid YAML") from None
    try:
        return LinkageRules.model_validate(document)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'file'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise LinkageError(
            f"{len(problems)} problem(s) in linkage rules {path.name}: " + "; ".join(problems)
        ) from None


@dataclass
class LinkCounts:
    """Linkage quality for the report: counts and rates only, never a token or identifier."""

    records: int = 0
    persons: int = 0
    records_by_department: dict[str, int] = field(default_factory=dict)
    persons_by_department: dict[str, int] = field(default_factory=dict)
    records_linked_by_rule: dict[str, int] = field(default_factory=dict)
    records_with_token_by_rule: dict[str, int] = field(default_factory=dict)
    unmatched_records: int = 0
    unmatched_by_department: dict[str, int] = field(default_factory=dict)
    conflicts_by_rule: dict[str, int] = field(default_factory=dict)
    conflicts_by_identifier: dict[str, int] = field(default_factory=dict)
    records_in_conflict_by_rule: dict[str, int] = field(default_factory=dict)
    persons_with_conflicting_identifiers: int = 0
    department_pairs: dict[str, dict[str, float | int]] = field(default_factory=dict)
    households: int = 0
    records_with_household: int = 0
    conflict_resolution: str = "refuse_link"

    @property
    def conflicts(self) -> int:
        return sum(self.conflicts_by_rule.values())

    def to_dict(self) -> dict:
        data = asdict(self)
        data["conflicts"] = self.conflicts
        return data


# --------------------------------------------------------------------------------------------
# Connected components on integer codes (NumPy): labels are record indices of a component root.


def _codes(series: pl.Series) -> np.ndarray:
    """Integer codes for equal values (exact, no hashing shortcuts); -1 for null.

    A fresh category set per call: tokens never enter Polars' global string cache.
    """
    physical = series.cast(pl.String).cast(pl.Categorical(pl.Categories.random())).to_physical()
    return np.ascontiguousarray(physical.cast(pl.Int64).fill_null(-1).to_numpy())


def _group_min(groups: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    out = np.full(size, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(out, groups, values)
    return out


def _components(labels: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Join existing components (`labels`) through records sharing a code (>= 0)."""
    has = codes >= 0
    if not has.any():
        return labels.copy()
    g = codes[has]
    n = labels.shape[0]
    current = labels.copy()
    while True:
        by_code = _group_min(g, current[has], int(g.max()) + 1)
        proposal = current.copy()
        proposal[has] = np.minimum(current[has], by_code[g])
        # Spread the new minimum to every record of the old component.
        by_label = _group_min(labels, proposal, n)
        proposal = np.minimum(proposal, by_label[labels])
        by_label = _group_min(current, proposal, n)
        proposal = np.minimum(proposal, by_label[current])
        if np.array_equal(proposal, current):
            return current
        current = proposal


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Make every label the minimum record index of its component (pointer jumping)."""
    while True:
        jumped = labels[labels]
        if np.array_equal(jumped, labels):
            return labels
        labels = jumped


def _distinct_per_group(groups: np.ndarray, values: np.ndarray, size: int | None = None
                         ) -> np.ndarray:
    """Number of distinct values >= 0 per group label (indexed by label)."""
    mask = values >= 0
    frame = pl.DataFrame({"g": groups[mask], "v": values[mask]}).unique()
    counts = np.zeros(groups.shape[0] if size is None else size, dtype=np.int64)
    if frame.height:
        per = frame.group_by("g").len()
        counts[per["g"].to_numpy()] = per["len"].to_numpy()
    return counts


def _conflicted_labels(
    old: np.ndarray, new: np.ndarray, checked: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per checked identifier, a boolean per new label: the merge brought a value in that the
    largest merged component did not hold (a second NHS number, a different birth date)."""
    n = old.shape[0]
    found: dict[str, np.ndarray] = {}
    # Only clusters that grew can have gained a value: look at their records alone.
    grew = np.zeros(n, dtype=bool)
    grew[new[new != old]] = True
    rows = np.flatnonzero(grew[new])
    for name, values in checked.items():
        bad = np.zeros(n, dtype=bool)
        if rows.size:
            before = _distinct_per_group(old[rows], values[rows], n)
            most_before = np.zeros(n, dtype=np.int64)
            np.maximum.at(most_before, new[rows], before[old[rows]])
            after = _distinct_per_group(new[rows], values[rows], n)
            bad = after > most_before
        found[name] = bad
    return found


def _ambiguous_codes(
    old: np.ndarray, codes: np.ndarray, checked: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per checked identifier, the token codes whose records' components hold different values
    of it: a token group that would join two people."""
    has = codes >= 0
    pairs = pl.DataFrame({"code": codes[has], "comp": old[has]}).unique()
    ambiguous: dict[str, np.ndarray] = {}
    for name, values in checked.items():
        mask = values >= 0
        holding = pl.DataFrame({"comp": old[mask], "value": values[mask]}).unique()
        per_comp = holding.group_by("comp").len().rename({"len": "held"})
        joined = pairs.join(holding, on="comp").join(per_comp, on="comp")
        stats = joined.group_by("code").agg(
            pl.col("value").n_unique().alias("distinct"), pl.col("held").max().alias("most")
        )
        ambiguous[name] = (
            stats.filter(pl.col("distinct") > pl.col("most")).get_column("code").to_numpy()
        )
    return ambiguous


def _refuse_conflicts(
    labels: np.ndarray, codes: np.ndarray, checked: dict[str, np.ndarray], counts: LinkCounts
) -> tuple[np.ndarray, int, np.ndarray]:
    """Apply one rule under the conflict rule: (new labels, refusals, records involved)."""
    n = labels.shape[0]
    involved = np.zeros(n, dtype=bool)
    proposal = _relabel(_components(labels, codes))
    if not checked:
        return proposal, 0, involved
    flagged = _conflicted_labels(labels, proposal, checked)
    if not any(bad[proposal].any() for bad in flagged.values()):
        return proposal, 0, involved
    # 1. Refuse whole token groups that would join different values: a record matching two
    #    people is not guessed at.
    ambiguous = _ambiguous_codes(labels, codes, checked)
    refused = np.unique(np.concatenate(list(ambiguous.values()))) if ambiguous else np.empty(0)
    for name, groups in ambiguous.items():
        if groups.size:
            counts.conflicts_by_identifier[name] = (
                counts.conflicts_by_identifier.get(name, 0) + int(groups.size)
            )
    touched = np.isin(codes, refused)
    involved |= touched
    proposal = _relabel(_components(labels, np.where(touched, -1, codes)))
    # 2. Chains of clean groups that still join different values: refuse them all.
    flagged = _conflicted_labels(labels, proposal, checked)
    still = np.zeros(n, dtype=bool)
    for name, bad in flagged.items():
        clusters = np.unique(proposal[bad[proposal]])
        if clusters.size:
            counts.conflicts_by_identifier[name] = (
                counts.conflicts_by_identifier.get(name, 0) + int(clusters.size)
            )
        still |= bad[proposal]
    refusals = int(refused.size) + int(np.unique(proposal[still]).size)
    involved |= still
    return np.where(still, labels, proposal), refusals, involved


def _short_hash(prefix: str, values: pl.Series) -> pl.Series:
    """'prefix' + 96 bits of SHA-256 of each (already keyed, pseudonymous) value."""
    if _polars_hash is not None:
        hashed = pl.DataFrame([values.alias("v")]).select(
            pl.lit(prefix) + _polars_hash.col("v").chash.sha2_256().str.slice(0, _KEY_HEX)
        )
        return hashed.to_series().alias(values.name)
    uniques = values.drop_nulls().unique()
    hashed = [
        prefix + hashlib.sha256(v.encode()).hexdigest()[:_KEY_HEX] for v in uniques.to_list()
    ]
    return values.replace_strict(uniques, pl.Series(hashed, dtype=pl.String), default=None)


def link(tokens: pl.DataFrame, rules: LinkageRules) -> tuple[pl.DataFrame, LinkCounts]:
    """Add `person_key` and `household_key` to the token frames of all departments."""
    missing = [c for c in ("department", "row_number") if c not in tokens.columns]
    if missing:
        raise LinkageError(f"token frame lacks column(s) {', '.join(missing)}")
    n = tokens.height
    counts = LinkCounts(records=n, conflict_resolution=rules.conflicts.resolution)
    rule_codes: dict[str, np.ndarray] = {}
    vetoes = [veto_rule(i) for i in rules.veto_identifiers()]
    for rule in [*rules.rules, *vetoes]:
        column = rule.token_column
        series = tokens.get_column(column) if column in tokens.columns else None
        rule_codes[rule.name] = (
            _codes(series) if series is not None else np.full(n, -1, dtype=np.int64)
        )

    labels = np.arange(n, dtype=np.int64)
    unique_names = list(rules.conflicts.unique_per_person)
    priority = {rule.name: i for i, rule in enumerate(rules.rules)}
    for rule in rules.rules:
        codes = rule_codes[rule.name]
        counts.records_with_token_by_rule[rule.name] = int((codes >= 0).sum())
        # Identifiers this rule may not contradict: one-per-person identifiers of more
        # trusted rules, and the rule's own vetoes.
        checked = {u: rule_codes[u] for u in unique_names if priority[u] < priority[rule.name]}
        checked.update({i: rule_codes[VETO_PREFIX + i] for i in rule.vetoed_by})
        size_before = np.bincount(labels, minlength=n)[labels]
        proposal, refused_groups, involved = _refuse_conflicts(labels, codes, checked, counts)
        counts.conflicts_by_rule[rule.name] = refused_groups
        counts.records_in_conflict_by_rule[rule.name] = int(involved.sum())
        size_after = np.bincount(proposal, minlength=n)[proposal]
        first_linked = (size_before == 1) & (size_after > 1)
        counts.records_linked_by_rule[rule.name] = int(first_linked.sum())
        labels = proposal

    frame = tokens.with_columns(pl.Series("_person", labels))
    frame = frame.with_columns(_person_keys(frame, rules))
    frame = frame.with_columns(_household_keys(frame, rules))
    _fill_counts(counts, frame, [rule_codes[u] for u in unique_names], labels)
    return frame.drop("_person"), counts


def _person_keys(frame: pl.DataFrame, rules: LinkageRules) -> pl.Expr:
    """Per record its best token (most trusted rule); per person the smallest best token.

    People kept apart by the conflict rule can share that token; they are told apart by their
    first record (department, row number): still independent of the frame's row order.
    """
    candidates = [
        pl.concat_str([pl.lit(f"{i:02d}:"), pl.col(rule.token_column)])
        for i, rule in enumerate(rules.rules)
        if rule.token_column in frame.columns
    ]
    record = pl.concat_str([pl.col("department"), pl.lit(":"), pl.col("row_number")])
    fallback = pl.lit("untokenised:") + record
    best = pl.coalesce(*candidates, fallback) if candidates else fallback
    representative = (
        frame.select("_person", best.alias("best"), record.alias("record"))
        .group_by("_person")
        .agg(pl.col("best").min(), pl.col("record").min())
        .with_columns(
            pl.when(pl.col("best").is_duplicated())
            .then(pl.col("best") + "|" + pl.col("record"))
            .otherwise(pl.col("best"))
            .alias("representative")
        )
    )
    keyed = representative.with_columns(
        _short_hash(PERSON_KEY_PREFIX, representative.get_column("representative")).alias("key")
    )
    joined = frame.select("_person").join(
        keyed.select("_person", "key"), on="_person", how="left", maintain_order="left"
    )
    return pl.lit(joined.get_column("key")).alias("person_key")


def _household_keys(frame: pl.DataFrame, rules: LinkageRules) -> pl.Expr:
    if rules.household is None or rules.household.token_column not in frame.columns:
        return pl.lit(None, dtype=pl.String).alias("household_key")
    column = rules.household.token_column
    # The person's most frequent household token (ties: the smallest) fills records without one.
    per_person = (
        frame.select("_person", column)
        .drop_nulls(column)
        .group_by("_person", column)
        .len()
        .sort(["_person", "len", column], descending=[False, True, False])
        .unique("_person", keep="first")
        .rename({column: "_filled"})
    )
    filled = (
        frame.select("_person", column)
        .join(per_person.select("_person", "_filled"), on="_person", how="left",
              maintain_order="left")
        .select(pl.coalesce(column, "_filled"))
        .to_series()
    )
    return pl.lit(_short_hash(HOUSEHOLD_KEY_PREFIX, filled)).alias("household_key")


def _fill_counts(
    counts: LinkCounts, frame: pl.DataFrame, unique_codes: list[np.ndarray], labels: np.ndarray
) -> None:
    n = frame.height
    counts.persons = int((labels == np.arange(n)).sum())  # one root per person
    sizes = np.bincount(labels, minlength=n)[labels] if n else np.zeros(0, dtype=np.int64)
    departments = frame.get_column("department")
    counts.unmatched_records = int((sizes == 1).sum())
    by_dept = pl.DataFrame({"department": departments, "single": sizes == 1, "p": labels})
    summary = by_dept.group_by("department").agg(
        pl.len().alias("records"),
        pl.col("single").sum().alias("unmatched"),
        pl.col("p").n_unique().alias("persons"),
    ).sort("department")
    for row in summary.iter_rows(named=True):
        counts.records_by_department[row["department"]] = int(row["records"])
        counts.unmatched_by_department[row["department"]] = int(row["unmatched"])
        counts.persons_by_department[row["department"]] = int(row["persons"])
    counts.persons_with_conflicting_identifiers = _persons_holding_two_values(
        labels, unique_codes
    )
    household = frame.get_column("household_key")
    counts.records_with_household = int(household.is_not_null().sum())
    counts.households = int(_codes(household).max(initial=-1)) + 1  # codes are dense
    # Department pairs: share of each side's records whose person also appears in the other.
    presence = by_dept.select("department", "p").unique()
    depts = sorted(counts.records_by_department)
    persons_of = {d: pl.Series("p", [], dtype=pl.Int64) for d in depts}
    for d, group in presence.group_by("department"):
        persons_of[d[0]] = group.get_column("p")
    for a, b in combinations(depts, 2):
        in_both = by_dept.filter(pl.col("department") == a).select(
            pl.col("p").is_in(persons_of[b].implode()).sum()
        ).item()
        b_in_a = by_dept.filter(pl.col("department") == b).select(
            pl.col("p").is_in(persons_of[a].implode()).sum()
        ).item()
        shared = int(persons_of[a].is_in(persons_of[b].implode()).sum())
        ra, rb = counts.records_by_department[a], counts.records_by_department[b]
        counts.department_pairs[f"{a}|{b}"] = {
            "records_a": ra,
            "records_b": rb,
            "a_records_matched_in_b": int(in_both),
            "b_records_matched_in_a": int(b_in_a),
            "match_rate_a_in_b": round(in_both / ra, 4) if ra else 0.0,
            "match_rate_b_in_a": round(b_in_a / rb, 4) if rb else 0.0,
            "persons_in_both": shared,
        }


def _persons_holding_two_values(labels: np.ndarray, unique_codes: list[np.ndarray]) -> int:
    """Persons holding two values of a one-per-person identifier (joined by a more trusted rule)."""
    flagged = np.zeros(labels.shape[0], dtype=bool)
    for values in unique_codes:
        flagged |= _distinct_per_group(labels, values) > 1
    return int(flagged.sum())
