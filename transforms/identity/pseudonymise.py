"""Pseudonymise one department's accepted rows: normalise, tokenise, derive, drop.

This is one of the few modules that sees identifiable rows (with ingest and validate). What
leaves it is the token frame: `department`, `row_number`, one `tok_<rule>` column per linkage
and household rule (keyed HMAC-SHA256, hex; null when an identifier the rule needs is missing
or invalid), the derived quasi-identifiers `age`, `lsoa`, `sex`, `ethnicity`, and the
contract's `keep` columns. Direct identifiers and their normalised forms never leave this
function; nothing here logs, and exceptions carry column names and counts only.

In the flow, `token_file` pseudonymises a delivery chunk by chunk as validation accepts its rows
and appends the tokens to the delivery's token file (`secure`), so no more than a chunk of
identifiable rows and their tokens is held, whatever the delivery's size.

Token for rule r = HMAC-SHA256(subkey(purpose, r), field_1 US field_2 ...), where the fields are
the rule's normalised identifiers (or parts of them) joined by the ASCII unit separator, and the
subkey is the hex text of HMAC-SHA256(key, "cohortshare/v1/subkey/<purpose>/<rule>")
(`transforms/keys.py`). Rules' `vetoed_by` identifiers get check-only tokens
(`tok_veto_<identifier>`) the same way; the household rule uses purpose "household".
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from schemas.contract import Column, DepartmentContract
from transforms.files import atomic_file, remove_temporaries
from transforms.identity import normalise as norm
from transforms.identity import secure
from transforms.identity.keys import TOKEN_SCHEME, PseudonymisationKey
from transforms.identity.linkage_rules import (
    DEFAULT_RULES_PATH,
    LinkageRule,
    LinkageRules,
    load_linkage_rules,
)
from transforms.intake.checks import CONTAINED, failure
from transforms.intake.chunks import empty_typed

SEPARATOR = "\x1f"
SEXES = ("F", "M")


@dataclass
class PseudonymiseCounts:
    """What pseudonymisation did to one delivery: counts only, never a value."""

    department: str
    key_id: str
    token_scheme: str = TOKEN_SCHEME
    rows: int = 0
    identifiers_present: dict[str, int] = field(default_factory=dict)
    identifiers_invalid: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    postcodes_not_in_geography: int = 0
    sex_unmapped: int = 0
    dropped_columns: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def add(self, part: PseudonymiseCounts) -> None:
        """Add the counts of one slice of the same delivery."""
        self.rows += part.rows
        for mine, theirs in ((self.identifiers_present, part.identifiers_present),
                             (self.identifiers_invalid, part.identifiers_invalid),
                             (self.tokens, part.tokens)):
            for name, value in theirs.items():
                mine[name] = mine.get(name, 0) + value
        self.postcodes_not_in_geography += part.postcodes_not_in_geography
        self.sex_unmapped += part.sex_unmapped
        self.dropped_columns = part.dropped_columns


# --------------------------------------------------------------------------------------------
# HMAC engines. Both compute exactly HMAC-SHA256(subkey, UTF-8 message) as hex; tests hold them to
# each other and to the standard library. `polars-hash` runs RustCrypto's `hmac` and `sha2`
# (SHA-NI where the CPU has it) inside Polars, in parallel; `hashlib` is the portable fallback.

try:
    import polars_hash as _polars_hash
except ImportError:  # pragma: no cover - depends on the environment
    _polars_hash = None


def hmac_engine() -> str:
    return "polars-hash" if _polars_hash is not None else "hashlib"


def _hashlib_hex(messages: pl.Series, subkey: bytes) -> pl.Series:
    """The portable engine: the key's inner and outer states computed once, copied per row."""
    base = hmac.new(subkey, digestmod=hashlib.sha256)

    def one(message: str | None) -> str | None:
        if message is None:
            return None
        mac = base.copy()
        mac.update(message.encode())
        return mac.hexdigest()

    values = messages.cast(pl.String).to_list()
    return pl.Series(messages.name, [one(m) for m in values], dtype=pl.String)


