"""Linkage: one person key per resident across departments, and a household key per property.

Input is the concatenation of every department's token frame (`pseudonymise.py`): tokens only,
never identifiers. Rules come from `data_contracts/linkage.yaml` (read by `linkage_rules.py`) and
are applied in priority order; links are transitive (connected components over "shares a
token", `components.py`), so a resident recorded with different identifiers in different
departments becomes one person.

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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import combinations

import numpy as np
import polars as pl

from schemas.errors import LinkageError
from transforms.identity.components import (
    INDEX,
    codes_of,
    group_max,
    group_min,
    holds_two,
    join_components,
    relabel,
    spanning,
)
from transforms.identity.linkage_rules import (
    DEFAULT_RULES_PATH,
    TOKEN_PREFIX,
    VETO_PREFIX,
    LinkageRule,
    LinkageRules,
    load_linkage_rules,
    veto_rule,
)

# The rules are read and validated in `linkage_rules`; importers of `link` may keep using them.
__all__ = [
    "DEFAULT_RULES_PATH",
    "TOKEN_PREFIX",
    "LinkCounts",
    "LinkageRule",
    "LinkageRules",
    "TokenColumns",
    "link",
    "link_columns",
    "link_files",
    "load_linkage_rules",
]

try:  # the vectorised SHA-256 of the HMAC engine (transforms/pseudonymise.py), when installed
    import polars_hash as _polars_hash
except ImportError:  # pragma: no cover - depends on the environment
    _polars_hash = None

PERSON_KEY_PREFIX = "p-"
HOUSEHOLD_KEY_PREFIX = "h-"
_KEY_HEX = 24  # 96 bits: collision-free for any borough (birthday bound ~2^48 people)


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


def _distinct_per_group(groups: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Number of distinct values >= 0 per group label (indexed by label, 0 .. size-1)."""
    mask = values >= 0
    frame = pl.DataFrame({"g": groups[mask], "v": values[mask]}).unique()
    counts = np.zeros(size, dtype=np.int64)
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
        held = rows[values[rows] >= 0]
        o, w, v = old[held], new[held], values[held]
        # Where every merged component held at most one value, the merge gained one exactly
        # when the cluster now holds two: its smallest and largest value differ. Only clusters
        # with a component already holding two are counted value by value (10M records,
        # the rules' checks profiled: 6.7 s -> 3.0 s, the same keys and counts).
        two_before = holds_two(o, v, n)
        bad = holds_two(w, v, n)
        mixed = np.zeros(n, dtype=bool)
        mixed[w[two_before[o]]] = True
        if mixed.any():
            bad &= ~mixed
            some = held[mixed[w]]
            before = _distinct_per_group(old[some], values[some], n)
            most_before = np.zeros(n, dtype=np.int64)
            np.maximum.at(most_before, new[some], before[old[some]])
            after = _distinct_per_group(new[some], values[some], n)
            bad |= mixed & (after > most_before)
        found[name] = bad
    return found


