"""A delivery read in chunks, in Polars: everything around the GX row checks.

Each chunk is conformed, screened for formulas and typed before GX sees it (`prepare_chunk`),
the next chunk is prepared in a worker thread while GX checks this one (`prepared_chunks`), and
a `Tally` keeps the delivery's running totals: breaches as (row_number, rule, column), the
failing rows as text, and key hashes to find duplicates split across chunks, which GX cannot see
because it checks one chunk at a time. Accepted rows are not kept: each chunk's go to an
`AcceptedRows` as soon as they pass (the flow pseudonymises and writes them at once), so a
delivery of any size is held a chunk or two at a time.

No GX here (docs/architecture.md, Layers: it stays in `validate`): the conversion of a chunk to
the frame GX reads is passed in by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

import polars as pl

from schemas.contract import DepartmentContract
from schemas.errors import DeliveryRejected
from transforms.intake import ingest
from transforms.intake.common import NESTED, ROW_NUMBER, reject

BREACH_SCHEMA = {ROW_NUMBER: pl.Int64, "rule": pl.String, "column": pl.String}


@dataclass
class Prepared:
    """One chunk read, conformed, screened for formulas and typed: everything before GX."""

    frame: pl.DataFrame  # conformed raw values (formulas neutralised if the contract says so)
    typed: pl.DataFrame
    early: pl.DataFrame  # formula and type breaches, found before GX
    checked: pl.DataFrame  # typed rows without early breaches: what GX validates
    gx_frame: object  # `checked` as the pandas frame GX reads (None if no rows)
    present: dict[str, int]  # non-null raw cells per column
    untyped: dict[str, int]  # cells per column that could not be typed
    neutralised: int


# Typed rows -> the frame GX reads (`validate.to_gx_frame`).
ToGxFrame = Callable[[pl.DataFrame, DepartmentContract], object]


def reader_breaches(extract, conformance) -> pl.DataFrame:
    """What the reader flagged per row (a repeated JSON key, ...), under canonical column names;
    flags on undeclared columns go, as those columns do."""
    flags = extract.flags
    if flags.height == 0:
        return pl.DataFrame(schema=BREACH_SCHEMA)
    mapping = conformance.mapping
    return (
        flags.filter(pl.col("raw_column").is_in(list(mapping)))
        .with_columns(column=pl.col("raw_column").replace_strict(mapping, return_dtype=pl.String))
        .select(list(BREACH_SCHEMA))
    )


def _reject_long_cells(frame: pl.DataFrame, contract: DepartmentContract, name: str) -> None:
    limit = contract.limits.max_cell_bytes
    text = [c for c in frame.columns if c != ROW_NUMBER and frame.schema[c] == pl.String]
    if not text:
        return
    longest = frame.select(pl.col(c).str.len_bytes().max() for c in text).row(0)
    over = [c for c, n in zip(text, longest, strict=True) if n is not None and n > limit]
    if over:
        row = frame.filter(pl.col(over[0]).str.len_bytes() > limit)[ROW_NUMBER][0]
        raise reject(
            name, "resource_limit",
            f"row {row}: column '{contract.column(over[0]).physical_name}' ({over[0]}) holds more "
            f"than {limit} bytes (maxCellBytes; {len(over)} column(s))",
        )


def _nested_cells(frame: pl.DataFrame, contract: DepartmentContract) -> pl.DataFrame:
    """(row_number, column) of cells where JSON put an object or array: never a scalar value."""
    if contract.format not in ("json", "ndjson"):
        return pl.DataFrame(schema={ROW_NUMBER: pl.Int64, "column": pl.String})
    text = [c.name for c in contract.columns if frame.schema[c.name] == pl.String]
    found = [
        frame.filter(pl.col(c) == NESTED).select(ROW_NUMBER, column=pl.lit(c))
        for c in text
    ]
    found = [f for f in found if f.height]
    return pl.concat(found) if found else pl.DataFrame(schema={ROW_NUMBER: pl.Int64,
                                                                 "column": pl.String})


def prepare_chunk(
    batch: pl.DataFrame, contract: DepartmentContract, conformance, name: str,
    to_gx_frame: ToGxFrame, flags: pl.DataFrame | None = None,
) -> Prepared | None:
    frame = ingest.conform(batch, conformance, contract)
    if frame.height == 0:
        return None
    _reject_long_cells(frame, contract, name)
    wrong = ingest.uncoercible_columns(frame, contract)
    if wrong:
        col = contract.column(wrong[0])
        raise reject(
            name, "type_not_coercible",
            f"column '{col.physical_name}' ({col.name}) holds {frame.schema[col.name]}, "
            f"which cannot be read as {col.logical_type} ({len(wrong)} column(s))",
            len(wrong),
        )
    formulas = ingest.formula_cells(frame, contract)
    neutralised = 0
    if contract.formula_policy == "neutralise":
        frame = ingest.neutralise_formulas(frame, formulas)
        neutralised, formulas = formulas.height, formulas.head(0)
    typed, bad_types = ingest.coerce_types(frame, contract, excel_dates=contract.format == "xlsx")
    typable = [c.name for c in contract.columns if c.logical_type != "string"]
    counts = frame.select(pl.col(c).is_not_null().sum() for c in typable)
    nested = _nested_cells(frame, contract)
    rows = frame.select(ROW_NUMBER)
    early = pl.concat(
        [
            formulas.with_columns(rule=pl.lit("formula")).select(list(BREACH_SCHEMA)),
            nested.with_columns(rule=pl.lit("nested")).select(list(BREACH_SCHEMA)),
            bad_types.join(nested, on=[ROW_NUMBER, "column"], how="anti")
            .with_columns(rule=pl.lit("type")).select(list(BREACH_SCHEMA)),
            *(
                [flags.join(rows, on=ROW_NUMBER, how="semi")]
                if flags is not None and flags.height else []
            ),
        ]
    )
    checked = (
        typed.filter(~pl.col(ROW_NUMBER).is_in(early[ROW_NUMBER].implode()))
        if early.height else typed
    )
    return Prepared(
        frame=frame,
        typed=typed,
        early=early,
        checked=checked,
        gx_frame=to_gx_frame(checked, contract) if checked.height else None,
        present=dict(zip(typable, counts.row(0), strict=True)) if typable else {},
        untyped=dict(bad_types.group_by("column").len().iter_rows()),
        neutralised=neutralised,
    )


def prepared_chunks(
    extract, contract: DepartmentContract, conformance, name: str, to_gx_frame: ToGxFrame
) -> Iterator[Prepared]:
    """Prepare the next chunk in a worker thread while the caller validates this one: Polars
    and Arrow release the GIL, so reading, typing and the pandas conversion overlap with GX's
    Python-heavy work. At most two chunks are alive: the one validated and the one read."""
    batches = iter(extract.batches)
    flags = reader_breaches(extract, conformance)

    def step() -> Prepared | None | bool:
        for batch in batches:
            prepared = prepare_chunk(batch, contract, conformance, name, to_gx_frame, flags)
            if prepared is not None:
                return prepared
        return False

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cohortshare-ingest") as pool:
        pending = pool.submit(step)
        while (prepared := pending.result()) is not False:
            pending = pool.submit(step)
            yield prepared
            del prepared  # before waiting on the next one


# --- the delivery's running totals -----------------------------------------------------------


class AcceptedRows(Protocol):
    """Where a delivery's accepted rows go, chunk by chunk in file order, as they are accepted.

    `restart` drops what was written so far: duplicates split across chunks are known only at
    the end, and the accepted rows are then written again without them."""

    def write(self, frame: pl.DataFrame) -> None: ...

    def restart(self) -> None: ...


@dataclass
class Collected:
    """Accepted rows kept in memory, for callers that want the frame (`frame`)."""

    frames: list[pl.DataFrame] = field(default_factory=list)

    def write(self, frame: pl.DataFrame) -> None:
        self.frames.append(frame)

    def restart(self) -> None:
        self.frames.clear()

    def frame(self, contract: DepartmentContract) -> pl.DataFrame:
        # No rechunk: the accepted rows are the largest thing held, and a copy would double them.
        if not self.frames:
            return empty_typed(contract)
        return pl.concat(self.frames, rechunk=False)


class Discarded:
    """Accepted rows dropped as they pass, for a caller that needs only the outcome."""

    def write(self, frame: pl.DataFrame) -> None:
        pass

    def restart(self) -> None:
        pass


@dataclass
class DeliveryRows:
    """A delivery read to the end: how many rows were accepted (the rows went to the
    `AcceptedRows` given), breaches and the quarantined rows as text."""

    rows_accepted: int
    breaches: pl.DataFrame
    quarantined_raw: pl.DataFrame
    rows_received: int
    conformance: ingest.Conformance
    neutralised: int


@dataclass
class Tally:
    """What one delivery's chunks add up to, kept as they pass (`add`), settled by `finish`."""

    path: object  # the open Source (or Path) the rows come from, for re-reading rows
    contract: DepartmentContract
    conformance: ingest.Conformance
    chunk_rows: int
    accepted: AcceptedRows
    breaches: list[pl.DataFrame] = field(default_factory=list)
    quarantined_raw: list[pl.DataFrame] = field(default_factory=list)
    keys: list[pl.DataFrame] = field(default_factory=list)
    present: dict[str, int] = field(default_factory=dict)
    untyped: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    rows_accepted: int = 0
    neutralised: int = 0
    unique_cols: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.unique_cols = [c.name for c in self.contract.columns if c.unique]

    def add(self, chunk: Prepared, rule_breaches: pl.DataFrame) -> None:
        """Count one chunk, given the breaches GX found in it."""
        self.rows += chunk.frame.height
        self.neutralised += chunk.neutralised
        for totals, counts in ((self.present, chunk.present), (self.untyped, chunk.untyped)):
            for col, n in counts.items():
                totals[col] = totals.get(col, 0) + n
        chunk_breaches = pl.concat([chunk.early, rule_breaches])
        bad_rows = chunk_breaches[ROW_NUMBER].unique().implode()
        good = (
            chunk.typed.filter(~pl.col(ROW_NUMBER).is_in(bad_rows))
            if chunk_breaches.height else chunk.typed
        )
        self._pass_on(good)
        del good
        if chunk_breaches.height:
            self.breaches.append(chunk_breaches)
            self.quarantined_raw.append(
                _as_text(chunk.frame.filter(pl.col(ROW_NUMBER).is_in(bad_rows)))
            )
        if self.unique_cols:
            # 8-byte hashes, not the keys: at 10M rows a copy of the ids would cost ~300 MB.
            hashes = (key_hash(c) for c in self.unique_cols)
            self.keys.append(chunk.checked.select(ROW_NUMBER, *hashes))

    def finish(self) -> DeliveryRows:
        """Reject a column none of whose values could be typed; find duplicates across chunks;
        put the pieces together."""
        contract, name = self.contract, self.path.name
        for col, n in self.untyped.items():
            if n and n == self.present.get(col):
                column = contract.column(col)
                raise reject(
                    name, "type_not_coercible",
                    f"column '{column.physical_name}' ({col}): none of {n} values can be read "
                    f"as {column.logical_type}",
                    n,
                )
        breaches, quarantined_raw = self.breaches, self.quarantined_raw
        all_breaches = pl.concat(breaches) if breaches else pl.DataFrame(schema=BREACH_SCHEMA)
        # GX sees one chunk at a time; duplicates split across chunks are found here.
        if len(self.keys) > 1:
            all_keys = pl.concat(self.keys, rechunk=False)
            self.keys.clear()
            late, raw = cross_chunk_duplicates(
                all_keys, self.unique_cols, all_breaches,
                lambda rows: conform_rows(
                    self.path, contract, self.conformance, rows, self.chunk_rows
                ),
            )
            if late.height:
                all_breaches = pl.concat([all_breaches, late])
                quarantined_raw.append(raw)
                self._accept_again(all_breaches[ROW_NUMBER].unique())
        raw_frame = (
            pl.concat(quarantined_raw, how="diagonal_relaxed").unique(ROW_NUMBER).sort(ROW_NUMBER)
            if quarantined_raw else pl.DataFrame(schema={ROW_NUMBER: pl.Int64})
        )
        return DeliveryRows(
            self.rows_accepted, all_breaches, raw_frame, self.rows, self.conformance,
            self.neutralised,
        )

    def _accept_again(self, quarantined: pl.Series) -> None:
        """Write the accepted rows again, without the rows now quarantined: the source is read
        and typed a second time (no GX: its findings are known), one chunk at a time."""
        self.accepted.restart()
        self.rows_accepted = 0
        extract = ingest.open_extract(self.path, self.contract, self.chunk_rows)
        skip = quarantined.implode()
        for batch in extract.batches:
            chunk = prepare_chunk(
                batch, self.contract, self.conformance, self.path.name, lambda *_: None
            )
            if chunk is None:
                continue
            self._pass_on(chunk.typed.filter(~pl.col(ROW_NUMBER).is_in(skip)))

    def _pass_on(self, good: pl.DataFrame) -> None:
        """Typed rows that passed every check, as they leave intake (value maps applied,
        allowed values sharing one vocabulary), to where accepted rows go."""
        self.rows_accepted += good.height
        if not good.height:
            return
        try:
            self.accepted.write(shared_text(ingest.apply_value_maps(good, self.contract),
                                            self.contract))
        except DeliveryRejected as failed:  # pseudonymising them, say: the rows read so far
            failed.rows_received = self.rows  # type: ignore[attr-defined]
            raise


