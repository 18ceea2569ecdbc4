"""Staging, publishing and withdrawing releases, and the analysts' DuckDB catalogue.

Layout of `published/` (self-contained: copy the folder anywhere and it still works):

    published/cohorts.duckdb                           the catalogue, cohort tables stored inside
    published/releases/release_id=<id>/<table>.parquet one folder per published release (Hive
                                                       style, so reading every release yields a
                                                       release_id column)
    published/releases/release_id=<id>/release.json    who approved it, when it was published
    published/releases/release_id=<id>/documentation.json  table/column descriptions, codes
    published/withdrawals/<id>.json                    who withdrew a release, when and why
    published/.incoming/                               new folders and catalogue files while
                                                       they are built, before their rename

The catalogue is rebuilt from those files as a new file under a unique temporary name and
swapped in with one atomic rename: an analyst holding the old file open keeps reading it, a new
connection sees the new one, never a mixture (DESIGN.md, privacy property 5). It is written in
DuckDB 1.5's storage format so analysts' DuckDB 1.5 command-line clients open it too. Every
operation here can be re-run after a crash at any point and completes what was started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from schemas.errors import ReleaseError
from transforms.files import (
    fsync_path,
    read_metadata,
    sha256_file,
    write_parquet,
    write_text_atomically,
)
from transforms.release import catalogue_docs as docs

CATALOGUE_FILE = "cohorts.duckdb"
# DuckDB 2 writes storage version 69 by default, which DuckDB 1.5 (64-68) cannot read.
STORAGE_VERSION = "v1.5.0"
RELEASE_RECORD = "release.json"
DOCUMENTATION = "documentation.json"
PARTITION = "release_id="
STALE_SECONDS = 3600
# Analysts' connections: read-only, no access to any other file on disk (DESIGN.md, Traps).
READER_CONFIG = {"enable_external_access": False, "lock_configuration": True}


def staging_dir(root: Path, release_id: str) -> Path:
    return root / "staging" / release_id


def release_dir(root: Path, release_id: str) -> Path:
    return root / "published" / "releases" / f"{PARTITION}{release_id}"


def withdrawal_record(root: Path, release_id: str) -> Path:
    return root / "published" / "withdrawals" / f"{release_id}.json"


def withdrawn_dir(root: Path, release_id: str) -> Path:
    return root / "staging" / "withdrawn" / release_id


def _incoming(root: Path) -> Path:
    """Where new folders and catalogue files are built before their rename into place: on the
    same file system, but outside `releases/` so no reader's glob ever sees half a release."""
    folder = root / "published" / ".incoming"
    folder.mkdir(parents=True, exist_ok=True)
    # Leftovers of a killed build: no build takes anywhere near this long.
    stale = time.time() - STALE_SECONDS
    for leftover in folder.iterdir():
        if leftover.lstat().st_mtime < stale:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
    return folder


