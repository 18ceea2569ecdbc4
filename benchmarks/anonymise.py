"""Benchmark the disclosure-control engine: `python -m benchmarks anonymise [options]`.

Cases: Adult (30,162 records, k=5, the 8 standard quasi-identifiers, 0% and 1% suppression)
and synthetic tables of 1M and 10M records with the same hierarchies. Synthetic records are
Adult records drawn with replacement (seeded), with 10% of each quasi-identifier's cells
redrawn from that column's marginal so that combinations are not just Adult's.

Each case runs in its own process so that its peak memory is its own. `seconds` includes
loading the data (CSV for Adult, Parquet for synthetic) and the hierarchies, as ARX's
reference figures include encoding the data. The data is scanned lazily: reading, coding and
counting the records are one streaming query (phase `histogram`), so `load` is only the scan
set-up and the hierarchies. Writing the anonymised table is timed apart (`output_seconds`, a
streamed `sink_parquet` to a temporary file), as ARX builds its output lazily too.
`cpu_seconds` is the process CPU time of the same run: on a busy machine it moves less than
wall time. `peak_rss_mb_engine` is the peak before the output is written, `peak_rss_mb` after.

Baseline, measured in the same run: a naive engine with no pruning and no roll-up, which
groups the rows by their generalised values at every node of the lattice (Polars group-by)
and keeps the least-Loss node within the limit. On Adult it runs over the whole lattice; on
the synthetic tables it is timed on a random sample of nodes and scaled to the lattice size
(`baseline_method` says which).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks._measure import peak_rss_mb as _rusage_peak_mb

ADULT = Path(__file__).resolve().parent / "adult"  # shipped with the repository
QUASI_IDENTIFIERS = [
    "age",
    "education",
    "marital-status",
    "native-country",
    "race",
    "salary-class",
    "sex",
    "workclass",
]
K = 5
# ARX's anonymize() on this kind of machine (README of the Adult benchmark and issue #5).
ARX_REFERENCE_SECONDS = {"adult_0%": 0.040, "adult_1%": 0.270, "synthetic_1M": 5.0}
ARX_REFERENCE_PEAK_MB = {"synthetic_1M": 1700}
TARGET_SECONDS = {"adult_0%": 0.040, "adult_1%": 0.270, "synthetic_1M": 0.5, "synthetic_10M": 5.0}
TARGET_PEAK_MB = {"synthetic_10M": 4096}
BASELINE_SAMPLE_NODES = 12
CASES = ("adult", "1m", "10m")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks anonymise", description=__doc__)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated: adult,1m,10m")
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (median reported)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--child", nargs=3, metavar=("CASE", "LIMIT", "PATH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        case, limit, path = args.child
        print(
            json.dumps(_run_case(case, float(limit), Path(path), args.repeat, not args.no_baseline))
        )
        return 0

    cases = [c.strip().lower() for c in args.cases.split(",") if c.strip()]
    results = []
    with tempfile.TemporaryDirectory(prefix="cohortshare-anon-bench-") as tmp:
        for case in cases:
            path = ADULT / "adult.csv"
            if case != "adult":
                rows = {"1m": 1_000_000, "10m": 10_000_000}[case]
                path = Path(tmp) / f"synthetic_{case}.parquet"
                synthetic_adult(rows, seed=5).write_parquet(path)
            for limit in (0.0, 0.01):
                repeat = args.repeat if case == "adult" else max(1, min(args.repeat, 3))
                command = [
                    sys.executable,
                    "-m",
                    "benchmarks",
                    "anonymise",
                    "--repeat",
                    str(repeat),
                    "--child",
                    case,
                    str(limit),
                    str(path),
                ]
                if args.no_baseline or limit > 0:
                    command.append("--no-baseline")  # the naive pass covers both limits
                out = subprocess.run(command, capture_output=True, text=True, check=True)
                results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(json.dumps(_summary(results)))
    return 0


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MiB.

    Linux's `ru_maxrss` carries over the parent's peak through fork and exec, so a case run
    by a parent that has just generated 10M records would report the parent's memory. The
    kernel's per-address-space high-water mark (`VmHWM`) starts afresh at exec.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return _rusage_peak_mb()


def synthetic_adult(rows: int, seed: int) -> pl.DataFrame:
    """Adult-like records: bootstrap rows, then redraw 10% of each QI's cells independently."""
    adult = pl.read_csv(ADULT / "adult.csv", separator=";")
    rng = np.random.default_rng(seed)
    out = adult[rng.integers(0, adult.height, rows)]
    redrawn = []
    for column in QUASI_IDENTIFIERS:
        values = out[column].to_numpy()
        replace = rng.random(rows) < 0.1
        donors = adult[column].to_numpy()[rng.integers(0, adult.height, int(replace.sum()))]
        values = values.copy()
        values[replace] = donors
        redrawn.append(pl.Series(column, values, dtype=out.schema[column]))
    return out.with_columns(redrawn)


