"""Benchmark: link 1M token records across 5 departments, ours against a plain union-find.

`python -m benchmarks link [--records N]`

The input is simulated at token level (linkage never sees more): residents with one token per
rule, five departments drawing overlapping residents at the synthetic council's proportions,
each department missing the identifiers its system often lacks, and 2% of tokens replaced
(an identifier typed wrongly; an NHS or NI number typed wrongly fails its check: missing).
Ours is `transforms.identity.link.link` with the shipped rules, conflict checks and quality counts;
the baseline is a Python union-find over the same token equalities in rule order, with no
conflict checks or counts. `ratio` is our seconds over the baseline's. Pairwise precision and
recall against the simulated truth are reported for both.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import polars as pl

from benchmarks._measure import peak_rss_mb
from transforms.identity.link import link, load_linkage_rules

TARGET_SECONDS = 30.0
# Share of all records, and the chance each rule's identifiers are present, per department
# (from the synthetic council at its default settings).
DEPARTMENTS = {
    "adult_social_care": (0.027, {"nhs_number": 0.96, "ni_number": 0.0, "household": 0.0}),
    "childrens_services": (0.012, {"nhs_number": 0.7, "ni_number": 0.0, "household": 0.8}),
    "housing": (0.119, {"nhs_number": 0.0, "ni_number": 0.85, "household": 1.0}),
    "council_tax": (0.610, {"nhs_number": 0.0, "ni_number": 0.4, "household": 1.0,
                            "date_of_birth": 0.45}),
    "benefits": (0.232, {"nhs_number": 0.0, "ni_number": 1.0, "household": 0.9}),
}
DOB_RULES = ("name_dob_sector", "name_dob", "forename_dob_postcode", "veto_date_of_birth")
NOISE = 0.02


def _tokens(ids: np.ndarray, salt: int) -> pl.Series:
    """Token-like hex text (48 characters) standing for an identifier id."""
    s = pl.Series(ids.astype(np.uint64))
    parts = [s.hash(seed=salt * 7 + i).cast(pl.String) for i in range(3)]
    return parts[0] + parts[1] + parts[2]


def simulate(records: int, seed: int, rules) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    residents = int(records * 1.45)
    frames, truth = [], []
    names = [r.name for _, r in rules.token_rules() if r.name != "household"]
    for department, (share, presence) in DEPARTMENTS.items():
        n = int(records * share)
        who = rng.choice(residents, n, replace=False)
        columns = {"department": [department] * n}
        for i, name in enumerate(names + ["household"]):
            ids = who if name != "household" else who // 2
            keep = rng.random(n) < presence.get(name, 1.0)
            if name in DOB_RULES:
                keep &= rng.random(n) < presence.get("date_of_birth", 1.0)
            noisy = rng.random(n) < NOISE
            if name in ("nhs_number", "ni_number"):
                keep &= ~noisy  # a mistyped national number fails its check: missing
            else:
                ids = np.where(noisy, residents + rng.integers(0, 2**40, n), ids)
            token = _tokens(ids, i)
            columns[f"tok_{name}"] = token.zip_with(pl.Series(keep), pl.Series([None] * n,
                                                                                dtype=pl.String))
        frames.append(pl.DataFrame(columns))
        truth.append(who)
    frame = pl.concat(frames).with_row_index("row_number").with_columns(
        pl.col("row_number").cast(pl.Int64)
    )
    return frame, np.concatenate(truth)


def baseline_union_find(frame: pl.DataFrame, names: list[str]) -> list[int]:
    parent = list(range(frame.height))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for name in names:
        first: dict[str, int] = {}
        for row, token in enumerate(frame.get_column(f"tok_{name}").to_list()):
            if token is None:
                continue
            other = first.setdefault(token, row)
            if other != row:
                a, b = find(row), find(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return [find(x) for x in range(frame.height)]


def pairwise(predicted: pl.Series, truth: np.ndarray) -> tuple[float, float]:
    frame = pl.DataFrame({"p": predicted, "t": truth})

    def pairs(*columns: str) -> int:
        sizes = frame.group_by(*columns).len().get_column("len")
        return int((sizes * (sizes - 1) // 2).sum())

    both, predicted_pairs, true_pairs = pairs("p", "t"), pairs("p"), pairs("t")
    return both / max(predicted_pairs, 1), both / max(true_pairs, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks link")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    rules = load_linkage_rules()
    frame, truth = simulate(args.records, args.seed, rules)

    started = time.perf_counter()
    linked, counts = link(frame, rules)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    roots = baseline_union_find(frame, [r.name for r in rules.rules])
    baseline_seconds = time.perf_counter() - started

    precision, recall = pairwise(linked.get_column("person_key"), truth)
    base_precision, base_recall = pairwise(pl.Series(roots), truth)
    result = {
        "name": "link",
        "rows": frame.height,
        "seconds": round(seconds, 3),
        "peak_rss_mb": peak_rss_mb(),
        "baseline": "python union-find over the same rules, no conflict checks or counts",
        "baseline_seconds": round(baseline_seconds, 3),
        "ratio": round(seconds / baseline_seconds, 4),
        "records_per_second": round(frame.height / seconds),
        "departments": len(DEPARTMENTS),
        "persons": counts.persons,
        "conflicts": counts.conflicts,
        "target_seconds": TARGET_SECONDS,
        "meets_target": seconds < TARGET_SECONDS,
        "pairwise_precision": round(precision, 5),
        "pairwise_recall": round(recall, 5),
        "baseline_pairwise_precision": round(base_precision, 5),
        "baseline_pairwise_recall": round(base_recall, 5),
    }
    print(json.dumps(result))
    return 0