def tokenise_columns(
    frame: pl.DataFrame, subkeys: dict[str, bytes], engine: str | None = None
) -> pl.DataFrame:
    """HMAC-SHA256 hex of every column named in `subkeys` (null stays null), same names.

    The subkey is passed to the plugin inside the expression and never appears in a plan, a
    repr or an error: a failure is re-raised without its message, which could quote the plan.
    """
    engine = engine or hmac_engine()
    if engine == "polars-hash" and _polars_hash is not None:
        expressions = [
            _polars_hash.col(name).cast(pl.String).chash.hmac_sha256(key=subkey.decode("ascii"))
            for name, subkey in subkeys.items()
        ]
        try:
            return (
                frame.lazy()
                .select(expressions)
                .select(pl.all().cast(pl.String))
                .collect(engine="streaming")
            )
        except Exception as exc:  # noqa: BLE001 - the message may carry a plan; never a key
            raise RuntimeError(f"HMAC engine failed ({type(exc).__name__})") from None
    return pl.DataFrame(
        [_hashlib_hex(frame.get_column(n), subkey).alias(n) for n, subkey in subkeys.items()]
    )


def hmac_sha256_hex(messages: pl.Series, subkey: bytes, engine: str | None = None) -> pl.Series:
    """HMAC-SHA256 (hex) of every UTF-8 string in `messages`; null stays null."""
    name = messages.name or "message"
    frame = pl.DataFrame([messages.cast(pl.String).alias(name)])
    return tokenise_columns(frame, {name: subkey}, engine).get_column(name).alias(messages.name)


# --------------------------------------------------------------------------------------------
# Building the messages


def _field_expr(rule_field, normalised: dict[str, str]) -> pl.Expr:
    column = normalised.get(rule_field.identifier)
    if column is None:
        return pl.lit(None, dtype=pl.String)
    expr = pl.col(column)
    if rule_field.part == "initial":
        return expr.str.slice(0, 1)
    if rule_field.part == "sector":
        return norm.postcode_sector(expr)
    if rule_field.part == "district":
        return norm.postcode_district(expr)
    if rule_field.part == "year":
        return expr.str.slice(0, 4)
    return expr


def message_expr(rule: LinkageRule, normalised: dict[str, str]) -> pl.Expr:
    """The text a rule's token is made from; null unless every field is present and valid."""
    parts = [_field_expr(f, normalised) for f in rule.fields]
    return pl.concat_str(parts, separator=SEPARATOR, ignore_nulls=False)


def _identifier_columns(contract: DepartmentContract, frame: pl.DataFrame) -> dict[str, str]:
    """identifier type -> column name, for identifiers the contract tokenises (or derives
    from) that are present in the frame; the first column of a type wins."""
    found: dict[str, str] = {}
    for column in contract.columns:
        usable = column.treatment in ("tokenise", "derive")
        if column.identifier_type and usable and column.name in frame.columns:
            found.setdefault(column.identifier_type, column.name)
    return found


def _mapped(column_name: str, value_map: dict[str, str] | None) -> pl.Expr:
    expr = pl.col(column_name)
    if value_map:
        expr = expr.cast(pl.String).replace(value_map)
    return expr


def _age(dob: pl.Expr, extract_date: date) -> pl.Expr:
    before_birthday = (dob.dt.month() > extract_date.month) | (
        (dob.dt.month() == extract_date.month) & (dob.dt.day() > extract_date.day)
    )
    years = pl.lit(extract_date.year) - dob.dt.year() - before_birthday.cast(pl.Int32)
    return years.cast(pl.Int16)


def _text_column(column: Column | None, frame: pl.DataFrame) -> pl.Expr:
    """A quasi-identifier as text after the contract's value map; null if blank or absent."""
    if column is None or column.name not in frame.columns:
        return pl.lit(None, dtype=pl.String)
    text = _mapped(column.name, column.value_map).cast(pl.String).str.strip_chars()
    return pl.when(text.str.len_bytes() > 0).then(text)