def _write_atomically(target: Path, fill, scratch: Path) -> None:
    """Build a folder under a unique temporary name in `scratch`, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch / f"{target.name}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir(parents=True)
    try:
        fill(tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def stage_release(
    root: Path, release_id: str, tables: dict[str, pl.DataFrame], metadata: dict[str, Any]
) -> dict[str, Path]:
    """Write each cohort table as Parquet with the release metadata in its key-value metadata."""

    def fill(folder: Path) -> None:
        for name, frame in tables.items():
            write_parquet(frame, folder / f"{name}.parquet", {**metadata, "table": name})

    target = staging_dir(root, release_id)
    if target.exists():
        raise ReleaseError(f"{target.name} already exists; releases are immutable")
    _write_atomically(target, fill, target.parent)
    return {name: target / f"{name}.parquet" for name in tables}


def _make_read_only(folder: Path) -> None:
    for path in folder.iterdir():
        path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    folder.chmod(
        stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def publish_release(
    root: Path,
    release_id: str,
    approvals: dict[str, Any] | list[dict[str, Any]],
    contracts: Path | None = None,
) -> Path:
    """Copy an approved staged release into published/ and swap in a catalogue that shows it.

    Idempotent: when the release folder is already in place (a crash before the catalogue swap)
    its files are checked against the staged ones and the catalogue is rebuilt. `approvals` is
    one decision or a list of them (two-person approval); `contracts` is the folder whose
    cohorts.yaml, contracts, hierarchies and references describe the tables.
    """
    if withdrawal_record(root, release_id).exists():
        raise ReleaseError(f"release {release_id} was withdrawn; releases are immutable")
    staged = staging_dir(root, release_id)
    target = release_dir(root, release_id)
    if target.is_dir():
        _check_unchanged(staged, target, release_id)
    else:
        if not staged.is_dir():
            raise ReleaseError(
                f"release {release_id} is not staged (no folder staging/{release_id})"
            )
        decisions = _approvals(approvals)
        contracts_dir = Path(contracts) if contracts is not None else docs.DEFAULT_CONTRACTS

        def fill(folder: Path) -> None:
            for path in sorted(staged.glob("*.parquet")):
                shutil.copyfile(path, folder / path.name)
            record = {"release_id": release_id, "approvals": decisions, "published_at": _now()}
            (folder / RELEASE_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True))
            documentation = _document(folder, contracts_dir)
            (folder / DOCUMENTATION).write_text(json.dumps(documentation, indent=2))

        _write_atomically(target, fill, _incoming(root))
        _make_read_only(target)
    return rebuild_catalogue(root)


# What the published record keeps of each decision: what analysts are shown. The operating-system
# account and host of each officer stay in the restricted audit log.
APPROVAL_FIELDS = (
    "decision",
    "name",
    "role",
    "decided_at",
    "conditions",
    "automatic_demo_approval",
)


def _approvals(approvals: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One decision, a list of them, or one carrying the list under `approvals`."""
    if isinstance(approvals, dict):
        approvals = approvals.get("approvals") or [approvals]
    return [{k: d[k] for k in APPROVAL_FIELDS if k in d} for d in approvals]


def _check_unchanged(staged: Path, target: Path, release_id: str) -> None:
    if not staged.is_dir():
        return
    published = {p.name: sha256_file(p) for p in target.glob("*.parquet")}
    candidate = {p.name: sha256_file(p) for p in staged.glob("*.parquet")}
    if published != candidate:
        raise ReleaseError(
            f"release {release_id} is already published with other files; releases are immutable"
        )


def _document(folder: Path, contracts_dir: Path) -> dict[str, Any]:
    tables, levels = {}, {}
    for path in sorted(folder.glob("*.parquet")):
        metadata = read_metadata(path)
        # Each file's own metadata, so levels chosen per table are described per table.
        levels[path.stem] = metadata.get("levels") or {}
        tables[path.stem] = _catalogue_columns(pl.read_parquet_schema(path))
    return docs.describe_release(contracts_dir, tables, levels)


def _catalogue_columns(schema: dict[str, Any]) -> list[str]:
    """Columns of a table in the catalogue: release_id, the dimensions, the count, withheld."""
    names = [n for n in schema if n not in (docs.RELEASE_COLUMN, docs.WITHHELD_COLUMN)]
    dims = [n for n in names if n not in docs.COUNT_COLUMNS]
    counts = [n for n in names if n in docs.COUNT_COLUMNS]
    return [docs.RELEASE_COLUMN, *dims, *counts, docs.WITHHELD_COLUMN]


