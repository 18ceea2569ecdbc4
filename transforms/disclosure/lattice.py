"""The generalisation lattice and the search for its optimal node.

A node is one level per quasi-identifier. The search returns the node with least ARX Loss
among those whose records failing the privacy models fit within the suppression limit.

Pruning, as in ARX's Flash:
- Predictive tagging. Failing records can only fall as a node is generalised (see
  `privacy_models`), so a node within the limit tags every coarser node as within it, and a
  node over the limit tags every finer node as over it. A node with no failing records tags
  every coarser node as having none, whose Loss then equals its lower bound.
- Lower bounds. A node's Loss without suppression depends on each quasi-identifier's level
  alone, so it is known for every node before any is checked; Loss with suppression is never
  below it, and it grows with every level. Nodes are visited in bound order and the search
  stops when the next bound reaches the best Loss found.
- Binary search on paths (Flash) finds where a chain of ever-coarser nodes crosses the limit
  with a logarithmic number of checks, tagging the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from transforms.disclosure.evaluation import NodeCheck

# Losses closer than this are equal (ARX rounds its scores); keeps ties stable across runs.
LOSS_TOLERANCE = 1e-12

UNKNOWN, WITHIN, OVER = 0, 1, -1


class Lattice:
    """All nodes of the product of the hierarchies' levels, as an (nodes x QIs) array."""

    def __init__(self, heights: list[int]) -> None:
        self.heights = np.asarray(heights, dtype=np.int64)
        grids = np.indices(tuple(heights), dtype=np.int16)
        self.levels = grids.reshape(len(heights), -1).T.copy()
        self.strides = np.ones(len(heights), dtype=np.int64)
        for i in range(len(heights) - 2, -1, -1):
            self.strides[i] = self.strides[i + 1] * self.heights[i + 1]
        # Per QI and level, which nodes are at least / at most that level (for tagging).
        self._at_least = [
            [self.levels[:, d] >= lv for lv in range(h)] for d, h in enumerate(heights)
        ]
        self._at_most = [
            [self.levels[:, d] <= lv for lv in range(h)] for d, h in enumerate(heights)
        ]

    def __len__(self) -> int:
        return len(self.levels)

    def index(self, levels) -> int:
        return int(np.dot(np.asarray(levels, dtype=np.int64), self.strides))

    def coarser_or_equal(self, node: int) -> np.ndarray:
        levels = self.levels[node]
        mask = self._at_least[0][levels[0]].copy()
        for dim in range(1, len(levels)):
            mask &= self._at_least[dim][levels[dim]]
        return mask

    def finer_or_equal(self, node: int) -> np.ndarray:
        levels = self.levels[node]
        mask = self._at_most[0][levels[0]].copy()
        for dim in range(1, len(levels)):
            mask &= self._at_most[dim][levels[dim]]
        return mask

    def node_bounds(self, per_level: list[np.ndarray]) -> np.ndarray:
        """Geometric-mean aggregate of per-QI losses, for every node at once."""
        logs = np.zeros(len(self))
        for dim, losses in enumerate(per_level):
            logs += np.log1p(np.asarray(losses))[self.levels[:, dim]]
        return np.expm1(logs / len(per_level))


@dataclass
class SearchOutcome:
    levels: tuple[int, ...]
    loss: float
    check: NodeCheck | None
    checked: int = 0
    tagged: int = 0
    phases: dict = field(default_factory=dict)


def find_optimum(
    lattice: Lattice,
    bounds: np.ndarray,
    check: Callable[[tuple[int, ...]], NodeCheck],
    loss_of: Callable[[NodeCheck], float],
) -> SearchOutcome | None:
    """The least-Loss node within the suppression limit, or None if no node is."""
    state = np.zeros(len(lattice), dtype=np.int8)
    no_outliers = np.zeros(len(lattice), dtype=bool)
    checks: dict[int, NodeCheck] = {}

    def run_check(node: int) -> NodeCheck:
        result = check(tuple(int(v) for v in lattice.levels[node]))
        checks[node] = result
        if result.anonymous:
            up = lattice.coarser_or_equal(node)
            state[up] = WITHIN
            if result.outliers == 0:
                no_outliers[up] = True
        else:
            state[lattice.finer_or_equal(node)] = OVER
        return result

    # Visit in bound order; among equal bounds, finer nodes first.
    height = lattice.levels.sum(axis=1)
    order = np.lexsort((height, bounds))
    best_node, best_loss = -1, np.inf
    for node in order:
        bound = bounds[node]
        if bound >= best_loss - LOSS_TOLERANCE:
            break
        if state[node] == OVER:
            continue
        if no_outliers[node]:
            loss = float(bound)
        else:
            if state[node] == UNKNOWN:
                _climb(lattice, node, state, run_check, bounds)
                if state[node] == OVER:
                    continue
            if no_outliers[node]:
                loss = float(bound)
            else:
                result = checks.get(node) or run_check(node)
                loss = loss_of(result)
        if loss < best_loss - LOSS_TOLERANCE:
            best_node, best_loss = int(node), loss
    if best_node < 0:
        return None
    levels = tuple(int(v) for v in lattice.levels[best_node])
    return SearchOutcome(
        levels=levels,
        loss=best_loss,
        check=checks.get(best_node),
        checked=len(checks),
        tagged=int((state != UNKNOWN).sum()),
    )


def _climb(lattice, node, state, run_check, bounds) -> None:
    """Flash's path check: binary search for the first node within the limit on an upward
    path from `node`, so that the checks on the way tag as much of the lattice as possible."""
    path = [int(node)]
    levels = lattice.levels[node].astype(np.int64)
    top = lattice.heights - 1
    current = int(node)
    while True:
        open_dims = np.flatnonzero(levels < top)
        if not len(open_dims):
            break
        successors = current + lattice.strides[open_dims]
        untagged = state[successors] != WITHIN
        if not untagged.any():
            break
        open_dims, successors = open_dims[untagged], successors[untagged]
        # Climb where the bound grows least: the path stays among the nodes the search
        # will visit next, so its checks tag them.
        pick = int(np.argmin(bounds[successors]))
        levels[open_dims[pick]] += 1
        current = int(successors[pick])
        path.append(current)
    low, high = 0, len(path) - 1
    while low <= high:
        mid = (low + high) // 2
        target = path[mid]
        if state[target] == UNKNOWN:
            run_check(target)
        if state[target] == WITHIN:
            high = mid - 1
        else:
            low = mid + 1
