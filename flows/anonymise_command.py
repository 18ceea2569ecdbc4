"""`cohortshare anonymise`: choose and apply the generalisation for any table.

For IG staff and analysts who want ARX's answer without ARX: reads a CSV or Parquet file,
finds the least-Loss generalisation meeting k (and l, t) within the suppression limit, prints
the decision and optionally writes the anonymised records. Output carries levels and counts,
never a cell value.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path

import polars as pl

from schemas.errors import ConfigError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "anonymise",
        help="find the optimal generalisation of a table for k-anonymity (and l-diversity)",
        description=__doc__,
    )
    parser.add_argument("input", type=Path, help="CSV or Parquet file of records")
    parser.add_argument(
        "--hierarchies",
        type=Path,
        required=True,
        help="folder of hierarchy files (<column>.csv or <column>.yaml)",
    )
    parser.add_argument("--qi", required=True, help="comma-separated quasi-identifier columns")
    parser.add_argument("--k", type=int, required=True, help="minimum equivalence class size")
    parser.add_argument("--l", type=int, default=None, help="l-diversity of --sensitive")
    parser.add_argument("--l-variant", choices=("distinct", "entropy"), default="distinct")
    parser.add_argument(
        "--t", type=float, default=None, help="t-closeness of --sensitive (equal-distance EMD)"
    )
    parser.add_argument("--sensitive", default=None, help="sensitive attribute column")
    parser.add_argument(
        "--max-suppression",
        type=_share,
        required=True,
        help="share of records that may be suppressed: 0.01 or 1%%",
    )
    parser.add_argument(
        "--population",
        type=Path,
        default=None,
        help="population table with the same QI columns (journalist risk)",
    )
    parser.add_argument("--sep", default=",", help="CSV separator (default: %(default)s)")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="write the anonymised records to this Parquet file",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from transforms.disclosure import anonymise, load_hierarchies

    quasi_identifiers = [q.strip() for q in args.qi.split(",") if q.strip()]
    if not quasi_identifiers:
        raise ConfigError("--qi needs at least one column")
    hierarchies = load_hierarchies(args.hierarchies, quasi_identifiers)
    frame = read_table(args.input, args.sep)
    population = read_table(args.population, args.sep) if args.population else None
    # A scanned Parquet file is read while anonymising and again while writing.
    streamed = _streaming(args.input) if isinstance(frame, pl.LazyFrame) else nullcontext()
    with streamed:
        result = anonymise(
            frame,
            quasi_identifiers,
            hierarchies,
            k=args.k,
            max_suppression=args.max_suppression,
            l=args.l,
            sensitive=args.sensitive,
            l_variant=args.l_variant,
            t=args.t,
            population=population,
        )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        # Streamed: the released table is never held whole in memory.
        streamed = _streaming(args.input) if isinstance(frame, pl.LazyFrame) else nullcontext()
        with streamed:
            output_rows = result.write_parquet(args.output)
    summary = result.to_dict()
    if args.output:
        summary["output"] = str(args.output)
        summary["output_rows"] = output_rows
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    return 0


def read_table(path: Path, sep: str) -> pl.DataFrame | pl.LazyFrame:
    """Read a CSV (every column as text, so codes keep their spelling) or scan a Parquet file.

    Parquet is scanned, not read: the anonymiser streams it (count, then write), so a large
    file is never held whole. Its metadata is read here so a file that is not Parquet fails
    now. Reader errors are replaced by a message naming the file only: parser messages can
    quote the offending cell.
    """
    if not path.exists():
        raise ConfigError(f"input file {path} does not exist")
    with _reading(path, sep):
        if path.suffix.lower() == ".parquet":
            frame = pl.scan_parquet(path)
            frame.collect_schema()
            return frame
        return pl.read_csv(path, separator=sep, infer_schema=False)


@contextmanager
def _reading(path: Path, sep: str):
    """Reader errors as a message naming the file only."""
    try:
        yield
    except (pl.exceptions.PolarsError, OSError, ValueError):
        raise ConfigError(
            f"could not read {path.name} (expected Parquet, or CSV separated by {sep!r})"
        ) from None


@contextmanager
def _streaming(path: Path):
    """Errors of a scanned file surface when it is streamed: name the file only."""
    try:
        yield
    except pl.exceptions.PolarsError:
        raise ConfigError(
            f"could not stream {path.name} (damaged Parquet, or the output cannot be written)"
        ) from None


def _share(text: str) -> float:
    text = text.strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("give a share such as 0.01 or 1%") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("the suppression limit must be between 0 and 1 (0%-100%)")
    return value


def _print_summary(summary: dict) -> None:
    out = sys.stdout
    print(f"Levels: {', '.join(f'{q}={lv}' for q, lv in summary['levels'].items())}", file=out)
    print(f"Loss: {summary['loss']:.7f}", file=out)
    print(
        f"Records: {summary['records']:,}, suppressed {summary['suppressed']:,} "
        f"(limit {summary['search']['max_suppressed_records']:,})",
        file=out,
    )
    print(f"Smallest class (k achieved): {summary['k_achieved']}", file=out)
    before, after = summary["risk_before"], summary["risk_after"]
    print(
        f"Prosecutor risk, max: {before['prosecutor_max']:.3f} -> {after['prosecutor_max']:.3f}; "
        f"sample uniques: {before['sample_uniques']:,} -> {after['sample_uniques']:,}",
        file=out,
    )
    print(f"Time: {summary['seconds']:.3f} s", file=out)
