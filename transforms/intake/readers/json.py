"""JSON extracts: NDJSON read by Polars in chunks, a JSON array read whole.

Polars keeps one value of a key that a line repeats and turns an object under a text column
into text, so lines are first screened in Polars for the few that could hold either (a key
written twice, a bracket after the first character, an escape) and only those are parsed by
Python's `json` to say exactly which row and key. Unparseable text is named by its line.
"""

from __future__ import annotations

import json

import polars as pl

from schemas.contract import DepartmentContract
from transforms.intake.common import (
    FLAG_SCHEMA,
    NESTED,
    ROW_NUMBER,
    RawExtract,
    count_rows,
    guarded,
    no_flags,
    reject,
    slices,
)
from transforms.intake.readers.csv import utf8_valid
from transforms.intake.readers.text import unpacked, wide_encoding
from transforms.intake.source import Source


class _Pairs(list):
    """A JSON object as its (key, value) pairs, as written: repeats kept."""


def _pairs(items: list) -> _Pairs:
    return _Pairs(items)


def top_level_findings(line: str) -> list[tuple[str, str]] | None:
    """(rule, key) for a repeated key or a nested value at the top of one JSON object;
    None if the line is not a JSON object."""
    try:
        value = json.loads(line, object_pairs_hook=_pairs)
    except ValueError:
        return None
    if not isinstance(value, _Pairs):
        return None
    keys = [k for k, _ in value]
    found = [("duplicate_key", k) for k in dict.fromkeys(k for k in keys if keys.count(k) > 1)]
    found += [("nested", k) for k, v in value if isinstance(v, _Pairs | list)]
    return found


def _text_source(source: Source, contract: DepartmentContract, name: str) -> Source:
    """The file to read (unpacked if gzip), once it is known to be UTF-8-like text within the
    line limit."""
    source = unpacked(source, contract)
    wide = wide_encoding(source.head(4096))
    if wide:
        raise reject(name, "encoding", f"file is {wide[0]}; JSON extracts must be UTF-8")
    if source.long_line is not None:
        limit = contract.limits.max_line_bytes
        raise reject(name, "resource_limit",
                     f"line {source.long_line} is longer than {limit} bytes (maxLineBytes)")
    return source


def _where_ndjson_breaks(text: str) -> str:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            return f"line {number} is not valid JSON"
        if not isinstance(value, dict):
            return f"line {number} is not a JSON object"
    return "no line found at fault"


def _line_findings(reader_source, keys: list[str]) -> pl.DataFrame:
    """Rows (record numbers) whose line repeats a key or nests a value, by raw key."""
    line = pl.col("line")
    body = line.str.strip_chars()
    repeated = [line.str.count_matches(json.dumps(k, ensure_ascii=False), literal=True) > 1
                for k in keys]
    suspect = (
        body.str.slice(1).str.contains(r"[\[{\\]")
        | pl.any_horizontal(repeated) if repeated else body.str.slice(1).str.contains(r"[\[{\\]")
    )
    candidates = (
        pl.scan_lines(reader_source, glob=False)
        .filter(body != "")
        .with_row_index(ROW_NUMBER, offset=1)
        .filter(suspect)
        .collect(engine="streaming")
    )
    found = []
    for row, text in candidates.select(ROW_NUMBER, "line").iter_rows():
        for rule, key in top_level_findings(text) or []:
            found.append((row, rule, key))
    return pl.DataFrame(found, schema=FLAG_SCHEMA, orient="row") if found else no_flags()


def _mark_nested(batches, nested: pl.DataFrame):
    """Cells holding an object or array become the NESTED marker, row by row."""
    for batch in batches:
        for key in nested["raw_column"].unique().to_list():
            if key not in batch.columns:
                continue
            rows = nested.filter(pl.col("raw_column") == key)[ROW_NUMBER].implode()
            batch = batch.with_columns(
                pl.when(pl.col(ROW_NUMBER).is_in(rows)).then(pl.lit(NESTED))
                .otherwise(pl.col(key)).alias(key)
            )
        yield batch


def open_ndjson(source: Source, contract: DepartmentContract, chunk_rows: int) -> RawExtract:
    name = source.name
    source = _text_source(source, contract, name)
    reader_source = source.reader_path

    def on_error(exc: BaseException) -> Exception:
        if not utf8_valid(source.blocks()):
            return reject(name, "encoding", "file is not valid UTF-8")
        if not source.tail(4096).rstrip().endswith(b"}"):
            return reject(name, "truncated", "the last line is cut short")
        text = source.read_bytes().decode("utf-8", errors="replace")
        return reject(name, "unreadable", f"not valid NDJSON ({_where_ndjson_breaks(text)})")

    try:
        schema = pl.scan_ndjson(reader_source, infer_schema_length=None).collect_schema()
        nested_columns = [c for c, t in schema.items() if t.is_nested()]
        lazy = pl.scan_ndjson(
            reader_source,
            schema={c: pl.String for c in schema},
            row_index_name=ROW_NUMBER,
            row_index_offset=1,
        )
        if nested_columns:
            # A nested object under a declared name can never be a cell value.
            lazy = lazy.with_columns(pl.lit(NESTED).alias(c) for c in nested_columns)
        declared = [raw for c in contract.columns for raw in c.raw_names]
        findings = _line_findings(reader_source, [k for k in declared if k in schema])
    except (Exception, pl.exceptions.PanicException) as exc:  # noqa: BLE001 - values in text
        raise on_error(exc) from None
    nested = findings.filter(pl.col("rule") == "nested")
    batches = guarded(
        lazy.collect_batches(chunk_size=chunk_rows), name, on_error, count_rows(lazy, on_error)
    )
    return RawExtract(
        name, list(schema), _mark_nested(batches, nested) if nested.height else batches,
        flags=findings.filter(pl.col("rule") == "duplicate_key"),
        spool=source,  # the file the batches read, if unpacked from gzip
    )


def _json_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list | _Pairs):
        return NESTED
    return str(value)


def open_json(source: Source, contract: DepartmentContract, chunk_rows: int) -> RawExtract:
    name = source.name
    raw = _text_source(source, contract, name).read_bytes()  # an array is parsed whole
    try:
        document = json.loads(raw, object_pairs_hook=_pairs)
    except UnicodeDecodeError:
        raise reject(name, "encoding", "file is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        truncated = not raw.rstrip().endswith((b"]", b"}"))
        rule = "truncated" if truncated else "unreadable"
        raise reject(name, rule, f"not valid JSON (line {exc.lineno})") from None
    if isinstance(document, _Pairs):
        top = dict(document)
        document = top.get("records", top.get("data"))
    if not isinstance(document, list) or not all(isinstance(r, _Pairs) for r in document):
        raise reject(name, "unreadable", "JSON is not an array of objects")
    header: list[str] = []
    flags = []
    for row, record in enumerate(document, start=1):
        keys = [k for k, _ in record]
        header.extend(k for k in dict.fromkeys(keys) if k not in header)
        flags += [(row, "duplicate_key", k) for k in dict.fromkeys(keys) if keys.count(k) > 1]
    records = [dict(r) for r in document]
    frame = pl.DataFrame(
        {col: [_json_text(r.get(col)) for r in records] for col in header},
        schema={col: pl.String for col in header},
    )
    found = pl.DataFrame(flags, schema=FLAG_SCHEMA, orient="row") if flags else no_flags()
    return RawExtract(name, header, slices(frame, chunk_rows), flags=found)
