"""Privacy models, checked per equivalence class on cell tables.

Every model here has the property ARX relies on for pruning with record suppression: a class
that satisfies it still satisfies it after being merged with another class that does (a merged
class is at least as large, has at least as many distinct sensitive values, at least the
smaller of the two entropies, and a sensitive distribution no further from the overall one).
So the number of records in failing classes can only fall as a node is generalised, and
"within the suppression limit" is monotone over the lattice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from schemas.errors import ConfigError

# Entropy is compared with log2(l) up to floating-point noise, as classes with exactly l
# equally frequent values are entropy-l-diverse by definition.
ENTROPY_TOLERANCE = 1e-9

L_DIVERSITY_VARIANTS = ("distinct", "entropy")


@dataclass(frozen=True)
class PrivacyModels:
    """The models a release must meet; `sensitive` is needed for l-diversity and t-closeness."""

    k: int
    l: int | None = None  # noqa: E741 - the model's own name
    l_variant: str = "distinct"
    t: float | None = None
    sensitive: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.k, int) or self.k < 1:
            problems.append("k must be a whole number of at least 1")
        if self.l is not None and (not isinstance(self.l, int) or self.l < 1):
            problems.append("l must be a whole number of at least 1")
        if self.l_variant not in L_DIVERSITY_VARIANTS:
            problems.append(f"l-diversity variant must be one of {', '.join(L_DIVERSITY_VARIANTS)}")
        if self.t is not None and not 0 <= self.t <= 1:
            problems.append("t must be between 0 and 1")
        if (self.l is not None or self.t is not None) and not self.sensitive:
            problems.append("l-diversity and t-closeness need a sensitive column")
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def needs_distribution(self) -> bool:
        return self.l is not None or self.t is not None

    def describe(self) -> dict:
        out: dict = {"k": self.k}
        if self.l is not None:
            out.update(l=self.l, l_diversity=self.l_variant, sensitive=self.sensitive)
        if self.t is not None:
            out.update(t=self.t, sensitive=self.sensitive)
        return out


@dataclass(frozen=True)
class ClassStats:
    """Per-class figures of one node: size, and for a sensitive attribute its diversity."""

    sizes: np.ndarray
    failing: np.ndarray  # bool per class: fails some model, so its records are suppressed
    distinct: np.ndarray | None = None
    entropy: np.ndarray | None = None
    distance: np.ndarray | None = None


def class_stats(
    counts: np.ndarray,
    class_ids: np.ndarray,
    n_classes: int,
    sensitive_codes: np.ndarray | None,
    models: PrivacyModels,
    overall: np.ndarray | None,
) -> ClassStats:
    """Check every class of a node. Cells are (class, sensitive value) pairs, class-ordered."""
    sizes = np.bincount(class_ids, weights=counts, minlength=n_classes)
    failing = sizes < models.k
    distinct = entropy = distance = None
    if models.needs_distribution:
        distinct = np.bincount(class_ids, minlength=n_classes)
        p = counts / sizes[class_ids]
        entropy = -np.bincount(class_ids, weights=p * np.log2(p), minlength=n_classes)
        if models.l is not None:
            if models.l_variant == "distinct":
                failing |= distinct < models.l
            else:
                failing |= entropy < math.log2(models.l) - ENTROPY_TOLERANCE
        if models.t is not None:
            q = overall[sensitive_codes]
            # Equal-distance EMD = total variation distance; values absent from a class
            # contribute their whole overall share.
            present = np.bincount(class_ids, weights=np.abs(p - q) - q, minlength=n_classes)
            distance = 0.5 * (present + 1.0)
            failing |= distance > models.t + ENTROPY_TOLERANCE
    return ClassStats(sizes.astype(np.int64), failing, distinct, entropy, distance)