def pseudonymise(
    frame: pl.DataFrame,
    contract: DepartmentContract,
    key: PseudonymisationKey,
    geography: pl.DataFrame,
    extract_date: date,
    rules: LinkageRules | None = None,
) -> tuple[pl.DataFrame, PseudonymiseCounts]:
    """Replace one department's identifiers by tokens; return the token frame and counts.

    A Polars error here could quote a cell value in its message, so it is re-raised by type only.
    """
    rules = rules if rules is not None else load_linkage_rules(DEFAULT_RULES_PATH)
    try:
        return _pseudonymise(frame, contract, key, geography, extract_date, rules)
    except pl.exceptions.PolarsError as exc:
        raise PseudonymisationError(
            f"{contract.department}: pseudonymisation failed ({type(exc).__name__}; details "
            "withheld because they may quote identifier values)"
        ) from None


class PseudonymisationError(RuntimeError):
    """Pseudonymisation failed; the message never carries a value."""


def _pseudonymise(
    frame: pl.DataFrame,
    contract: DepartmentContract,
    key: PseudonymisationKey,
    geography: pl.DataFrame,
    extract_date: date,
    rules: LinkageRules,
) -> tuple[pl.DataFrame, PseudonymiseCounts]:
    if "row_number" not in frame.columns:
        raise ValueError(f"{contract.department}: accepted rows lack the row_number column")
    counts = PseudonymiseCounts(
        department=contract.department, key_id=key.key_id, rows=frame.height
    )
    identifiers = _identifier_columns(contract, frame)

    # 1. Normalise every identifier into internal columns (never returned).
    normalised = {t: f"__n_{t}" for t in identifiers}
    reasons = {t: f"__r_{t}" for t in identifiers}
    work = norm.normalise_frame(frame.lazy(), identifiers, frame.schema, extract_date)

    # 2. Messages per rule, derived quasi-identifiers, kept columns.
    token_rules = rules.token_rules()
    messages = {rule.token_column: f"__m_{rule.name}" for _, rule in token_rules}
    lookup = geography.select("postcode", "lsoa_code")
    sex = next((c for c in contract.columns if c.name == "sex"), None)
    ethnicity = next((c for c in contract.columns if c.name == "ethnicity"), None)
    keep = [c for c in contract.columns if c.treatment == "keep" and c.name in frame.columns]
    dob = (
        pl.col(normalised["date_of_birth"]).str.to_date("%Y-%m-%d")
        if "date_of_birth" in identifiers
        else pl.lit(None, dtype=pl.Date)
    )
    lsoa = (
        pl.col(normalised["postcode"]).replace_strict(
            lookup["postcode"], lookup["lsoa_code"], default=None, return_dtype=pl.String
        )
        if "postcode" in identifiers
        else pl.lit(None, dtype=pl.String)
    )
    staged = (
        work.with_columns(
            *(message_expr(r, normalised).alias(messages[r.token_column]) for _, r in token_rules),
            _age(dob, extract_date).alias("age"),
            lsoa.alias("lsoa"),
            _text_column(sex, frame).alias("__sex_raw"),
            _text_column(ethnicity, frame).alias("ethnicity"),
            *(_mapped(c.name, c.value_map).alias(f"__keep_{c.name}") for c in keep),
        )
        .with_columns(
            pl.when(pl.col("__sex_raw").is_in(SEXES)).then(pl.col("__sex_raw")).alias("sex")
        )
        .collect()
    )

    # 3. Counts: the only facts about identifiers that leave this function.
    no_lsoa = (
        (pl.col("lsoa").is_null() & pl.col(normalised["postcode"]).is_not_null()).sum()
        if "postcode" in identifiers
        else pl.lit(0)
    )
    count_row = staged.select(
        *(norm.present(c).sum().alias(f"present:{t}") for t, c in identifiers.items()),
        *(
            (pl.col(reasons[t]) == why).sum().alias(f"invalid:{t}_{why}")
            for t in identifiers
            for why in norm.REASONS
        ),
        no_lsoa.alias("lsoa_missing"),
        (pl.col("__sex_raw").is_not_null() & pl.col("sex").is_null()).sum().alias("sex_unmapped"),
    ).row(0, named=True)
    for name, value in count_row.items():
        if name.startswith("present:"):
            counts.identifiers_present[name.removeprefix("present:")] = int(value)
        elif name.startswith("invalid:") and value:
            counts.identifiers_invalid[name.removeprefix("invalid:")] = int(value)
    counts.postcodes_not_in_geography = int(count_row["lsoa_missing"])
    counts.sex_unmapped = int(count_row["sex_unmapped"])

    # 4. Tokens, then the token frame: nothing identifiable is selected.
    subkeys = {messages[r.token_column]: key.subkey(p, r.name) for p, r in token_rules}
    tokens = tokenise_columns(staged.select(list(subkeys)), subkeys).rename(
        {messages[r.token_column]: r.token_column for _, r in token_rules}
    )
    for column in tokens.get_columns():
        counts.tokens[column.name] = int(column.is_not_null().sum())
    result = pl.concat(
        [
            staged.select(
                pl.lit(contract.department, dtype=pl.String).alias("department"),
                pl.col("row_number").cast(pl.Int64),
            ),
            tokens,
            staged.select(
                pl.col("age").cast(pl.Int16),
                pl.col("lsoa").cast(pl.String),
                pl.col("sex").cast(pl.String),
                pl.col("ethnicity").cast(pl.String),
                *(pl.col(f"__keep_{c.name}").alias(c.name) for c in keep),
            ),
        ],
        how="horizontal",
    )
    counts.dropped_columns = [c for c in frame.columns if c not in result.columns]
    return result, counts


