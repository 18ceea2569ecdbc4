"""Benchmark the whole pipeline: `python -m benchmarks end_to_end [--rows N] [--seed S]`.

A synthetic council sized to about N extract rows over the five departments (generated in a
child process, whose time and peak memory are reported apart), then `share_cohorts` from
landing to a staged release (demo key, forced build), with each stage's seconds as the flow
logs them and this process's peak memory. The floor, measured in the same run: DuckDB reading
every extract and writing it as Parquet (the XLSX extract through Polars' calamine reader:
DuckDB's Excel extension would be downloaded). `ratio` is the pipeline's seconds over the
floor's. The Prefect temporary server is started before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import re
import resource
import tempfile
import time
from datetime import date
from pathlib import Path

from benchmarks._measure import peak_rss_mb

REPO = Path(__file__).resolve().parents[1]
# Extract rows per resident of the synthetic council (0.69 at 1M residents).
ROWS_PER_RESIDENT = 0.69
STAGE_LINE = re.compile(r"^(receive|link|anonymise|stage): .* in ([0-9.]+) s$")


def _generate(root: str, residents: int, seed: int) -> None:
    from transforms.synthetic import generate_council

    generate_council(Path(root), residents, seed, extract_date=date.today(), invalid=0.002)


def generate_apart(root: Path, residents: int, seed: int) -> tuple[float, float]:
    """Generate in a child process: (seconds, the child's peak RSS in MiB)."""
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=_generate, args=(str(root), residents, seed))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"generation failed with exit code {child.exitcode}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return time.perf_counter() - started, round(peak, 1)


def duckdb_floor(root: Path) -> tuple[float, int]:
    """Seconds for DuckDB to read every extract and write it as Parquet; rows read."""
    import duckdb
    import polars as pl

    out = Path(tempfile.mkdtemp(prefix="floor-", dir=root))
    started = time.perf_counter()
    con = duckdb.connect()
    rows = 0
    for path in sorted((root / "landing").glob("*/*.*")):
        target = str(out / f"{path.parent.name}.parquet")
        source = str(path)
        if path.suffix == ".csv":
            delimiter = ";" if path.parent.name == "council_tax" else ","
            encoding = ", encoding = 'latin-1'" if path.parent.name == "council_tax" else ""
            relation = f"read_csv('{source}', delim = '{delimiter}', all_varchar = true{encoding})"
        elif path.suffix == ".ndjson":
            relation = f"read_json('{source}', format = 'newline_delimited')"
        elif path.suffix == ".parquet":
            relation = f"read_parquet('{source}')"
        else:  # xlsx
            frame = pl.read_excel(path)  # noqa: F841 - read by DuckDB's replacement scan
            relation = "frame"
        con.execute(f"COPY (SELECT * FROM {relation}) TO '{target}' (FORMAT parquet)")
        rows += con.sql(f"SELECT count(*) FROM read_parquet('{target}')").fetchall()[0][0]
    con.close()
    return time.perf_counter() - started, rows


class _StageTimes(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.seconds: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        found = STAGE_LINE.match(record.getMessage())
        if found:
            self.seconds[found.group(1)] = float(found.group(2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks end_to_end", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    residents = math.ceil(args.rows / ROWS_PER_RESIDENT)

    with tempfile.TemporaryDirectory(prefix="cohortshare-e2e-") as tmp:
        root = Path(tmp)
        generation_seconds, generation_peak = generate_apart(root, residents, args.seed)
        floor_seconds, floor_rows = duckdb_floor(root)

        import os

        from flows.cli import EPHEMERAL_STARTUP_SECONDS

        os.environ["HOME"] = tmp  # the demo key lives in a throwaway home
        os.environ.pop("XDG_CONFIG_HOME", None)
        os.environ.setdefault(
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_SECONDS
        )
        from prefect.client.orchestration import get_client

        from flows.share_cohorts import share_cohorts

        with get_client(sync_client=True) as client:  # start the temporary server now
            client.hello()
        times = _StageTimes()
        for name in ("prefect.flow_runs", "prefect.task_runs"):
            logging.getLogger(name).addHandler(times)
        started = time.perf_counter()
        share_cohorts(root=str(root), contracts=str(REPO / "data_contracts"), demo=True,
                      force=True)
        seconds = time.perf_counter() - started

    result = {
        "name": "end_to_end",
        "rows": {"target": args.rows, "residents": residents, "extract_rows": floor_rows},
        "seconds": round(seconds, 1),
        "stage_seconds": times.seconds,
        "peak_rss_mb": peak_rss_mb(),
        "generation_seconds": round(generation_seconds, 1),
        "generation_peak_rss_mb": generation_peak,
        "baseline": "DuckDB reads every extract and writes it as Parquet (XLSX via Polars)",
        "baseline_seconds": round(floor_seconds, 1),
        "ratio": round(seconds / floor_seconds, 2),
    }
    print(json.dumps(result))
    return 0
