"""Benchmark the synthetic council: `python -m benchmarks generate [--residents N] [--seed S]`.

Prints one JSON object. The baseline, measured in the same run, builds the same kind of
residents row by row with one Faker profile call each (no extracts, no files) on at most
20,000 residents; `ratio` compares seconds per resident, ours (population, five extracts and the
ground truth, written to a temporary directory) over the baseline's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks._measure import peak_rss_mb
from transforms.synthetic import faker_per_row_residents, generate_council

BASELINE_MAX_RESIDENTS = 20_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks generate", description=__doc__)
    parser.add_argument("--residents", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="cohortshare-bench-") as root:
        summary = generate_council(Path(root), residents=args.residents, seed=args.seed)
    seconds = summary.seconds

    baseline_residents = min(args.residents, BASELINE_MAX_RESIDENTS)
    started = time.perf_counter()
    faker_per_row_residents(baseline_residents, seed=args.seed)
    baseline_seconds = time.perf_counter() - started

    result = {
        "name": "generate",
        "rows": {"residents": summary.residents, "extract_rows": sum(summary.rows.values())},
        "seconds": round(seconds, 3),
        "peak_rss_mb": peak_rss_mb(),
        "residents_per_second": round(summary.residents / seconds),
        "baseline": (
            f"faker-per-row: one Faker en_GB simple_profile call per resident plus NHS/NI "
            f"numbers in Python, residents only (no extracts, no files), timed on "
            f"{baseline_residents:,} residents"
        ),
        "baseline_seconds": round(baseline_seconds, 3),
        "ratio": round((seconds / summary.residents) / (baseline_seconds / baseline_residents), 4),
    }
    print(json.dumps(result))
    return 0