# --- the token file, written as rows are accepted ------------------------------------------


@contextmanager
def token_file(
    root: Path,
    delivery_id: str,
    extract_date: date,
    *,
    contract: DepartmentContract,
    key: PseudonymisationKey,
    geography: pl.DataFrame,
    rules: LinkageRules,
    file_name: str,
) -> Iterator[TokenFile]:
    """A delivery's token file, filled chunk by chunk as its rows are accepted
    (`validate.receive_delivery(accepted_to=partial(token_file, root, contract=...))`).

    It appears whole, under its final name, only if the block ends without an exception (the
    delivery was accepted); otherwise nothing is left behind."""
    target = secure.token_path(root, contract.department, extract_date, delivery_id)
    # A run killed while writing this file left its partial tokens under a temporary name.
    # Whoever writes a token file holds the data root's lock, so no live writer owns them.
    remove_temporaries(target)
    pseudonymiser = functools.partial(
        pseudonymise, contract=contract, key=key, geography=geography,
        extract_date=extract_date, rules=rules,
    )
    with atomic_file(target) as temporary:
        tokens = TokenFile(
            temporary, pseudonymiser, contract, extract_date, delivery_id, key.key_id, file_name
        )
        try:
            yield tokens
            tokens.finish()
        finally:
            tokens.close()


@dataclass
class TokenFile:
    """An `AcceptedRows` that pseudonymises each chunk of accepted rows and appends its tokens
    to a Parquet file: one chunk's tokens are held at a time, whatever the delivery's size."""

    temporary: Path
    pseudonymiser: Callable[[pl.DataFrame], tuple[pl.DataFrame, PseudonymiseCounts]]
    contract: DepartmentContract
    extract_date: date
    delivery_id: str
    key_id: str
    file_name: str
    writer: pq.ParquetWriter | None = None
    counts: PseudonymiseCounts = field(init=False)

    def __post_init__(self) -> None:
        self.counts = self._no_counts()

    def _no_counts(self) -> PseudonymiseCounts:
        return PseudonymiseCounts(department=self.contract.department, key_id=self.key_id)

    def write(self, frame: pl.DataFrame) -> None:
        try:
            tokens, part = self.pseudonymiser(frame)
            table = secure.arrow(tokens)
            if self.writer is None:
                self.writer = secure.token_writer(self.temporary, table.schema)
            self.writer.write_table(table.cast(self.writer.schema))
        except CONTAINED as exc:  # noqa: BLE001 - this delivery's failure, by type only
            raise failure(self.file_name, "pseudonymisation", exc) from None
        self.counts.add(part)

    def restart(self) -> None:
        """Start the file again (the Parquet writer truncates it when it reopens)."""
        self.close()
        self.counts = self._no_counts()

    def finish(self) -> None:
        """Write the metadata; a delivery without accepted rows still gets its columns."""
        if self.writer is None:
            self.write(empty_typed(self.contract))
        self.writer.add_key_value_metadata(
            secure.token_metadata(
                self.contract.department, self.extract_date, self.delivery_id, self.key_id,
                self.counts.to_dict(),
            )
        )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
