"""Benchmark the whole pipeline: `python -m benchmarks end_to_end [--rows N] [--seed S]`.

A synthetic council sized to about N extract rows over the five departments, generated in
chunks of at most CHUNK_RESIDENTS residents, each in a child process with its own seed, and
appended to one extract per department (record references offset per chunk so they stay
unique), so generation stays within memory at any size; its time and the largest child's peak
memory are reported apart. Then `share_cohorts` from
landing to a staged release (demo key, forced build), with each stage's seconds as the flow
logs them, each stage's peak memory (`stage_peak_rss_mb`, from /proc: the peak is reset as each
stage ends) and the flow's peak (`peak_rss_mb`, the largest of them). The floor, measured in
the same run: DuckDB reading every extract and writing it as Parquet (the XLSX extract through
Polars' calamine reader: DuckDB's Excel extension would be downloaded), run FLOOR_RUNS times
and the fastest taken (`baseline_runs_seconds` lists them all): run once, the floor was the
first to read a council's files and read 7 s or 13 s depending on the page cache. `ratio` is
the pipeline's seconds over the floor's. The Prefect temporary server is started before the
clock starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import re
import resource
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

from benchmarks._measure import peak_rss_mb

REPO = Path(__file__).resolve().parents[1]
# Extract rows per resident of the synthetic council (0.69 at 1M residents).
ROWS_PER_RESIDENT = 0.69
CHUNK_RESIDENTS = 1_000_000
FLOOR_RUNS = 3
STAGE_LINE = re.compile(r"^(receive|link|anonymise|stage): .* in ([0-9.]+) s$")


def _generate(root: str, residents: int, seed: int, extract_date: date) -> None:
    from transforms.synthetic import generate_council

    generate_council(Path(root), residents, seed, extract_date=extract_date, invalid=0.002)


def generate_apart(
    root: Path, residents: int, seed: int, chunk_residents: int = CHUNK_RESIDENTS
) -> tuple[float, float]:
    """Generate chunk by chunk in child processes and append each chunk's extracts to the
    council's: (seconds, the largest child's peak RSS in MiB)."""
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    chunks = math.ceil(residents / chunk_residents)
    pending_xlsx: list = []
    # One extract date for every chunk: a generation running past midnight must not split a
    # department's extract into two deliveries.
    extract_date = date.today()
    for index in range(chunks):
        size = min(chunk_residents, residents - index * chunk_residents)
        chunk_root = root / f".chunk-{index}"
        child = context.Process(
            target=_generate, args=(str(chunk_root), size, seed + index, extract_date)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"generation failed with exit code {child.exitcode}")
        _append_chunk(chunk_root, root, index, pending_xlsx)
        shutil.rmtree(chunk_root)
    if pending_xlsx:
        _write_xlsx(root, pending_xlsx)
    _merge_parquet_parts(root, extract_date)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return time.perf_counter() - started, round(peak, 1)


def _offset_ids(frame, column: str, index: int):
    """Make record references unique across chunks: add index * 10^12 to their number."""
    import polars as pl

    text = pl.col(column).cast(pl.String)
    prefix = text.str.extract(r"^(\D*)", 1)
    number = text.str.extract(r"(\d+)$", 1).cast(pl.Int64) + index * 10**12
    shifted = pl.concat_str([prefix, number.cast(pl.String)])
    dtype = frame.schema[column]
    shifted = shifted.cast(dtype) if dtype.is_numeric() else shifted
    return frame.with_columns(shifted.alias(column))


def _append_chunk(chunk_root: Path, root: Path, index: int, pending_xlsx: list) -> None:
    import io

    import polars as pl

    from transforms.synthetic.extracts import LAYOUTS
    from transforms.synthetic.opt_out import LAYOUT as OPT_OUT_LAYOUT
    from transforms.synthetic.writers import CHILDRENS_SHEET, COUNCIL_TAX_ENCODING

    # The opt-out register is not a department but is chunked the same way.
    layouts = {**LAYOUTS, "opt_out": OPT_OUT_LAYOUT}
    for path in sorted((chunk_root / "landing").glob("*/*.*")):
        department = path.parent.name
        column = layouts[department]["record_id"]
        target = root / "landing" / department / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        first = not target.exists()
        if department == "council_tax":
            raw = path.read_bytes().decode(COUNCIL_TAX_ENCODING)
            frame = pl.read_csv(io.StringIO(raw), separator=";", infer_schema=False)
            text = _offset_ids(frame, column, index).write_csv(
                separator=";", line_terminator="\r\n", include_header=first
            )
            with target.open("ab") as out:
                out.write(text.encode(COUNCIL_TAX_ENCODING))
        elif path.suffix == ".csv":
            frame = _offset_ids(pl.read_csv(path, infer_schema=False), column, index)
            with target.open("ab") as out:
                frame.write_csv(out, include_header=first)
        elif path.suffix == ".ndjson":
            frame = _offset_ids(pl.read_ndjson(path), column, index)
            with target.open("ab") as out:
                frame.write_ndjson(out)
        elif path.suffix == ".parquet":
            # Parts beside the council, streamed into one file at the end.
            part = root / f".parts-{department}" / f"{index:05d}.parquet"
            part.parent.mkdir(exist_ok=True)
            _offset_ids(pl.read_parquet(path), column, index).write_parquet(part)
        else:  # xlsx: small (children's services); written once at the end
            frame = pl.read_excel(path, sheet_name=CHILDRENS_SHEET, infer_schema_length=0)
            pending_xlsx.append((target, _offset_ids(frame, column, index)))


def _merge_parquet_parts(root: Path, extract_date: date) -> None:
    import pyarrow.parquet as pq

    for parts in sorted(root.glob(".parts-*")):
        department = parts.name.removeprefix(".parts-")
        files = sorted(parts.glob("*.parquet"))
        target = root / "landing" / department / f"{department}_{extract_date:%Y%m%d}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(target, pq.read_schema(files[0])) as writer:
            for part in files:
                for batch in pq.ParquetFile(part).iter_batches():
                    writer.write_batch(batch)
        shutil.rmtree(parts)


def _write_xlsx(root: Path, pending: list) -> None:
    import polars as pl

    from transforms.synthetic.writers import WRITERS

    target = pending[0][0]
    WRITERS["childrens_services"](pl.concat([f for _, f in pending]), target, date.today())


def _link_tree(source: Path, target: Path) -> None:
    """Hard links where the file system allows (instant, no space), copies elsewhere."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy)