def _ambiguouscodes_of(
    old: np.ndarray, codes: np.ndarray, checked: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per checked identifier, the token codes whose records' components hold different values
    of it: a token group that would join two people."""
    has = codes >= 0
    code, comp = codes[has], old[has]
    # Only a token group spanning two or more components can join people: the rest are left
    # out before the joins (most of them, on a council's data).
    joining = spanning(code, comp, int(code.max(initial=-1)) + 1)
    pairs = pl.DataFrame({"code": code[joining], "comp": comp[joining]}).unique()
    involved = np.zeros(old.shape[0], dtype=bool)
    involved[pairs.get_column("comp").to_numpy()] = True
    ambiguous: dict[str, np.ndarray] = {}
    for name, values in checked.items():
        mask = (values >= 0) & involved[old]
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
    # Only token groups spanning two or more components can join anyone: the others are set
    # aside once here, not found again by each step below (10M records, the rules applied:
    # 13.1-14.9 s -> 10.3-13.7 s, the same keys and counts).
    rows = np.flatnonzero(codes >= 0)
    joining = np.zeros(n, dtype=bool)
    joining[rows] = spanning(codes[rows], labels[rows], int(codes.max(initial=-1)) + 1)
    codes = np.where(joining, codes, -1)
    del rows, joining
    proposal = relabel(join_components(labels, codes))
    if not checked:
        return proposal, 0, involved
    flagged = _conflicted_labels(labels, proposal, checked)
    if not any(bad[proposal].any() for bad in flagged.values()):
        return proposal, 0, involved
    # 1. Refuse whole token groups that would join different values: a record matching two
    #    people is not guessed at.
    ambiguous = _ambiguouscodes_of(labels, codes, checked)
    refused = np.unique(np.concatenate(list(ambiguous.values()))) if ambiguous else np.empty(0)
    for name, groups in ambiguous.items():
        if groups.size:
            counts.conflicts_by_identifier[name] = (
                counts.conflicts_by_identifier.get(name, 0) + int(groups.size)
            )
    touched = np.isin(codes, refused)
    involved |= touched
    proposal = relabel(join_components(labels, np.where(touched, -1, codes)))
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
        # The streaming engine hashes morsels on every core, in order (10M tokens: 3.3 s ->
        # 1.4 s on two cores); the in-memory engine runs the plugin on one.
        hashed = pl.DataFrame([values.alias("v")]).lazy().select(
            pl.lit(prefix) + _polars_hash.col("v").chash.sha2_256().str.slice(0, _KEY_HEX)
        ).collect(engine="streaming")
        return hashed.to_series().alias(values.name)
    uniques = values.drop_nulls().unique()
    hashed = [
        prefix + hashlib.sha256(v.encode()).hexdigest()[:_KEY_HEX] for v in uniques.to_list()
    ]
    return values.replace_strict(uniques, pl.Series(hashed, dtype=pl.String), default=None)


class TokenColumns:
    """Every record's token columns, one column at a time, in record order.

    Linkage needs only integer codes of each rule's tokens and, at the end, one token column at
    a time for the person and household keys: reading them one by one from the departments'
    files (`from_files`) keeps the largest thing in memory one column, not every token of every
    record (docs/operations.md, Scale).
    """

    def __init__(self, height: int, names: set[str], get, holding) -> None:
        self.height = height
        self.names = names
        self._get = get
        self._holding = holding

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> TokenColumns:
        def holding(name: str, wanted: pl.Expr) -> pl.DataFrame:
            column = frame.get_column(name).cast(pl.String)
            return column.to_frame().with_row_index("_row").filter(wanted)

        return cls(frame.height, set(frame.columns), frame.get_column, holding)

    @classmethod
    def from_files(cls, paths: list) -> TokenColumns:
        """The token files' rows in order (as `pl.concat(..., how="diagonal_relaxed")` of
        them); a file without a column contributes nulls."""
        schemas = [pl.read_parquet_schema(p) for p in paths]
        heights = [pl.scan_parquet(p).select(pl.len()).collect().item() for p in paths]
        offsets = [sum(heights[:i]) for i in range(len(paths))]
        files = list(zip(paths, schemas, heights, offsets, strict=True))
        names = {c for schema in schemas for c in schema if c.startswith(TOKEN_PREFIX)}

        def get(name: str) -> pl.Series:
            parts = [
                pl.read_parquet(p, columns=[name]).get_column(name).cast(pl.String)
                if name in schema else pl.repeat(None, h, dtype=pl.String, eager=True)
                for p, schema, h, _ in files
            ]
            # Rechunked: grouping 10M tokens in 14 chunks takes twice as long as in one.
            return pl.concat(parts, rechunk=True).alias(name) if parts else pl.Series(
                name, [], pl.String
            )

        def holding(name: str, wanted: pl.Expr) -> pl.DataFrame:
            found = [
                pl.scan_parquet(p)
                .select(pl.col(name).cast(pl.String))
                .with_row_index("_row", offset=offset)
                .filter(wanted)
                .collect()
                for p, schema, _, offset in files
                if name in schema
            ]
            return pl.concat(found) if found else pl.DataFrame(
                schema={"_row": pl.UInt32, name: pl.String}
            )

        return cls(sum(heights), names, get, holding)

    def get(self, name: str) -> pl.Series:
        return self._get(name)

    def rows_holding(self, name: str, values: pl.Series) -> pl.DataFrame:
        """(`_row`: record number, `name`: token) of the records whose token is one of
        `values`. From files, only those records are kept as the column is read: matching a
        few hundred thousand objections no longer holds 10M tokens in memory."""
        return self._holding(name, pl.col(name).is_in(values.cast(pl.String).implode()))


def link(tokens: pl.DataFrame, rules: LinkageRules) -> tuple[pl.DataFrame, LinkCounts]:
    """Add `person_key` and `household_key` to the token frames of all departments."""
    missing = [c for c in ("department", "row_number") if c not in tokens.columns]
    if missing:
        raise LinkageError(f"token frame lacks column(s) {', '.join(missing)}")
    keys, counts = link_columns(TokenColumns.from_frame(tokens), tokens, rules)
    return tokens.with_columns(keys.get_columns()), counts


def link_files(paths: list, rules: LinkageRules) -> tuple[pl.DataFrame, TokenColumns, LinkCounts]:
    """Link the departments' token files without holding their tokens in memory at once.

    Returns every record's columns except tokens (in the files' order, as
    `pl.concat(..., how="diagonal_relaxed")`) with `person_key` and `household_key`; the token
    columns, to read one at a time (opt-outs match on them); and the counts. The same keys and
    counts as `link` on the concatenated files.
    """
    source = TokenColumns.from_files(paths)
    records = pl.concat(
        [pl.scan_parquet(p).select(pl.exclude(f"^{TOKEN_PREFIX}.*$")).collect() for p in paths],
        how="diagonal_relaxed",
    )
    if "department" not in records.columns or "row_number" not in records.columns:
        raise LinkageError("token files lack the department or row_number column")
    keys, counts = link_columns(source, records, rules)
    return records.with_columns(keys.get_columns()), source, counts


def link_columns(
    source: TokenColumns, records: pl.DataFrame, rules: LinkageRules
) -> tuple[pl.DataFrame, LinkCounts]:
    """`person_key` and `household_key` per record (a two-column frame in record order).

    `records` holds each record's `department` and `row_number` (other columns are ignored);
    `source` its token columns, read one at a time.
    """
    n = records.height
    if n > np.iinfo(INDEX).max:  # before any codes are made in INDEX
        raise LinkageError(f"{n} records: linkage numbers at most {np.iinfo(INDEX).max}")
    counts = LinkCounts(records=n, conflict_resolution=rules.conflicts.resolution)
    vetoes = {i: veto_rule(i) for i in rules.veto_identifiers()}
    with ThreadPoolExecutor(max_workers=1) as coder:
        # Each rule's codes are made (Polars, reading its token column) on a second thread
        # in the order the rules need them, while this one joins components (NumPy, one
        # core). 10M records: the link step 95-100 s -> 89.5 s.
        pending: dict[str, Future] = {}
        order: list[LinkageRule] = []
        for rule in rules.rules:
            order += [*(vetoes[i] for i in rule.vetoed_by), rule]
        for rule in order:  # every veto is some rule's (`veto_identifiers`)
            if rule.name not in pending:
                pending[rule.name] = coder.submit(_codes, source, rule.token_column, n)
        # Then the household tokens' codes, while the last rules are joined.
        household_column = rules.household.token_column if rules.household else None
        household_codes = coder.submit(_codes, source, household_column, n)
        labels = _apply_rules(rules, n, counts, lambda name: pending[name].result())
        unique_codes = [pending[u].result() for u in rules.conflicts.unique_per_person]
        # The rules' codes tell the person keys which tokens are equal; the vetoes' are done.
        rule_codes = {rule.name: pending.pop(rule.name).result() for rule in rules.rules}
        pending.clear()

    person = _person_keys(labels, source, records, rules, rule_codes)
    household, counts.households = _household_keys(
        labels, source, household_column, household_codes.result()
    )
    keys = pl.DataFrame([person, household])
    _fill_counts(counts, records.get_column("department"), household, unique_codes, labels)
    return keys, counts


def _codes(source: TokenColumns, column: str | None, n: int) -> np.ndarray:
    if column not in source.names:
        return np.full(n, -1, dtype=INDEX)
    return codes_of(source.get(column))


def _apply_rules(rules: LinkageRules, n: int, counts: LinkCounts, rule_codes) -> np.ndarray:
    """Every record's person label after the rules in priority order under the conflict
    rule; `rule_codes(name)` gives a rule's (or veto's) token codes."""
    labels = np.arange(n, dtype=INDEX)
    unique_names = list(rules.conflicts.unique_per_person)
    priority = {rule.name: i for i, rule in enumerate(rules.rules)}
    sizes = np.ones(n, dtype=np.int64)  # per record, its person's records so far
    for rule in rules.rules:
        codes = rule_codes(rule.name)
        counts.records_with_token_by_rule[rule.name] = int((codes >= 0).sum())
        # Identifiers this rule may not contradict: one-per-person identifiers of more
        # trusted rules, and the rule's own vetoes.
        checked = {u: rule_codes(u) for u in unique_names if priority[u] < priority[rule.name]}
        checked.update({i: rule_codes(VETO_PREFIX + i) for i in rule.vetoed_by})
        proposal, refused_groups, involved = _refuse_conflicts(labels, codes, checked, counts)
        counts.conflicts_by_rule[rule.name] = refused_groups
        counts.records_in_conflict_by_rule[rule.name] = int(involved.sum())
        size_after = np.bincount(proposal, minlength=n)[proposal]
        first_linked = (sizes == 1) & (size_after > 1)
        counts.records_linked_by_rule[rule.name] = int(first_linked.sum())
        labels, sizes = proposal, size_after
    return labels


def _person_keys(
    labels: np.ndarray,
    source: TokenColumns,
    records: pl.DataFrame,
    rules: LinkageRules,
    rule_codes: dict[str, np.ndarray],
) -> pl.Series:
    """Per record its best token (most trusted rule); per person the smallest best token.

    People kept apart by the conflict rule can share that token; they are told apart by their
    first record (department, row number): still independent of the frame's row order.
    Computed one rule at a time on the rule's token codes (`rule_codes`, taken out as they are
    used): a person holding one distinct token of the rule takes it without comparing text,
    only people holding two or more compare theirs, and people sharing their best token share
    its code. 10M records: 8.9 s -> 6.3 s, and link_files' peak 5.14 -> 3.79 GB (the text
    group-by per rule was its peak), the same keys and counts.
    """
    n = labels.shape[0]
    assigned = np.zeros(n, dtype=bool)  # by person label
    found: list[pl.DataFrame] = []
    for i, rule in enumerate(rules.rules):
        codes = rule_codes.pop(rule.name)
        if rule.token_column not in source.names:
            continue
        rows = np.flatnonzero((codes >= 0) & ~assigned[labels])
        if not rows.size:
            continue
        person, code = labels[rows], codes[rows]
        del codes
        lowest, highest = group_min(person, code, n), group_max(person, code, n)
        people = np.flatnonzero(lowest <= highest)  # the persons holding a token of the rule
        tokens = source.get(rule.token_column)
        several = lowest < highest
        if several.any():
            mixed = several[person]
            smallest = (
                pl.DataFrame({"p": person[mixed], "t": tokens.gather(rows[mixed]),
                              "c": code[mixed]})
                .group_by("p").agg(pl.col("c").get(pl.col("t").arg_min()))
            )
            lowest[smallest.get_column("p").to_numpy()] = smallest.get_column("c").to_numpy()
        chosen = lowest[people]
        first = group_min(code, rows.astype(INDEX), int(code.max()) + 1)  # a record per code
        assigned[people] = True
        found.append(pl.DataFrame({
            "_person": people.astype(labels.dtype),
            "best": tokens.gather(first[chosen]),
            "shared": np.bincount(chosen)[chosen] > 1,
        }).with_columns((pl.lit(f"{i:02d}:") + pl.col("best")).alias("best")))
        del tokens, person, code, rows
    persons = np.flatnonzero(labels == np.arange(n))  # one root per person, ascending
    untokenised = persons[~assigned[persons]]
    record = pl.concat_str([pl.col("department"), pl.lit(":"), pl.col("row_number")])

    def first_record(people: np.ndarray | pl.Series) -> pl.DataFrame:
        """Each of `people`'s first record as text (department:row number)."""
        return (
            records.select("department", "row_number", _person=pl.Series(labels))
            .filter(pl.col("_person").is_in(pl.Series(people).implode()))
            .group_by("_person").agg(record.min().alias("record"))
        )

    if untokenised.size:  # a record is one person's: these best values are never shared
        found.append(first_record(untokenised).select(
            "_person", (pl.lit("untokenised:") + pl.col("record")).alias("best"),
            shared=pl.lit(False),
        ))
    best = pl.concat(found) if found else pl.DataFrame(
        schema={"_person": pl.Int32, "best": pl.String, "shared": pl.Boolean}
    )
    shared = best.filter("shared")
    if shared.height:
        # Rare: people the conflict rule kept apart who share their best token.
        best = best.join(
            first_record(shared.get_column("_person")), on="_person", how="left"
        ).with_columns(
            pl.when(pl.col("record").is_not_null())
            .then(pl.col("best") + "|" + pl.col("record"))
            .otherwise(pl.col("best"))
            .alias("best")
        ).drop("record")
    keyed = best.select(
        "_person", _short_hash(PERSON_KEY_PREFIX, best.get_column("best")).alias("key")
    )
    # Per record: the key of its person, by position in a person-indexed array.
    by_label = np.full(n, -1, dtype=np.int64)
    by_label[keyed.get_column("_person").to_numpy()] = np.arange(keyed.height)
    return keyed.get_column("key").gather(by_label[labels]).alias("person_key")