# Dates Polars can write as text; beyond them its Date -> String cast panics.
_TEXT_DATES = (date(1, 1, 1), date(9999, 12, 31))


def _text(name: str, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    if dtype != pl.Date:
        return column.cast(pl.String)
    # Out-of-range dates are nulled before the cast (Polars evaluates both sides of a
    # when/then), then written as their day number, which any reader can still place.
    inside = column.is_between(*_TEXT_DATES)
    written = pl.when(inside).then(column).otherwise(None).cast(pl.String)
    days = pl.format("day {} after 1970-01-01", column.to_physical())
    return pl.when(inside | column.is_null()).then(written).otherwise(days).alias(name)


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows as the quarantine file keeps them: row number, then every value as text."""
    return frame.select(
        pl.col(ROW_NUMBER),
        *(_text(c, t) for c, t in frame.schema.items() if c != ROW_NUMBER),
    )


def shared_text(frame: pl.DataFrame, contract: DepartmentContract) -> pl.DataFrame:
    """Allowed-value text columns rebuilt as views of one small vocabulary.

    Polars keeps text longer than 12 bytes in a buffer, once per row: at 10M rows a column of
    'Support with Memory and Cognition' costs ~500 MB. Gathering from a vocabulary of the
    allowed values (after value maps) shares those bytes, leaving 16 bytes a row. Same dtype,
    same values; a column holding anything outside the vocabulary is left as it is."""
    shared = []
    for col in contract.columns:
        if col.allowed_values is None or frame.schema[col.name] != pl.String:
            continue
        value_map = col.value_map or {}
        words = list(dict.fromkeys(value_map.get(v, v) for v in col.allowed_values))
        values = frame.get_column(col.name)
        index = values.replace_strict(
            words, list(range(len(words))), default=None, return_dtype=pl.UInt32
        )
        if index.null_count() == values.null_count():
            shared.append(pl.Series(col.name, words, dtype=pl.String).gather(index))
    return frame.with_columns(shared) if shared else frame


def key_hash(column: str) -> pl.Expr:
    return pl.when(pl.col(column).is_not_null()).then(pl.col(column).hash(seed=0)).alias(column)


def cross_chunk_duplicates(keys: pl.DataFrame, unique_cols: list[str], known: pl.DataFrame,
                           reread) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows whose unique key repeats across chunks and GX has not flagged: (breaches, their raw
    rows). Candidates share a key hash; their values are re-read to rule out collisions."""
    candidates = {}
    for col in unique_cols:
        # Sorting the hashes finds repeats in far less memory than a hash table of them.
        hashes = keys.get_column(col).drop_nulls().sort()
        repeated = hashes.filter(hashes == hashes.shift(1)).unique()
        del hashes
        if repeated.len() == 0:
            continue
        dup = keys.filter(pl.col(col).is_in(repeated.implode()))
        flagged = known.filter((pl.col("rule") == "unique") & (pl.col("column") == col))
        if dup.filter(~pl.col(ROW_NUMBER).is_in(flagged[ROW_NUMBER].implode())).height:
            candidates[col] = (dup, flagged)
    empty = pl.DataFrame(schema=BREACH_SCHEMA), pl.DataFrame(schema={ROW_NUMBER: pl.Int64})
    if not candidates:
        return empty
    rows = pl.concat([dup.select(ROW_NUMBER) for dup, _ in candidates.values()]).unique()
    raw = reread(rows[ROW_NUMBER])
    found = []
    for col, (_, flagged) in candidates.items():
        value = pl.col(col).str.strip_chars()
        exact = raw.filter(value.is_not_null() & value.is_duplicated())
        exact = exact.filter(~pl.col(ROW_NUMBER).is_in(flagged[ROW_NUMBER].implode()))
        found.append(exact.select(ROW_NUMBER, rule=pl.lit("unique"), column=pl.lit(col)))
    late = pl.concat(found).select(list(BREACH_SCHEMA))
    return late, raw.filter(pl.col(ROW_NUMBER).is_in(late[ROW_NUMBER].implode()))


def conform_rows(path, contract, conformance, row_numbers: pl.Series, chunk_rows: int):
    """Re-read the given rows (conformed, as text) for the quarantine file."""
    extract = ingest.open_extract(path, contract, chunk_rows)
    wanted = row_numbers.implode()
    parts = [
        _as_text(
            ingest.conform(batch, conformance, contract).filter(pl.col(ROW_NUMBER).is_in(wanted))
        )
        for batch in extract.batches
    ]
    return pl.concat(parts)


def empty_typed(contract: DepartmentContract) -> pl.DataFrame:
    # The column type of each logical type: one map, ingest's, where typing happens.
    schema = {ROW_NUMBER: pl.Int64} | {
        c.name: ingest._TARGETS[c.logical_type] for c in contract.columns
    }
    return pl.DataFrame(schema=schema)
