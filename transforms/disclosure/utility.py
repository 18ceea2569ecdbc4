"""Information loss of a generalisation, as ARX measures it.

ARX's "Loss" (MetricMDNMLoss with its defaults): for each quasi-identifier, a record costs the
share of the hierarchy's domain its generalised value covers, `leaves under the value / domain
size`; a suppressed record costs 1. The sum over records is normalised between the cost of no
generalisation (every record 1/size) and of full suppression (every record 1), which gives
`(leaves - 1) / (size - 1)` averaged over records. Quasi-identifiers are combined as the
geometric mean of `(1 + loss_i)`, minus 1 (ARX adds 1 so that zeros do not dominate).
"""

from __future__ import annotations

import numpy as np

from transforms.disclosure.hierarchy import Hierarchy


def level_shares(hierarchy: Hierarchy) -> list[np.ndarray]:
    """Domain share of every label at every level."""
    return [counts / hierarchy.domain_size for counts in hierarchy.leaf_counts]


def normalise(total_share: np.ndarray | float, records: int, domain_size: int):
    """ARX's normalisation of a summed share into [0, 1]; a one-value domain never loses."""
    if domain_size <= 1 or records == 0:
        return np.zeros_like(np.asarray(total_share, dtype=np.float64))
    floor = records / domain_size
    return np.maximum((np.asarray(total_share, dtype=np.float64) - floor) / (records - floor), 0.0)


def generalisation_loss(marginal: np.ndarray, hierarchy: Hierarchy) -> np.ndarray:
    """Per level, the Loss of this QI if no record were suppressed (a lower bound).

    `marginal[leaf]` is the number of records with that original value.
    """
    records = int(marginal.sum())
    totals = np.array(
        [
            float((marginal * share[codes]).sum())
            for share, codes in zip(level_shares(hierarchy), hierarchy.codes, strict=True)
        ]
    )
    return normalise(totals, records, hierarchy.domain_size)


def aggregate(losses) -> float:
    """ARX's default aggregate: geometric mean of (1 + loss_i), minus 1."""
    losses = np.asarray(losses, dtype=np.float64)
    return float(np.expm1(np.log1p(losses).mean()))


def node_losses(
    levels: tuple[int, ...],
    unsuppressed_bound: list[np.ndarray],
    suppressed_records: int,
    suppressed_share: np.ndarray,
    records: int,
    hierarchies: list[Hierarchy],
) -> np.ndarray:
    """Per-QI Loss of a node with suppression: suppressed records move from their share to 1."""
    out = np.empty(len(levels))
    for dim, (level, h) in enumerate(zip(levels, hierarchies, strict=True)):
        extra = 0.0
        if h.domain_size > 1 and records:
            floor = records / h.domain_size
            extra = (suppressed_records - suppressed_share[dim]) / (records - floor)
        out[dim] = unsuppressed_bound[dim][level] + extra
    return out


def discernibility(sizes: np.ndarray, suppressed: int, records: int) -> float:
    """ARX's discernibility: class size squared per released class, N per suppressed record."""
    sizes = np.asarray(sizes, dtype=np.float64)
    return float((sizes**2).sum() + suppressed * records)


def average_class_size(sizes: np.ndarray, k: int) -> dict:
    """Average equivalence class size (released records per class), raw and over k."""
    classes = len(sizes)
    avg = float(np.sum(sizes) / classes) if classes else 0.0
    return {"average_class_size": avg, "average_class_size_normalised": avg / k if k else avg}


def precision(levels: tuple[int, ...], heights: list[int], suppressed: int, records: int) -> float:
    """Sweeney's precision loss: mean of level / (height - 1); suppressed records count 1."""
    if not records:
        return 0.0
    per_qi = [lv / (h - 1) if h > 1 else 0.0 for lv, h in zip(levels, heights, strict=True)]
    kept = records - suppressed
    return float((kept * np.mean(per_qi) + suppressed) / records)