def duckdb_floor(root: Path, runs: int = FLOOR_RUNS) -> tuple[list[float], int]:
    """Seconds of each of `runs` passes of the floor over the council; rows read."""
    passes = [_floor_once(root) for _ in range(runs)]
    return [seconds for seconds, _ in passes], passes[0][1]


def _floor_once(root: Path) -> tuple[float, int]:
    """Seconds for DuckDB to read every extract and write it as Parquet; rows read."""
    import duckdb
    import polars as pl

    out = Path(tempfile.mkdtemp(prefix="floor-", dir=root))
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
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
    seconds = time.perf_counter() - started
    shutil.rmtree(out)
    return seconds, rows


def _peak_since_reset_mb() -> float | None:
    """This process's peak resident memory since the last `_reset_peak` (Linux), in MiB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _reset_peak() -> None:
    """Start a new peak (writing 5 to clear_refs resets VmHWM), so each stage has its own."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


class _StageTimes(logging.Handler):
    """Each stage's seconds from its log line, and the peak memory since the previous one
    (stages run one after another; departments are received concurrently within `receive`)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float | None] = {}

    def emit(self, record: logging.LogRecord) -> None:
        found = STAGE_LINE.match(record.getMessage())
        if found:
            self.seconds[found.group(1)] = float(found.group(2))
            self.peak_rss_mb[found.group(1)] = _peak_since_reset_mb()
            _reset_peak()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks end_to_end", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--chunk-residents", type=int, default=CHUNK_RESIDENTS)
    parser.add_argument(
        "--council", type=Path, default=None,
        help="reuse the landing/ of a council generated before (e.g. by an earlier run with "
        "--keep-council) instead of generating one; --rows then only labels the result",
    )
    parser.add_argument(
        "--keep-council", type=Path, default=None,
        help="also keep the generated landing/ in this folder, for later runs with --council",
    )
    args = parser.parse_args(argv)
    residents = math.ceil(args.rows / ROWS_PER_RESIDENT)

    with tempfile.TemporaryDirectory(prefix="cohortshare-e2e-") as tmp:
        root = Path(tmp)
        if args.council is not None:
            _link_tree(args.council / "landing", root / "landing")
            generation_seconds, generation_peak = None, None
        else:
            generation_seconds, generation_peak = generate_apart(
                root, residents, args.seed, args.chunk_residents
            )
            if args.keep_council is not None:
                _link_tree(root / "landing", args.keep_council / "landing")
        floor_runs, floor_rows = duckdb_floor(root)
        floor_seconds = min(floor_runs)

        from flows.cli import _quiet_third_parties

        os.environ["HOME"] = tmp  # the demo key lives in a throwaway home
        os.environ.pop("XDG_CONFIG_HOME", None)
        # No analytics, and the CLI's start-up allowance for Prefect's temporary server.
        _quiet_third_parties()
        from prefect.client.orchestration import get_client

        from flows.share_cohorts import share_cohorts

        with get_client(sync_client=True) as client:  # start the temporary server now
            client.hello()
        times = _StageTimes()
        for name in ("prefect.flow_runs", "prefect.task_runs"):
            logging.getLogger(name).addHandler(times)
        _reset_peak()
        started = time.perf_counter()
        share_cohorts(root=str(root), contracts=str(REPO / "data_contracts"), demo=True,
                      force=True)
        seconds = time.perf_counter() - started
        after_stages = _peak_since_reset_mb()

    result = {
        "name": "end_to_end",
        "rows": {"target": args.rows, "residents": residents, "extract_rows": floor_rows},
        "seconds": round(seconds, 1),
        "stage_seconds": times.seconds,
        "stage_peak_rss_mb": times.peak_rss_mb,
        # The flow's peak: the largest of its stages' (and of what follows the last stage).
        "peak_rss_mb": max(
            [v for v in [*times.peak_rss_mb.values(), after_stages] if v is not None],
            default=peak_rss_mb(),
        ),
        "process_peak_rss_mb": peak_rss_mb(),
        "generation_seconds": (
            round(generation_seconds, 1) if generation_seconds is not None else None
        ),
        "generation_peak_rss_mb": generation_peak,
        "baseline": "DuckDB reads every extract and writes it as Parquet (XLSX via Polars)",
        "baseline_seconds": round(floor_seconds, 1),
        "baseline_runs_seconds": [round(s, 1) for s in floor_runs],
        "ratio": round(seconds / floor_seconds, 2),
    }
    print(json.dumps(result))
    return 0
