"""Benchmark: keyed HMAC-SHA256 tokens for NHS numbers, ours against the plain `hmac` loop.

`python -m benchmarks pseudonymise [--rows N] [--baseline-rows M] [--repeats R]`

Both sides tokenise the same normalised NHS numbers with the same subkey; ours runs the
vectorised engine `transforms.identity.pseudonymise.tokenise_columns` (polars-hash when
installed, else hashlib), the baseline is `hmac.new(subkey, message, sha256).hexdigest()`
in a Python loop.
The two outputs are compared on every row the baseline computed. `ratio` is our seconds per
identifier over the baseline's; `normalise_and_tokenise_per_second` also counts normalising
the raw, spaced NHS numbers as departments send them.

Other work may run on the machine, so tokenising is timed `--repeats` times:
`identifiers_per_second` (and `meets_target`, `ratio`, `speedup`) use the median run,
`identifiers_per_second_best` the fastest. `identifiers_per_cpu_second` (rows over this
process's CPU time in the median run) does not depend on other processes: wall rate is at most
that times the cores Polars gets to use, `polars_threads`; `load_average_1m` shows how many the
machine had to spare.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import statistics
import time

import numpy as np
import polars as pl

from benchmarks._measure import peak_rss_mb
from schemas.identifiers import NO_CHECK_DIGIT, nhs_check_digit
from transforms.identity import normalise
from transforms.identity.keys import PseudonymisationKey
from transforms.identity.pseudonymise import hmac_engine, tokenise_columns

TARGET_PER_SECOND = 4_000_000
CHUNK = 1_000_000


def synthetic_nhs_numbers(n: int, seed: int = 1) -> pl.Series:
    """n NHS numbers in the never-issued 9xxxxxxxxx range with valid check digits."""
    rng = np.random.default_rng(seed)
    found = []
    remaining = n
    while remaining > 0:
        body = rng.integers(900_000_000, 1_000_000_000, int(remaining * 1.15) + 16)
        check = nhs_check_digit(body)
        valid = body[check != NO_CHECK_DIGIT] * 10 + check[check != NO_CHECK_DIGIT]
        found.append(valid[:remaining])
        remaining -= found[-1].size
    return pl.Series("nhs_number", np.concatenate(found)).cast(pl.String)


def baseline_loop(messages: pl.Series, subkey: bytes) -> tuple[float, list[str]]:
    """The plain loop, chunked so its outputs never all sit in memory; returns a sample."""
    started = time.perf_counter()
    sample: list[str] = []
    for offset in range(0, messages.len(), CHUNK):
        out = [
            hmac.new(subkey, m.encode(), hashlib.sha256).hexdigest()
            for m in messages.slice(offset, CHUNK).to_list()
        ]
        if offset == 0:
            sample = out
    return time.perf_counter() - started, sample


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks pseudonymise")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--baseline-rows", type=int, default=None,
                        help="rows for the plain loop (default: all; its rate is per row)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed runs of our engine; the median and the best are reported")
    args = parser.parse_args(argv)
    rows = args.rows
    baseline_rows = min(args.baseline_rows or rows, rows)

    key = PseudonymisationKey(np.random.default_rng(args.seed).bytes(32), source="benchmark")
    subkey = key.subkey("linkage", "nhs_number")
    identifiers = synthetic_nhs_numbers(rows, args.seed)
    frame = pl.DataFrame([identifiers.alias("m")])

    runs: list[tuple[float, float]] = []  # (wall seconds, CPU seconds of this process)
    for _ in range(max(1, args.repeats)):
        wall, cpu = time.perf_counter(), time.process_time()
        tokens = tokenise_columns(frame, {"m": subkey}).get_column("m")
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    seconds = statistics.median_low(runs)[0]
    best_seconds = min(runs)[0]
    cpu_seconds = statistics.median_low(runs)[1]

    spaced = frame.select(
        pl.concat_str([pl.col("m").str.slice(0, 3), pl.col("m").str.slice(3, 3),
                       pl.col("m").str.slice(6)], separator=" ").alias("raw")
    )
    started = time.perf_counter()
    normalised = (
        normalise.normalise_frame(spaced.lazy(), {"nhs_number": "raw"}, spaced.schema, None,
                                  normalised_name="m")
        .select("m")
        .collect()
    )
    tokenise_columns(normalised, {"m": subkey})
    seconds_with_normalise = time.perf_counter() - started

    baseline_seconds, sample = baseline_loop(identifiers.head(baseline_rows), subkey)
    checked = min(len(sample), CHUNK)
    if tokens.head(checked).to_list() != sample[:checked]:
        raise SystemExit("benchmark: our tokens differ from the standard library's")

    ours_per_row = seconds / rows
    baseline_per_row = baseline_seconds / baseline_rows
    result = {
        "name": "pseudonymise",
        "rows": rows,
        "seconds": round(seconds, 3),
        "seconds_best": round(best_seconds, 3),
        "repeats": len(runs),
        "peak_rss_mb": peak_rss_mb(),
        "baseline": "python hmac.new(subkey, msg, sha256).hexdigest() loop",
        "baseline_rows": baseline_rows,
        "baseline_seconds": round(baseline_seconds, 3),
        "ratio": round(ours_per_row / baseline_per_row, 4),
        "speedup": round(baseline_per_row / ours_per_row, 2),
        "identifiers_per_second": round(rows / seconds),
        "identifiers_per_second_best": round(rows / best_seconds),
        "identifiers_per_cpu_second": round(rows / cpu_seconds),
        "baseline_identifiers_per_second": round(baseline_rows / baseline_seconds),
        "normalise_and_tokenise_per_second": round(rows / seconds_with_normalise),
        "target_identifiers_per_second": TARGET_PER_SECOND,
        "meets_target": rows / seconds >= TARGET_PER_SECOND,
        "engine": hmac_engine(),
        "polars_threads": pl.thread_pool_size(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "tokens_checked_against_stdlib": checked,
    }
    print(json.dumps(result))
    return 0
