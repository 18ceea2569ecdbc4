"""Re-identification risk of a set of equivalence classes (counts only, never values).

Definitions follow ARX's risk analysis:
- prosecutor: the attacker knows the person is in the data; risk of a record is 1 / its class size.
- journalist: the attacker matches against a population table; risk is 1 / the size of the
  matching class in the population.
- marketer: the expected share of records re-identified when every record is attacked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class RiskSummary:
    records: int
    classes: int
    sample_uniques: int  # records alone in their class
    records_below_k: int  # records in classes smaller than k
    smallest_class: int
    prosecutor_max: float
    prosecutor_avg: float
    marketer: float
    journalist_max: float | None = None
    journalist_avg: float | None = None
    # Group size -> number of groups of that size (the report's class-size chart).
    class_sizes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _size_counts(sizes: np.ndarray) -> tuple[list[str], list[int]]:
    values, counts = np.unique(sizes, return_counts=True)
    return [str(v) for v in values], [int(c) for c in counts]


def summarise(sizes: np.ndarray, k: int, population_sizes: np.ndarray | None = None) -> RiskSummary:
    """Risk of classes with the given sizes; `population_sizes` aligns with `sizes`."""
    sizes = np.asarray(sizes, dtype=np.int64)
    sizes = sizes[sizes > 0]
    records = int(sizes.sum())
    classes = len(sizes)
    if records == 0:
        return RiskSummary(0, 0, 0, 0, 0, 0.0, 0.0, 0.0)
    journalist_max = journalist_avg = None
    marketer = classes / records
    if population_sizes is not None:
        population = np.asarray(population_sizes, dtype=np.float64)[: len(sizes)]
        journalist_max = float(1.0 / population.min())
        journalist_avg = float((sizes / population).sum() / records)
        marketer = journalist_avg
    return RiskSummary(
        records=records,
        classes=classes,
        sample_uniques=int(sizes[sizes == 1].sum()),
        records_below_k=int(sizes[sizes < k].sum()),
        smallest_class=int(sizes.min()),
        prosecutor_max=float(1.0 / sizes.min()),
        prosecutor_avg=classes / records,
        marketer=marketer,
        journalist_max=journalist_max,
        journalist_avg=journalist_avg,
        class_sizes=dict(zip(*_size_counts(sizes), strict=True)),
    )
