"""Connected components of records that share a value, on integer codes (NumPy).

Linkage is transitive: records sharing a token of a rule are one person, and so are records
joined through a chain of such shares. `join_components` merges existing components (`labels`,
one per record) through records sharing a code, by propagating the smallest label of each code
group and each component until nothing changes; `relabel` then makes every label the smallest
record index of its component (pointer jumping). Together they compute what a union-find over
"shares a code" would, without a Python loop per record; `tests/property/test_components.py`
checks them against SciPy's `connected_components` on random graphs.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def codes_of(series: pl.Series) -> np.ndarray:
    """Integer codes for equal values (exact, no hashing shortcuts); -1 for null.

    A fresh category set per call: tokens never enter Polars' global string cache.
    """
    physical = series.cast(pl.String).cast(pl.Categorical(pl.Categories.random())).to_physical()
    return np.ascontiguousarray(physical.cast(pl.Int64).fill_null(-1).to_numpy())


def group_min(groups: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    out = np.full(size, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(out, groups, values)
    return out


def join_components(labels: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Join existing components (`labels`) through records sharing a code (>= 0)."""
    has = codes >= 0
    if not has.any():
        return labels.copy()
    g = codes[has]
    n = labels.shape[0]
    current = labels.copy()
    while True:
        by_code = group_min(g, current[has], int(g.max()) + 1)
        proposal = current.copy()
        proposal[has] = np.minimum(current[has], by_code[g])
        # Spread the new minimum to every record of the old component.
        by_label = group_min(labels, proposal, n)
        proposal = np.minimum(proposal, by_label[labels])
        by_label = group_min(current, proposal, n)
        proposal = np.minimum(proposal, by_label[current])
        if np.array_equal(proposal, current):
            return current
        current = proposal


def relabel(labels: np.ndarray) -> np.ndarray:
    """Make every label the minimum record index of its component (pointer jumping)."""
    while True:
        jumped = labels[labels]
        if np.array_equal(jumped, labels):
            return labels
        labels = jumped