def _household_keys(
    labels: np.ndarray, source: TokenColumns, column: str | None, codes: np.ndarray
) -> tuple[pl.Series, int]:
    """Per record its household token's key, and the number of households. A record without
    a household token takes its person's most frequent one (ties: the smallest).

    On token codes: most people hold one household token, and only those holding two or more
    are compared on their tokens; the households are counted as codes, not as distinct keys
    (10M records, keys and count: 9.7-10.7 s -> 6.5-8.7 s). `codes` are the household token
    `column`'s (`_codes`).
    """
    n = labels.shape[0]
    has = codes >= 0
    if not has.any():
        return pl.repeat(None, n, dtype=pl.String, eager=True).alias("household_key"), 0
    tokens = source.get(column)
    person, code = labels[has], codes[has]
    lowest, highest = group_min(person, code, n), group_max(person, code, n)  # per person label
    chosen = np.where(lowest <= highest, lowest, -1)
    movers = np.flatnonzero(has & (lowest < highest)[labels])
    if movers.size:
        held = pl.DataFrame(
            {"_person": labels[movers], "t": tokens.gather(movers), "code": codes[movers]}
        )
        picked = (
            held.group_by("_person", "t", "code")
            .len()
            .sort(["_person", "len", "t"], descending=[False, True, False])
            .unique("_person", keep="first")
        )
        chosen[picked.get_column("_person").to_numpy()] = picked.get_column("code").to_numpy()
    households = int(codes.max()) + 1  # codes are 0, 1, ... per distinct token
    first = group_min(codes[has], np.flatnonzero(has), households)  # a record of each token
    taken = chosen[labels]
    row = pl.Series(np.where(has, np.arange(n), first[np.maximum(taken, 0)]))
    # Hashed in record order, then gathered: hashing the distinct tokens gathered from all
    # over the column took longer than hashing every record's in turn.
    keys = _short_hash(HOUSEHOLD_KEY_PREFIX, tokens)
    return keys.gather(row.set(pl.Series(taken < 0), None)).alias("household_key"), households


