"""The linker's hand-written connected components agree with a reference implementation
(SciPy's `connected_components`) on random graphs, as splink checks its own against networkx.

A graph here is what linkage makes: records (nodes) and, per rule, a code per record (-1 for
none); records sharing a code of any rule are joined. The linker applies rules one after the
other, relabelling in between, so the test does too."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from transforms.identity.components import codes_of, join_components, relabel


def reference(n: int, rules: list[np.ndarray]) -> np.ndarray:
    """Per record, the smallest record index of its component, by SciPy: records and codes are
    nodes of one graph, with an edge from each record to each of its codes."""
    rows, cols, offset = [], [], n
    for codes in rules:
        has = np.flatnonzero(codes >= 0)
        rows.append(has)
        cols.append(offset + codes[has])
        offset += int(codes.max(initial=-1)) + 1
    rows, cols = np.concatenate([np.empty(0, np.int64), *rows]), np.concatenate(
        [np.empty(0, np.int64), *cols]
    )
    graph = coo_array((np.ones(rows.size), (rows, cols)), shape=(offset, offset))
    _, component = connected_components(graph, directed=False)
    smallest = np.full(offset, n, dtype=np.int64)
    np.minimum.at(smallest, component[:n], np.arange(n))
    return smallest[component[:n]]


def ours(n: int, rules: list[np.ndarray]) -> np.ndarray:
    labels = np.arange(n, dtype=np.int64)
    for codes in rules:
        labels = relabel(join_components(labels, codes))
    return labels


@st.composite
def graphs(draw) -> tuple[int, list[np.ndarray]]:
    n = draw(st.integers(min_value=1, max_value=40))
    alphabet = draw(st.integers(min_value=1, max_value=12))  # few codes: long chains happen
    code = st.integers(min_value=-1, max_value=alphabet - 1)
    rules = draw(st.lists(st.lists(code, min_size=n, max_size=n), min_size=1, max_size=4))
    return n, [np.array(r, dtype=np.int64) for r in rules]


@settings(deadline=None, max_examples=150)
@given(graphs())
def test_components_match_scipy_on_small_graphs(graph):
    n, rules = graph
    assert np.array_equal(ours(n, rules), reference(n, rules))


@settings(deadline=None, max_examples=30)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    n=st.integers(min_value=100, max_value=5_000),
    density=st.floats(min_value=0.05, max_value=2.0),
    rules=st.integers(min_value=1, max_value=5),
)
def test_components_match_scipy_on_large_random_graphs(seed, n, density, rules):
    rng = np.random.default_rng(seed)
    alphabet = max(1, int(n * density))
    made = []
    for _ in range(rules):
        codes = rng.integers(0, alphabet, n)
        codes[rng.random(n) < 0.3] = -1  # records without this identifier
        made.append(codes)
    assert np.array_equal(ours(n, made), reference(n, made))


@settings(deadline=None, max_examples=100)
@given(st.lists(st.none() | st.sampled_from(["a", "b", "ab", "", "B", "a "]), max_size=60))
def test_codes_are_dense_equal_for_equal_values_and_minus_one_for_null(values):
    codes = codes_of(pl.Series("v", values, dtype=pl.String))
    assert codes.shape == (len(values),)
    for value, code in zip(values, codes, strict=True):
        assert (code == -1) == (value is None)
    seen = {v: c for v, c in zip(values, codes, strict=True) if v is not None}
    assert [seen[v] for v in values if v is not None] == [c for c in codes if c >= 0]
    assert sorted(set(seen.values())) == list(range(len(seen)))  # dense: households counts this


def test_labels_that_are_not_each_components_smallest_record_are_refused():
    with pytest.raises(ValueError, match="smallest record"):
        join_components(np.array([1, 0, 2]), np.array([0, -1, 0]))
