"""Grouping of coded records into equivalence classes, on NumPy arrays.

Records are never grouped row by row more than once: the input is reduced to a histogram of
distinct (quasi-identifier codes, sensitive code) cells with counts, and every lattice node's
classes are derived from that histogram, or rolled up from a finer node's cells.

A cell table is a sorted int64 key per cell (mixed-radix packing of the codes, sensitive code
last, so the cells of one class are adjacent) and an int64 count per cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from schemas.errors import ConfigError

# Dense counting (bincount) beats sorting when the key space is small compared to the input.
DENSE_LIMIT = 1 << 24


@dataclass(frozen=True)
class Cells:
    """Cells of one lattice node: sorted packed keys, counts, and the radices they use."""

    keys: np.ndarray
    counts: np.ndarray
    radices: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.keys)

    def columns(self) -> list[np.ndarray]:
        """Unpack the keys into one code array per dimension."""
        out = []
        rest = self.keys
        for radix in reversed(self.radices):
            out.append((rest % radix).astype(np.int32))
            rest = rest // radix
        return out[::-1]


def key_space(radices: tuple[int, ...] | list[int]) -> int:
    space = 1
    for r in radices:
        space *= int(r)
    return space


def pack(columns: list[np.ndarray], radices: tuple[int, ...] | list[int]) -> np.ndarray:
    """Mixed-radix key; the caller guarantees the key space fits in int64."""
    key = columns[0].astype(np.int64)
    for col, radix in zip(columns[1:], radices[1:], strict=True):
        key *= int(radix)
        key += col
    return key


def count_keys(
    keys: np.ndarray, counts: np.ndarray | None, space: int
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct sorted keys and the summed counts of each."""
    if space <= DENSE_LIMIT and space <= max(1 << 16, 16 * len(keys)):
        dense = np.bincount(keys, weights=counts, minlength=space)
        unique = np.flatnonzero(dense)
        return unique.astype(np.int64), dense[unique].astype(np.int64)
    if counts is None:
        unique, sums = np.unique(keys, return_counts=True)
        return unique, sums.astype(np.int64)
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique, np.bincount(inverse, weights=counts).astype(np.int64)


def histogram(columns: list[np.ndarray], radices: tuple[int, ...]) -> Cells:
    """Cells of the raw records (one code array per dimension)."""
    if key_space(radices) >= 1 << 62:
        raise ConfigError(
            "the quasi-identifiers' domains are too large to combine (more than 2^62 "
            "combinations); use fewer quasi-identifiers or coarser level-0 values"
        )
    keys, counts = count_keys(pack(columns, radices), None, key_space(radices))
    return Cells(keys, counts, tuple(radices))


def histogram_query(
    source: pl.LazyFrame,
    codes: list[pl.Expr],
    radices: tuple[int, ...],
    engine: str = "auto",
) -> tuple[Cells, int]:
    """Cells of the records of `source`, coded by `codes` (one UInt32 expression per dimension).

    Coding, packing and counting run as one Polars query, so neither the raw columns nor the
    codes are ever held for all records (with `engine="streaming"` the source is read in
    batches). Also returns how many records had a null code (a value the hierarchy lacks):
    they are left out of the cells and the caller reports them.
    """
    space = key_space(radices)
    if space >= 1 << 62:
        raise ConfigError(
            "the quasi-identifiers' domains are too large to combine (more than 2^62 "
            "combinations); use fewer quasi-identifiers or coarser level-0 values"
        )
    weights = low_weights(radices)
    # The narrowest key that holds every combination: half the hashing and memory of Int64
    # for most tables. No term or partial sum exceeds the largest key, so none overflows.
    dtype = pl.UInt32 if space <= 1 << 32 else pl.Int64
    # `+` propagates nulls (sum_horizontal would count a null code as 0).
    key = None
    for code, weight in zip(codes, weights, strict=True):
        term = code.cast(dtype) * pl.lit(weight, dtype=dtype) if weight != 1 else code.cast(dtype)
        key = term if key is None else key + term
    grouped = source.select(key.alias("key")).group_by("key").len().collect(engine=engine)
    keys = grouped["key"]
    uncoded = 0
    if keys.null_count():
        uncoded = int(grouped.filter(pl.col("key").is_null())["len"].sum())
        grouped = grouped.drop_nulls("key")
    order = np.argsort(grouped["key"].to_numpy(), kind="stable")
    return (
        Cells(
            grouped["key"].to_numpy().astype(np.int64)[order],
            grouped["len"].to_numpy().astype(np.int64)[order],
            tuple(radices),
        ),
        uncoded,
    )


def regroup(cells: Cells, maps: list[np.ndarray | None], radices: tuple[int, ...]) -> Cells:
    """Cells after mapping each dimension's codes through `maps` (None keeps it).

    Only the changed digits are rewritten in place of unpacking every dimension: a roll-up
    usually changes one or two quasi-identifiers.
    """
    keys = cells.keys
    # Rewrite from the least significant changed digit up: once every digit below d is in
    # the new radices, digit d weighs `weights[d]` and still has its old radix.
    weights = low_weights(radices)
    for d in reversed([d for d, m in enumerate(maps) if m is not None]):
        rest, below = np.divmod(keys, weights[d])
        above, digit = np.divmod(rest, cells.radices[d])
        keys = (above * radices[d] + maps[d][digit]) * weights[d] + below
    keys, counts = count_keys(keys, cells.counts, key_space(radices))
    return Cells(keys, counts, tuple(radices))


def low_weights(radices) -> tuple[int, ...]:
    """Place value of each digit of a mixed-radix key (the last digit weighs 1)."""
    weights = []
    w = 1
    for r in reversed(radices):
        weights.append(w)
        w *= int(r)
    return tuple(reversed(weights))


def class_index(cells: Cells, sensitive_radix: int) -> tuple[np.ndarray, int]:
    """Class number of every cell when the last dimension (sensitive) is ignored."""
    if sensitive_radix == 1:
        return np.arange(len(cells), dtype=np.int64), len(cells)
    qi = cells.keys // sensitive_radix
    starts = np.empty(len(qi), dtype=bool)
    starts[:1] = True
    np.not_equal(qi[1:], qi[:-1], out=starts[1:])
    ids = np.cumsum(starts) - 1
    return ids, int(ids[-1]) + 1 if len(ids) else 0
