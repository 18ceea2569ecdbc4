"""Build a perturbation table (ptable) for cell-key perturbation of count tables.

The method is that of the sdcTools R package `ptable` (`create_cnt_ptable(D, V, js)`, after
Marley and Leaver 2011 and Giessing 2016), which the ONS's Census 2021 tables and Tau-Argus use:
for each true count i, the probabilities of publishing j are those of maximum entropy subject to
- |j - i| <= D (maximum noise) and j >= 0;
- no j in 1..js (small counts are never published: they become 0 or more than js);
- zero mean (the noise is unbiased) and variance V (or the nearest the support allows, for the
  small counts whose support is cut);
and every count above js + D shares the last row's noise (shifted). The probabilities are then
made whole numbers of the 256 cell keys, exactly zero-mean (an integer program: the nearest
whole numbers with mean zero), and every allowed j keeps at least one key, so a published value
could have come from any true count within D of it (what the differencing audit assumes). Those
minimum keys in the tails raise the variance above V: the achieved variance of every row is
written into the table's description.

Run `python -m transforms.disclosure.ptable --max-noise D --variance V --small-counts JS
--out FILE` to write the YAML kept in data_contracts/ (it records these parameters and this module).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import yaml
from scipy import optimize

from schemas.policy import CELL_KEYS, PerturbationTable
from transforms.files import write_text_atomically


def _support(count: int, max_noise: int, small_counts: int) -> np.ndarray:
    if count == 0:
        return np.zeros(1, dtype=int)  # a true zero stays zero: the cell holds no one
    values = np.arange(max(0, count - max_noise), count + max_noise + 1)
    return values[(values == 0) | (values > small_counts)]


def _distribution(noise: np.ndarray, a: float, b: float) -> np.ndarray:
    exponent = a * noise + b * noise.astype(float) ** 2
    weights = np.exp(exponent - exponent.max())
    return weights / weights.sum()


def _max_entropy(noise: np.ndarray, variance: float) -> np.ndarray:
    """Maximum-entropy probabilities on `noise` with mean 0 and variance `variance`, or the
    variance nearest it that the support allows (small counts, whose support is cut): the
    maximum-entropy family is p ~ exp(a d + b d^2); for each b, a is set for mean 0."""
    if noise.size == 1:
        return np.ones(1)

    def zero_mean(b: float) -> np.ndarray:
        a = optimize.brentq(lambda a: _distribution(noise, a, b) @ noise, -60.0, 60.0)
        return _distribution(noise, a, b)

    def gap(b: float) -> float:
        p = zero_mean(b)
        return float(p @ noise.astype(float) ** 2 - variance) ** 2

    best = optimize.minimize_scalar(
        gap, bounds=(-20.0, 2.0), method="bounded", options={"xatol": 1e-10}
    )
    return zero_mean(float(best.x))


def _whole_keys(p: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Whole numbers of keys nearest 256 p, each at least 1, summing to 256, mean exactly 0."""
    n = p.size
    if n == 1:
        return np.array([CELL_KEYS])
    target = p * CELL_KEYS
    # Variables: keys k (integer), then deviations u >= |k - target|; minimise sum u.
    cost = np.concatenate([np.zeros(n), np.ones(n)])
    eye = np.eye(n)
    rows = [
        np.concatenate([np.ones(n), np.zeros(n)]),  # sum k = 256
        np.concatenate([noise.astype(float), np.zeros(n)]),  # sum k d = 0
    ]
    equal = optimize.LinearConstraint(np.array(rows), [CELL_KEYS, 0], [CELL_KEYS, 0])
    spread = optimize.LinearConstraint(
        np.vstack([np.hstack([eye, -eye]), np.hstack([-eye, -eye])]),
        np.full(2 * n, -np.inf),
        np.concatenate([target, -target]),
    )
    result = optimize.milp(
        cost,
        constraints=[equal, spread],
        integrality=np.concatenate([np.ones(n), np.zeros(n)]),
        bounds=optimize.Bounds(np.concatenate([np.ones(n), np.zeros(n)]), np.inf),
    )
    if not result.success:
        raise ValueError(f"no whole-key table with mean zero on {n} values ({result.message})")
    return np.rint(result.x[:n]).astype(int)


def build_ptable(max_noise: int, variance: float, small_counts: int, name: str) -> dict:
    rows = []
    achieved = []
    for count in range(small_counts + max_noise + 2):
        values = _support(count, max_noise, small_counts)
        noise = values - count
        keys = _whole_keys(_max_entropy(noise, variance), noise)
        rows.append(
            {"count": count, "to": {int(v): int(k) for v, k in zip(values, keys, strict=True)}}
        )
        achieved.append(float(keys @ noise**2) / CELL_KEYS)
    table = {
        "name": name,
        "description": (
            "Cell-key perturbation table for count tables: for a true count (the last row also "
            "for every larger count, shifted), how many of the 256 cell keys publish each "
            "value. Zero mean in every row; achieved variance per row: "
            + ", ".join(f"{v:.2f}" for v in achieved)
            + "."
        ),
        "source": (
            "Maximum-entropy construction of the sdcTools R package ptable (create_cnt_ptable), "
            "as used for the ONS Census 2021 cell-key method; "
            "https://github.com/sdcTools/ptable"
        ),
        "built_by": (
            f"python -m transforms.disclosure.ptable --max-noise {max_noise} "
            f"--variance {variance:g} --small-counts {small_counts} --name {name} "
            "--out data_contracts/ptable.yaml"
        ),
        "max_noise": max_noise,
        "variance": variance,
        "small_counts": small_counts,
        "keys": CELL_KEYS,
        "rows": rows,
    }
    PerturbationTable.model_validate(table)  # the table we write is one the policy accepts
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-noise", type=int, required=True)
    parser.add_argument("--variance", type=float, required=True)
    parser.add_argument("--small-counts", type=int, required=True)
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", required=True, help="the YAML file to write")
    args = parser.parse_args(argv)
    name = args.name or f"D{args.max_noise}V{math.floor(args.variance * 100)}js{args.small_counts}"
    table = build_ptable(args.max_noise, args.variance, args.small_counts, name)
    header = "# Cell-key perturbation table, made by the command in built_by: do not edit.\n"
    text = yaml.safe_dump(table, sort_keys=False, width=100, default_flow_style=None)
    write_text_atomically(Path(args.out), header + text)


if __name__ == "__main__":
    main()