def _fill_counts(
    counts: LinkCounts, departments: pl.Series, household: pl.Series,
    unique_codes: list[np.ndarray], labels: np.ndarray,
) -> None:
    n = labels.shape[0]
    is_root = labels == np.arange(n)  # one root per person
    counts.persons = int(is_root.sum())
    sizes = np.bincount(labels, minlength=n)[labels] if n else np.zeros(0, dtype=np.int64)
    counts.unmatched_records = int((sizes == 1).sum())
    depts = sorted(departments.unique().drop_nulls().to_list())
    index = departments.replace_strict(
        depts, list(range(len(depts))), return_dtype=pl.Int64
    ).to_numpy()
    # Each person's departments as a bit mask, on NumPy over the records: persons per
    # department and per pair are counted from it, not grouped for each (10M records:
    # these counts 3.9-4.1 s -> 1.9-2.2 s, the same).
    members = [labels[index == i] for i in range(len(depts))]  # each department's records'
    held = np.zeros(n, dtype=np.int64)
    for i, persons in enumerate(members):
        held[persons] |= 1 << i
    records = np.bincount(index, minlength=len(depts))
    unmatched = np.bincount(index[sizes == 1], minlength=len(depts))
    roots = held[is_root]
    for i, department in enumerate(depts):
        counts.records_by_department[department] = int(records[i])
        counts.unmatched_by_department[department] = int(unmatched[i])
        counts.persons_by_department[department] = int((roots >> i & 1).sum())
    counts.persons_with_conflicting_identifiers = _persons_holding_two_values(
        labels, unique_codes
    )
    counts.records_with_household = int(household.is_not_null().sum())
    # Department pairs: share of each side's records whose person also appears in the other.
    masks = [held[persons] for persons in members]  # per department's record, its person's
    for (i, a), (j, b) in combinations(enumerate(depts), 2):
        in_both = int((masks[i] >> j & 1).sum())
        b_in_a = int((masks[j] >> i & 1).sum())
        shared = int(((roots >> i) & (roots >> j) & 1).sum())
        ra, rb = counts.records_by_department[a], counts.records_by_department[b]
        counts.department_pairs[f"{a}|{b}"] = {
            "records_a": ra,
            "records_b": rb,
            "a_records_matched_in_b": in_both,
            "b_records_matched_in_a": b_in_a,
            "match_rate_a_in_b": round(in_both / ra, 4) if ra else 0.0,
            "match_rate_b_in_a": round(b_in_a / rb, 4) if rb else 0.0,
            "persons_in_both": shared,
        }


def _persons_holding_two_values(labels: np.ndarray, unique_codes: list[np.ndarray]) -> int:
    """Persons holding two values of a one-per-person identifier (joined by a more trusted
    rule): their smallest and largest value differ."""
    n = labels.shape[0]
    flagged = np.zeros(n, dtype=bool)
    for values in unique_codes:
        held = values >= 0
        flagged |= holds_two(labels[held], values[held], n)
    return int(flagged.sum())
