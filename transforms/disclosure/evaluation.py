"""Checking one lattice node: its classes, which of them fail the models, what that costs.

A node's cells are rolled up from the smallest already-computed finer node (ARX keeps a
history of snapshots for the same reason): going up one level merges classes, so the work
per node shrinks as the search climbs the lattice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transforms.disclosure.groupify import Cells, class_index, regroup
from transforms.disclosure.hierarchy import Hierarchy
from transforms.disclosure.privacy_models import ClassStats, PrivacyModels, class_stats


@dataclass(frozen=True)
class NodeCheck:
    """Outcome of checking one node against the privacy models."""

    levels: tuple[int, ...]
    outliers: int  # records in classes that fail a model (suppressed if the node is chosen)
    anonymous: bool  # outliers within the suppression limit
    suppressed_share: np.ndarray  # per QI: sum over outlier records of their domain share
    classes: int


class NodeEvaluator:
    """Checks nodes on a histogram of cells, reusing finer nodes' cells (roll-up)."""

    def __init__(
        self,
        base: Cells,
        hierarchies: list[Hierarchy],
        sensitive_radix: int,
        models: PrivacyModels,
        overall: np.ndarray | None,
        max_outliers: int,
        cache_cells: int | None = None,
    ) -> None:
        self.base = base
        self.hierarchies = hierarchies
        self.sensitive_radix = sensitive_radix
        self.models = models
        self.overall = overall
        self.max_outliers = max_outliers
        self.cardinalities = [np.array([len(x) for x in h.labels]) for h in hierarchies]
        self.shares = [[counts / h.domain_size for counts in h.leaf_counts] for h in hierarchies]
        self._maps: dict[tuple[int, int, int], np.ndarray] = {}
        self.cache_cells = cache_cells if cache_cells is not None else max(2_000_000, 4 * len(base))
        self._cache: dict[tuple[int, ...], Cells] = {}
        self._cached_cells = 0
        self._cache_keys: list[tuple[int, ...]] = []
        self._cache_levels = np.zeros((64, len(hierarchies)), dtype=np.int64)
        self._cache_sizes = np.zeros(64, dtype=np.int64)
        self.checks = 0

    # -- cells ---------------------------------------------------------------------------

    def radices(self, levels: tuple[int, ...]) -> tuple[int, ...]:
        qi = tuple(int(c[lv]) for c, lv in zip(self.cardinalities, levels, strict=True))
        return qi + (self.sensitive_radix,)

    def _map(self, dim: int, source: int, target: int) -> np.ndarray:
        key = (dim, source, target)
        if key not in self._maps:
            self._maps[key] = self.hierarchies[dim].level_map(source, target)
        return self._maps[key]

    def cells(self, levels: tuple[int, ...]) -> Cells:
        if levels in self._cache:
            return self._cache[levels]
        source_levels, source = self._closest_finer(levels)
        maps: list[np.ndarray | None] = [
            None if s == t else self._map(d, s, t)
            for d, (s, t) in enumerate(zip(source_levels, levels, strict=True))
        ]
        maps.append(None)  # sensitive attribute is never generalised
        cells = regroup(source, maps, self.radices(levels))
        self._remember(levels, cells)
        return cells

    def _closest_finer(self, levels: tuple[int, ...]) -> tuple[tuple[int, ...], Cells]:
        n = len(self._cache_keys)
        if n:
            finer = (self._cache_levels[:n] <= np.asarray(levels)).all(axis=1)
            if finer.any():
                sizes = np.where(finer, self._cache_sizes[:n], np.iinfo(np.int64).max)
                best = self._cache_keys[int(sizes.argmin())]
                return best, self._cache[best]
        return tuple(0 for _ in levels), self.base

    def _remember(self, levels: tuple[int, ...], cells: Cells) -> None:
        if len(cells) * 4 > len(self.base) * 3 and len(self.base) > 1000:
            return  # barely smaller than the base histogram: not worth keeping
        self._cache[levels] = cells
        self._cached_cells += len(cells)
        evicted = False
        while self._cached_cells > self.cache_cells and self._cache:
            largest = max(self._cache, key=lambda lv: len(self._cache[lv]))
            self._cached_cells -= len(self._cache.pop(largest))
            evicted = True
        if evicted:
            self._cache_keys = []
            self._cache_levels = np.zeros((max(64, 2 * len(self._cache)), len(levels)), np.int64)
            self._cache_sizes = np.zeros(len(self._cache_levels), np.int64)
            items = list(self._cache.items())
        else:
            items = [(levels, cells)]
        for lv, c in items:
            n = len(self._cache_keys)
            if n == len(self._cache_levels):
                self._cache_levels = np.concatenate(
                    [self._cache_levels, np.zeros_like(self._cache_levels)]
                )
                self._cache_sizes = np.concatenate(
                    [self._cache_sizes, np.zeros_like(self._cache_sizes)]
                )
            self._cache_levels[n] = lv
            self._cache_sizes[n] = len(c)
            self._cache_keys.append(lv)

    # -- checks --------------------------------------------------------------------------

    def stats(self, levels: tuple[int, ...]) -> tuple[Cells, np.ndarray, ClassStats]:
        cells = self.cells(levels)
        ids, n_classes = class_index(cells, self.sensitive_radix)
        sens = cells.keys % self.sensitive_radix if self.models.needs_distribution else None
        stats = class_stats(cells.counts, ids, n_classes, sens, self.models, self.overall)
        return cells, ids, stats

    def check(self, levels: tuple[int, ...]) -> NodeCheck:
        self.checks += 1
        cells, ids, stats = self.stats(levels)
        failing_cells = stats.failing[ids]
        outliers = int(cells.counts[failing_cells].sum())
        share = np.zeros(len(levels))
        if outliers:
            failed = Cells(cells.keys[failing_cells], cells.counts[failing_cells], cells.radices)
            weights = failed.counts.astype(np.float64)
            for dim, codes in enumerate(failed.columns()[: len(levels)]):
                # Elementwise, not `@`: an int-by-float matmul goes through BLAS, whose
                # threads spin for milliseconds per call on a busy machine.
                share[dim] = float((weights * self.shares[dim][levels[dim]][codes]).sum())
        return NodeCheck(
            levels=levels,
            outliers=outliers,
            anonymous=outliers <= self.max_outliers,
            suppressed_share=share,
            classes=len(stats.sizes),
        )