def _run_case(case: str, limit: float, path: Path, repeat: int, baseline: bool) -> dict:
    from transforms.disclosure.anonymise import anonymise
    from transforms.disclosure.hierarchy import load_hierarchies

    def scan() -> pl.LazyFrame:
        if path.suffix == ".csv":
            return pl.scan_csv(path, separator=";")
        return pl.scan_parquet(path)

    runs = []
    peak_engine = 0.0
    with tempfile.TemporaryDirectory(prefix="cohortshare-anon-out-") as out_dir:
        output_path = Path(out_dir) / "anonymised.parquet"
        for _ in range(max(1, repeat)):
            started, cpu_started = time.perf_counter(), time.process_time()
            frame = scan()
            hierarchies = load_hierarchies(ADULT / "hierarchies", QUASI_IDENTIFIERS)
            loaded = time.perf_counter()
            result = anonymise(frame, QUASI_IDENTIFIERS, hierarchies, K, limit)
            finished, cpu_finished = time.perf_counter(), time.process_time()
            peak_engine = max(peak_engine, peak_rss_mb())
            output_rows = result.write_parquet(output_path)
            output_seconds = time.perf_counter() - finished
            summary = result.to_dict()
            runs.append(
                (
                    finished - started,
                    loaded - started,
                    output_seconds,
                    summary,
                    output_rows,
                    cpu_finished - cpu_started,
                )
            )
            del frame, result
    runs.sort(key=lambda r: r[0])
    seconds, load_seconds, output_seconds, result, output_rows, cpu = runs[len(runs) // 2]
    phases = dict(result["phases"])
    label = f"adult_{limit:.0%}" if case == "adult" else f"synthetic_{case.upper()}_{limit:.0%}"
    key = f"adult_{limit:.0%}" if case == "adult" else f"synthetic_{case.upper()}"
    record = {
        "case": label,
        "rows": result["records"],
        "k": K,
        "max_suppression": limit,
        "seconds": round(seconds, 4),
        "best_seconds": round(runs[0][0], 4),
        "seconds_all_runs": [round(r[0], 4) for r in runs],
        "cpu_seconds": round(cpu, 4),
        "phases": {"load": round(load_seconds, 4), **phases},
        "output_seconds": round(output_seconds, 4),
        "output_seconds_all_runs": [round(r[2], 4) for r in runs],
        "output_rows": output_rows,
        "levels": result["levels"],
        "loss": result["loss"],
        "suppressed": result["suppressed"],
        "k_achieved": result["k_achieved"],
        "distinct_combinations": result["search"]["distinct_combinations"],
        "nodes_checked": result["search"]["nodes_checked"],
        "lattice_nodes": result["search"]["lattice_nodes"],
        "target_seconds": TARGET_SECONDS.get(key),
        "arx_reference_seconds": ARX_REFERENCE_SECONDS.get(key),
    }
    record["peak_rss_mb_engine"] = peak_engine
    record["peak_rss_mb"] = peak_rss_mb()
    if baseline:
        frame = scan().collect()
        hierarchies = load_hierarchies(ADULT / "hierarchies", QUASI_IDENTIFIERS)
        sample = None if case == "adult" else BASELINE_SAMPLE_NODES
        record.update(_naive_baseline(frame, hierarchies, sample))
    return record


def _naive_baseline(frame: pl.DataFrame, hierarchies: dict, sample: int | None) -> dict:
    """Row-level group-by at every lattice node (or a sample of nodes, scaled up)."""
    from transforms.disclosure.utility import aggregate

    started = time.perf_counter()
    records = frame.height
    names = QUASI_IDENTIFIERS
    hs = [hierarchies[q] for q in names]
    heights = [h.height for h in hs]
    nodes = np.indices(heights).reshape(len(heights), -1).T
    if sample is not None:
        nodes = nodes[np.random.default_rng(0).choice(len(nodes), sample, replace=False)]
    leaf = frame.select(
        pl.col(q).cast(pl.String).cast(pl.Enum(list(h.values))).to_physical().alias(q)
        for q, h in zip(names, hs, strict=True)
    )
    leaf_np = {q: leaf[q].to_numpy() for q in names}
    best = {0.0: (np.inf, None), 0.01: (np.inf, None)}
    for node in nodes:
        cols = {q: h.codes[lv][leaf_np[q]] for q, h, lv in zip(names, hs, node, strict=True)}
        shares = {
            q: (h.leaf_counts[lv] / h.domain_size)[cols[q]]
            for q, h, lv in zip(names, hs, node, strict=True)
        }
        grouped = (
            pl.DataFrame(cols)
            .with_columns(pl.len().over(names).alias("size"))
            .with_columns(pl.Series(f"s_{q}", shares[q]) for q in names)
        )
        small = grouped["size"].to_numpy() < K
        suppressed = int(small.sum())
        losses = []
        for q, h in zip(names, hs, strict=True):
            total = float(np.where(small, 1.0, grouped[f"s_{q}"].to_numpy()).sum())
            floor = records / h.domain_size
            losses.append(
                max((total - floor) / (records - floor), 0.0) if h.domain_size > 1 else 0.0
            )
        loss = aggregate(losses)
        for limit in best:
            if suppressed <= int(limit * records) and loss < best[limit][0]:
                best[limit] = (loss, tuple(int(v) for v in node))
    elapsed = time.perf_counter() - started
    lattice = int(np.prod(heights))
    scaled = elapsed if sample is None else elapsed * lattice / len(nodes)
    out = {
        "baseline": "naive: row-level group-by at every lattice node, no pruning, no roll-up",
        "baseline_method": "whole lattice"
        if sample is None
        else f"timed on {len(nodes)} random nodes, scaled to {lattice}",
        "baseline_seconds": round(scaled, 3),
    }
    if sample is None:
        out["baseline_loss"] = {f"{k:.0%}": v[0] for k, v in best.items()}
    return out


def _summary(results: list[dict]) -> dict:
    headline = results[0]
    baseline = next((r for r in results if "baseline_seconds" in r), None)
    summary = {
        "name": "anonymise",
        "rows": headline["rows"],
        "seconds": headline["seconds"],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "arx_reference_seconds": ARX_REFERENCE_SECONDS,
        "arx_reference_peak_mb": ARX_REFERENCE_PEAK_MB,
        "targets_seconds": TARGET_SECONDS,
        "targets_peak_mb": TARGET_PEAK_MB,
        "cases": results,
    }
    if baseline is not None:
        summary.update(
            baseline=baseline["baseline"],
            baseline_case=baseline["case"],
            baseline_seconds=baseline["baseline_seconds"],
            ratio=round(headline["seconds"] / baseline["baseline_seconds"], 5),
        )
    summary["median_seconds_by_case"] = {r["case"]: r["seconds"] for r in results}
    summary["best_seconds_by_case"] = {r["case"]: r["best_seconds"] for r in results}
    summary["peak_rss_mb_by_case"] = {r["case"]: r["peak_rss_mb"] for r in results}
    summary["mean_seconds_adult"] = statistics.fmean(
        [r["seconds"] for r in results if r["case"].startswith("adult")] or [0.0]
    )
    return summary


if __name__ == "__main__":
    sys.exit(main())
