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

# Record numbers, component labels and token codes: a borough's records fit in 31 bits, and
# arrays of half the width halve what linkage holds of them (10M records: link_files' peak
# 5.26 -> 5.14 GB, measured twice each; its time moved less than this machine's noise).
INDEX = np.int32


def codes_of(series: pl.Series) -> np.ndarray:
    """Dense integer codes for equal values (exact, no hashing shortcuts); -1 for null.

    A group-by on the values, not a Categorical cast: tokens never enter a category set, and on
    10M tokens of 7M distinct values it takes 1.6 s where the cast took 5.3 s. The numbering
    of the groups is arbitrary; only which records share a code matters.
    """
    rows = (
        pl.DataFrame({"v": series})
        .with_row_index("i")
        .drop_nulls("v")
        .group_by("v")
        .agg("i")
        .with_row_index("code")
        .select(pl.col("code").cast(pl.Int64), "i")
        .explode("i")
    )
    codes = np.full(series.len(), -1, dtype=INDEX)
    codes[rows.get_column("i").to_numpy()] = rows.get_column("code").to_numpy()
    return codes


def group_min(groups: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    out = np.full(size, np.iinfo(values.dtype).max, dtype=values.dtype)
    np.minimum.at(out, groups, values)
    return out


def group_max(groups: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    out = np.full(size, np.iinfo(values.dtype).min, dtype=values.dtype)
    np.maximum.at(out, groups, values)
    return out


def holds_two(groups: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Per group label (0 .. size-1): whether its values differ (its smallest < its largest)."""
    return group_min(groups, values, size) < group_max(groups, values, size)


def spanning(codes: np.ndarray, components: np.ndarray, size: int) -> np.ndarray:
    """Per record (all holding a code < `size`): whether its code group spans two or more
    components: its smallest and largest component differ. In NumPy, not a unique of the
    (code, component) pairs (linkage's four ambiguity checks on 10M records, profiled:
    10.4 s -> 5.8 s)."""
    return holds_two(codes, components, size)[codes]  # one gather of booleans, not two of integers


def join_components(labels: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Join existing components through records sharing a code (>= 0).

    `labels` holds each record's component as its smallest record index (as `relabel` gives).
    The smallest label is propagated between components and codes over the records of code
    groups that span two or more components only: a group inside one component (most of them,
    once the more trusted rules have linked) or of one record joins nothing. So a rule costs
    one pass over the records holding its code, and the passes that follow a chain of joins
    cost what the joining records cost (the ten joins of 10M records: 12.2 s -> 7.3 s).
    """
    if not np.array_equal(labels[labels], labels):
        raise ValueError("join_components: labels must be each component's smallest record")
    has = codes >= 0
    component, code = labels[has], codes[has]
    if not code.size:
        return labels.copy()
    size = int(code.max()) + 1
    joining = spanning(code, component, size)
    component, code = component[joining], code[joining]
    smallest = np.arange(labels.shape[0], dtype=labels.dtype)  # per component label
    while code.size:
        current = smallest[component]
        proposed = group_min(code, current, size)[code]
        if not (proposed < current).any():
            break
        np.minimum.at(smallest, component, proposed)
    return smallest[labels]


def relabel(labels: np.ndarray) -> np.ndarray:
    """Make every label the minimum record index of its component (pointer jumping)."""
    while True:
        jumped = labels[labels]
        if np.array_equal(jumped, labels):
            return labels
        labels = jumped
