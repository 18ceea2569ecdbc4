"""Properties of the engine on small random tables and hierarchies.

The oracle is an exhaustive search over every node, grouping rows directly (NumPy), written
independently of the engine's histogram, roll-up and pruning.
"""

import itertools
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.errors import DisclosureError
from transforms.disclosure.anonymise import anonymise
from transforms.disclosure.hierarchy import from_table


@st.composite
def hierarchy_rows(draw, name):
    """A random valid hierarchy: leaves merged into ever fewer groups, '*' on top."""
    leaves = draw(st.integers(2, 6))
    height = draw(st.integers(2, 4))
    columns = [[f"{name}{i}" for i in range(leaves)]]
    groups = list(range(leaves))
    for level in range(1, height - 1):
        width = max(1, len(set(groups)) - draw(st.integers(0, 2)))
        parent = {g: draw(st.integers(0, width - 1)) for g in sorted(set(groups))}
        groups = [parent[g] for g in groups]
        columns.append([f"{name}L{level}G{g}" for g in groups])
    columns.append(["*"] * leaves)
    return [list(row) for row in zip(*columns, strict=True)]


@st.composite
def problems(draw):
    qis = [f"q{i}" for i in range(draw(st.integers(1, 3)))]
    tables = {q: draw(hierarchy_rows(q)) for q in qis}
    rows = draw(st.integers(1, 60))
    data = {
        q: [tables[q][draw(st.integers(0, len(tables[q]) - 1))][0] for _ in range(rows)]
        for q in qis
    }
    data["s"] = [draw(st.sampled_from("abcd")) for _ in range(rows)]
    k = draw(st.integers(1, 5))
    limit = draw(st.sampled_from([0.0, 0.05, 0.1, 0.3, 1.0]))
    l = draw(st.sampled_from([None, 2, 3]))  # noqa: E741
    return qis, tables, pl.DataFrame(data), k, limit, l


def exhaustive(qis, tables, frame, k, limit, l):  # noqa: E741
    """Every node's (loss, suppressed), by grouping the rows at that node."""
    records = frame.height
    results = {}
    for node in itertools.product(*[range(len(tables[q][0])) for q in qis]):
        labels, shares = [], []
        for q, level in zip(qis, node, strict=True):
            lookup = {row[0]: row[level] for row in tables[q]}
            under = {}
            for row in tables[q]:
                under[row[level]] = under.get(row[level], 0) + 1
            column = [lookup[v] for v in frame[q].to_list()]
            labels.append(column)
            shares.append(np.array([under[v] / len(tables[q]) for v in column]))
        classes: dict = {}
        for i, key in enumerate(zip(*labels, strict=True)):
            classes.setdefault(key, []).append(i)
        failing = np.zeros(records, dtype=bool)
        sensitive = frame["s"].to_list()
        for members in classes.values():
            distinct = len({sensitive[i] for i in members})
            if len(members) < k or (l is not None and distinct < l):
                failing[members] = True
        suppressed = int(failing.sum())
        losses = []
        for q, share in zip(qis, shares, strict=True):
            size = len(tables[q])
            total = float(np.where(failing, 1.0, share).sum())
            floor = records / size
            losses.append(max((total - floor) / (records - floor), 0.0) if size > 1 else 0.0)
        results[node] = (float(np.expm1(np.log1p(losses).mean())), suppressed)
    allowed = math.floor(limit * records + 1e-9)
    return {n: v for n, v in results.items() if v[1] <= allowed}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_result_is_optimal_and_safe(problem):
    qis, tables, frame, k, limit, l = problem  # noqa: E741
    hierarchies = {q: from_table(q, f"{q}.csv", tables[q]) for q in qis}
    feasible = exhaustive(qis, tables, frame, k, limit, l)
    if not feasible:
        with pytest.raises(DisclosureError):
            anonymise(frame, qis, hierarchies, k, limit, l=l, sensitive="s" if l else None)
        return
    result = anonymise(frame, qis, hierarchies, k, limit, l=l, sensitive="s" if l else None)
    best = min(loss for loss, _ in feasible.values())
    chosen = tuple(result.levels[q] for q in qis)
    assert chosen in feasible
    assert abs(result.loss - best) < 1e-9
    assert abs(feasible[chosen][0] - result.loss) < 1e-9
    assert result.suppressed == feasible[chosen][1] <= math.floor(limit * frame.height + 1e-9)
    released = result.frame
    assert released.height == frame.height - result.suppressed
    if released.height:
        sizes = released.group_by(qis).agg(pl.len(), pl.col("s").n_unique().alias("distinct"))
        assert sizes["len"].min() >= k
        assert sizes["len"].min() == result.k_achieved
        if l is not None:
            assert sizes["distinct"].min() >= l