def withdraw_release(
    root: Path, release_id: str, who: str = "", reason: str = "", *, role: str = ""
) -> Path:
    """Take a published release out of the catalogue; it stays listed as withdrawn, with who and
    why. The decision is written first, then the catalogue swapped, then the files move to the
    restricted staging area: stopped anywhere, analysts see either the release or its withdrawal,
    and a re-run completes it. Idempotent.
    """
    record = withdrawal_record(root, release_id)
    folder = release_dir(root, release_id)
    if not record.exists():
        if not folder.is_dir():
            raise ReleaseError(f"release {release_id} is not published")
        published = _read_json(folder / RELEASE_RECORD, {"release_id": release_id})
        withdrawal = {"withdrawn_at": _now(), "withdrawn_by": who, "role": role, "reason": reason}
        _write_json_atomically(
            record,
            {
                **published,
                "withdrawal": withdrawal,
                "tables": sorted(p.stem for p in folder.glob("*.parquet")),
            },
        )
    catalogue = rebuild_catalogue(root)
    if folder.is_dir():
        target = withdrawn_dir(root, release_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Published folders are read-only; the move needs the folder writable for a moment.
        folder.chmod(folder.stat().st_mode | stat.S_IWUSR)
        os.replace(folder, target)
    return catalogue


def _write_json_atomically(target: Path, content: dict[str, Any]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(target, json.dumps(content, indent=2, sort_keys=True))


def published_releases(root: Path) -> list[Path]:
    """Folders of the releases analysts may use: published and not withdrawn, oldest first."""
    folder = root / "published" / "releases"
    if not folder.is_dir():
        return []
    # Release ids start with a UTC timestamp, so name order is publication order.
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_dir()
        and p.name.startswith(PARTITION)
        and not withdrawal_record(root, p.name.removeprefix(PARTITION)).exists()
    )


def withdrawn_releases(root: Path) -> list[dict[str, Any]]:
    folder = root / "published" / "withdrawals"
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def _read_json(path: Path, missing: dict[str, Any]) -> dict[str, Any]:
    """A release's record or documentation; a folder published by older code has neither."""
    return json.loads(path.read_text()) if path.exists() else missing


def schema_name(release_id: str) -> str:
    """A plain SQL name for a release's schema: `release_20261127t060000z_1a2b3c`."""
    return "release_" + re.sub(r"[^a-z0-9]+", "_", release_id.lower()).strip("_")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def rebuild_catalogue(root: Path) -> Path:
    """Write a new catalogue file for the published releases and atomically replace the old one."""
    target = root / "published" / CATALOGUE_FILE
    tmp = _incoming(root) / f"{CATALOGUE_FILE}.{uuid.uuid4().hex}.tmp"
    con = duckdb.connect()
    try:
        con.execute(
            f"ATTACH {_literal(str(tmp))} AS catalogue (STORAGE_VERSION '{STORAGE_VERSION}')"
        )
        con.execute("USE catalogue")
        _fill_catalogue(con, root)
        con.execute("USE memory")
        con.execute("DETACH catalogue")
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
        raise
    con.close()
    fsync_path(tmp)  # DuckDB wrote it; flush before the rename makes it the catalogue
    os.replace(tmp, target)
    fsync_path(target.parent)
    return target


def _fill_catalogue(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    releases = published_releases(root)
    withdrawn = withdrawn_releases(root)
    latest = releases[-1].name.removeprefix(PARTITION) if releases else None
    documentation = {}
    for folder in releases:
        release_id = folder.name.removeprefix(PARTITION)
        documentation[release_id] = _read_json(folder / DOCUMENTATION, {"tables": {}})
        _release_schema(con, folder, release_id, documentation[release_id])
    _releases_table(con, releases, withdrawn, latest)
    _dictionary_table(con, [documentation[r] for r in sorted(documentation, reverse=True)])
    con.execute("CREATE SCHEMA latest")
    if latest is not None:
        _latest_views(con, latest, documentation[latest])


def _release_schema(con, folder: Path, release_id: str, documentation: dict) -> None:
    schema = schema_name(release_id)
    con.execute(f"CREATE SCHEMA {schema}")
    for path in sorted(folder.glob("*.parquet")):
        table = f"{schema}.{_ident(path.stem)}"
        source = pl.read_parquet_schema(path)
        columns = _catalogue_columns(source)
        select = []
        for column in columns:
            if column == docs.RELEASE_COLUMN:
                select.append(f"CAST({_literal(release_id)} AS VARCHAR) AS release_id")
            elif column == docs.WITHHELD_COLUMN and column not in source:
                # Tables staged before withheld rows existed hold published cells only.
                select.append("false AS withheld")
            else:
                select.append(_ident(column))
        con.execute(
            f"CREATE TABLE {table} AS SELECT {', '.join(select)} "
            f"FROM read_parquet({_literal(str(path.resolve()))})"
        )
        described = documentation["tables"].get(path.stem, {})
        _comment(con, "TABLE", table, described.get("comment", ""), f" Release {release_id}.")
        for column, text in described.get("columns", {}).items():
            if column in columns:
                _comment(con, "COLUMN", f"{table}.{_ident(column)}", text)


def _comment(con, kind: str, name: str, text: str, suffix: str = "") -> None:
    con.execute(f"COMMENT ON {kind} {name} IS {_literal(text + suffix)}")


def _latest_views(con, release_id: str, documentation: dict) -> None:
    """`latest.<table>` and plain `<table>` (schema main) show the newest published release."""
    schema = schema_name(release_id)
    tables = con.sql(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'catalogue' "
        f"AND schema_name = {_literal(schema)} ORDER BY table_name"
    ).fetchall()
    for (table,) in tables:
        described = documentation["tables"].get(table, {})
        for view, note in (
            (f"latest.{_ident(table)}", f" Latest release: {release_id}."),
            (f"main.{_ident(table)}", f" Same as latest.{table} (release {release_id})."),
        ):
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM {schema}.{_ident(table)}")
            _comment(con, "VIEW", view, described.get("comment", ""), note)
            for column, text in described.get("columns", {}).items():
                _comment(con, "COLUMN", f"{view}.{_ident(column)}", text)


RELEASES_COMMENTS = {
    "release_id": "Release id: the UTC time the release was built and a random suffix.",
    "schema_name": "The schema holding this release's tables (NULL once withdrawn).",
    "status": "published, or withdrawn (its tables are no longer in the catalogue).",
    "is_latest": "True for the newest published release, the one the latest schema shows.",
    "approvers": "Every recorded decision that approved the release: name, role, when, conditions.",
    "approved_by": "Names of the approvers, joined with ' and '.",
    "approved_at": "When the last approval was recorded.",
    "published_at": "When the release's files were published.",
    "withdrawn_at": "When the release was withdrawn (NULL while published).",
    "withdrawn_by": "Who withdrew the release, and their role.",
    "withdrawal_reason": "Why the release was withdrawn.",
    "tables": "The cohort tables of the release.",
}


def _releases_table(con, releases: list[Path], withdrawn: list[dict], latest: str | None) -> None:
    con.execute(
        "CREATE TEMP TABLE decisions (release_id VARCHAR, name VARCHAR, role VARCHAR, "
        "decided_at TIMESTAMPTZ, conditions VARCHAR, automatic_demo_approval BOOLEAN)"
    )
    con.execute(
        "CREATE TEMP TABLE states (release_id VARCHAR, schema_name VARCHAR, status VARCHAR, "
        "published_at TIMESTAMPTZ, "
        "withdrawn_at TIMESTAMPTZ, withdrawn_by VARCHAR, withdrawal_reason VARCHAR, "
        "tables VARCHAR[])"
    )
    rows = []
    for folder in releases:
        record = _read_json(folder / RELEASE_RECORD, {})
        record.setdefault("release_id", folder.name.removeprefix(PARTITION))
        tables = sorted(p.stem for p in folder.glob("*.parquet"))
        rows.append((record, "published", {}, tables))
    for record in withdrawn:
        rows.append((record, "withdrawn", record.get("withdrawal", {}), record.get("tables", [])))
    for record, status, withdrawal, tables in rows:
        release_id = record["release_id"]
        for decision in record.get("approvals", []):
            con.execute(
                "INSERT INTO decisions VALUES (?, ?, ?, TRY_CAST(? AS TIMESTAMPTZ), ?, ?)",
                [
                    release_id,
                    decision.get("name"),
                    decision.get("role"),
                    decision.get("decided_at"),
                    decision.get("conditions") or None,
                    bool(decision.get("automatic_demo_approval", False)),
                ],
            )
        who = ", ".join(x for x in (withdrawal.get("withdrawn_by"), withdrawal.get("role")) if x)
        con.execute(
            "INSERT INTO states VALUES (?, ?, ?, TRY_CAST(? AS TIMESTAMPTZ), "
            "TRY_CAST(? AS TIMESTAMPTZ), ?, ?, ?)",
            [
                release_id,
                schema_name(release_id) if status == "published" else None,
                status,
                record.get("published_at"),
                withdrawal.get("withdrawn_at"),
                who or None,
                withdrawal.get("reason"),
                tables,
            ],
        )
    con.execute(
        f"""
        CREATE TABLE releases AS
        SELECT s.release_id, s.schema_name, s.status,
               s.release_id IS NOT DISTINCT FROM {_literal(latest or "")} AS is_latest,
               coalesce(d.approvers, []) AS approvers,
               d.approved_by, d.approved_at, s.published_at,
               s.withdrawn_at, s.withdrawn_by, s.withdrawal_reason, s.tables
        FROM states s LEFT JOIN (
            SELECT release_id,
                   list(struct_pack(name := name, role := role, decided_at := decided_at,
                                    conditions := conditions,
                                    automatic_demo_approval := automatic_demo_approval)
                        ORDER BY decided_at, name) AS approvers,
                   string_agg(name, ' and ' ORDER BY decided_at, name) AS approved_by,
                   max(decided_at) AS approved_at
            FROM decisions GROUP BY release_id
        ) d USING (release_id)
        ORDER BY s.release_id
        """
    )
    _comment(
        con,
        "TABLE",
        "releases",
        "Every release ever published, oldest first: who approved it, when it was published, "
        "and, if it was withdrawn, who withdrew it, when and why.",
    )
    for column, text in RELEASES_COMMENTS.items():
        _comment(con, "COLUMN", f"releases.{column}", text)


DICTIONARY_COMMENTS = {
    "column_name": "The column of the cohort tables that holds the code.",
    "code": "The code as it appears in the tables.",
    "label": "A short name for the code.",
    "meaning": "What the code means.",
    "parent_code": "The code one generalisation level up (an LSOA's ward, a wider age band).",
    "parent_label": "The label of parent_code.",
}


def _dictionary_table(con, documentation: list[dict]) -> None:
    """Codes from the newest release first; a code explained by an older one only if new."""
    con.execute(
        "CREATE TABLE data_dictionary (column_name VARCHAR, code VARCHAR, label VARCHAR, "
        "meaning VARCHAR, parent_code VARCHAR, parent_label VARCHAR)"
    )
    seen, rows = set(), []
    for doc in documentation:
        for row in doc.get("dictionary", []):
            key = (row["column_name"], row["code"])
            if key not in seen:
                seen.add(key)
                rows.append([row[c] for c in DICTIONARY_COMMENTS])
    if rows:
        con.executemany("INSERT INTO data_dictionary VALUES (?, ?, ?, ?, ?, ?)", rows)
    _comment(
        con,
        "TABLE",
        "data_dictionary",
        "What each code in the cohort tables means: areas (LSOA and ward codes with names), age "
        "bands, sex, ethnic groups, departments and their combinations.",
    )
    for column, text in DICTIONARY_COMMENTS.items():
        _comment(con, "COLUMN", f"data_dictionary.{column}", text)


def connect_read_only(catalogue: Path) -> duckdb.DuckDBPyConnection:
    """Open the catalogue as analysts should: read-only, and unable to read any other file."""
    if not catalogue.exists():
        raise ReleaseError(f"no catalogue at {catalogue}: nothing has been published yet")
    return duckdb.connect(str(catalogue), read_only=True, config=READER_CONFIG)


def query_catalogue(catalogue: Path, sql: str) -> pl.DataFrame:
    """Run one query against the catalogue opened read-only, as an analyst would."""
    con = connect_read_only(catalogue)
    try:
        return con.sql(sql).pl()
    except duckdb.Error as exc:
        # DuckDB messages quote the query, never table contents, so they are safe to show.
        raise ReleaseError(f"query failed: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
