"""Seeded random streams, one per purpose, so each part of the council can be reasoned about alone.

Three independent streams per department keep the output easy to reason about:
- selection: who appears, and their non-identifying fields (support reason, band, ...);
- format: how the department's system writes identifiers (spacing, case, missing values), always on;
- noise: realistic identifier errors on top (nicknames, typos, day-month swaps, a previous
  address, a missing NHS/NI number), at rate `noise`. Every uniform is drawn whatever the rate,
  so the same records are selected and formatted at any rate, and the records changed at a low
  rate are a subset of those changed at a higher one.
"""

from __future__ import annotations

import zlib

import numpy as np


def random_stream(seed: int, *stream: str) -> np.random.Generator:
    """An independent generator per (seed, stream), stable across runs and Python versions."""
    keys = tuple(zlib.crc32(part.encode()) for part in stream)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=keys))


def normalised(weights) -> np.ndarray:
    array = np.asarray(list(weights), dtype=float)
    return array / array.sum()
