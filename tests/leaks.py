"""Test helpers that look for identifiable values where they must never be.

The oracle reads the landing extracts with plain Polars, independently of the pipeline's own
ingest code, so a bug in ingest cannot hide a leak from it.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq

from schemas.contract import load_contracts

# Short values ("Ann", "1") occur innocently inside other words and numbers; identifiers this
# long do not.
MIN_LENGTH = 6


def _read_raw(path: Path, contract) -> pl.DataFrame:
    if contract.format == "csv":
        text = path.read_bytes().decode(contract.encoding)
        return pl.read_csv(io.StringIO(text), separator=contract.delimiter, infer_schema=False)
    if contract.format == "xlsx":
        return pl.read_excel(path, sheet_name=contract.sheet, infer_schema_length=0)
    if contract.format == "ndjson":
        return pl.read_ndjson(path, infer_schema_length=None)
    if contract.format == "json":
        return pl.read_json(path)
    return pl.read_parquet(path)


def landing_identifiers(root: Path, contracts_dir: Path) -> set[str]:
    """Every direct-identifier value (as written in the extracts) of MIN_LENGTH or more."""
    values: set[str] = set()
    for department, contract in load_contracts(contracts_dir).items():
        raw_names = {c.physical_name for c in contract.by_role("direct_identifier")}
        for path in sorted((root / "landing" / department).glob(contract.file_pattern)):
            frame = _read_raw(path, contract)
            for column in raw_names & set(frame.columns):
                for value in frame.get_column(column).cast(pl.String).drop_nulls():
                    value = value.strip()
                    # The normalised form (no spaces, upper case) must not leak either.
                    for form in (value, "".join(value.split()).upper()):
                        if len(form) >= MIN_LENGTH:
                            values.add(form)
    return values


def readable_text(path: Path) -> str:
    """What a person or program could read out of a file, as one string."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        cells = table.to_pylist()
        meta = b" ".join(k + b" " + v for k, v in (table.schema.metadata or {}).items())
        return (
            meta.decode("utf-8", "replace")
            + "\n"
            + "\n".join(" | ".join(str(v) for v in row.values()) for row in cells)
        )
    if path.suffix == ".duckdb":
        con = duckdb.connect(str(path), read_only=True)
        try:
            # Every schema: each release keeps its own tables, and comments are readable too.
            names = con.sql("SELECT table_schema, table_name FROM information_schema.tables")
            tables = [f'"{s}"."{n}"' for s, n in names.fetchall()]
            comments = con.sql(
                "SELECT comment FROM duckdb_tables() UNION ALL SELECT comment FROM duckdb_columns()"
            ).fetchall()
            return "\n".join(
                [str(con.sql(f"SELECT * FROM {t}").fetchall()) for t in tables] + [str(comments)]
            )
        finally:
            con.close()
    return path.read_bytes().decode("utf-8", "replace")


_WORD = re.compile(r"[^\W_]+")


def contains(text: str, words: set[str], value: str) -> bool:
    """Whether `value` occurs in `text` as a whole (not inside a longer word or hex string)."""
    parts = _WORD.findall(value)
    if not parts or not all(part in words for part in parts):
        return False
    if len(parts) == 1 and parts[0] == value:
        return True
    return re.search(rf"(?<![^\W_]){re.escape(value)}(?![^\W_])", text) is not None


def find_leaks(values: set[str], folders: list[Path]) -> list[tuple[str, int]]:
    """(file, number of identifier values found in it) for every file that holds any."""
    leaks = []
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            text = readable_text(path)
            words = set(_WORD.findall(text))
            found = sum(1 for value in values if contains(text, words, value))
            if found:
                leaks.append((str(path), found))
    return leaks
