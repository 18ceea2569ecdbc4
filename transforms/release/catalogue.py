"""Staging, publishing and the analysts' DuckDB catalogue.

A release is written whole to a temporary folder and renamed into place, and the catalogue is
rebuilt as a new file and swapped in with one atomic rename: an analyst holding the old
catalogue open keeps reading the old release, and a new connection sees the new one, never a
mixture (DESIGN.md, privacy property 5). Published files are made read-only.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from schemas.errors import ReleaseError
from transforms.files import write_parquet

CATALOGUE_FILE = "cohorts.duckdb"


def staging_dir(root: Path, release_id: str) -> Path:
    return root / "staging" / release_id


def release_dir(root: Path, release_id: str) -> Path:
    return root / "published" / "releases" / release_id


def _write_atomically(target: Path, fill) -> None:
    """Build a folder under a temporary name beside `target`, then rename it into place."""
    if target.exists():
        raise ReleaseError(f"{target.name} already exists; releases are immutable")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
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
    _write_atomically(target, fill)
    return {name: target / f"{name}.parquet" for name in tables}


def _make_read_only(folder: Path) -> None:
    for path in folder.iterdir():
        path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    folder.chmod(
        stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    )


def publish_release(root: Path, release_id: str, approval: dict[str, Any]) -> Path:
    """Copy an approved staged release into published/ and swap in a catalogue that shows it."""
    staged = staging_dir(root, release_id)
    if not staged.is_dir():
        raise ReleaseError(f"release {release_id} is not staged (no folder staging/{release_id})")

    def fill(folder: Path) -> None:
        for path in sorted(staged.glob("*.parquet")):
            shutil.copy2(path, folder / path.name)
        (folder / "approval.json").write_text(json.dumps(approval, indent=2, sort_keys=True))

    target = release_dir(root, release_id)
    _write_atomically(target, fill)
    _make_read_only(target)
    return rebuild_catalogue(root)


def withdraw_release(root: Path, release_id: str) -> Path:
    """Take a published release out of the catalogue; its files move to the restricted
    staging area for the IG officer to examine. Returns the new catalogue path."""
    folder = release_dir(root, release_id)
    if not folder.is_dir():
        raise ReleaseError(f"release {release_id} is not published")
    target = root / "staging" / "withdrawn" / release_id
    if target.exists():
        raise ReleaseError(f"release {release_id} was already withdrawn once")
    target.parent.mkdir(parents=True, exist_ok=True)
    # The catalogue stops showing the release before its files move: no reader is left
    # pointing at files that are gone.
    catalogue = rebuild_catalogue(root, exclude={release_id})
    # Published folders are read-only; the move needs the folder writable for a moment.
    folder.chmod(folder.stat().st_mode | stat.S_IWUSR)
    os.replace(folder, target)
    return catalogue


def published_releases(root: Path) -> list[Path]:
    folder = root / "published" / "releases"
    if not folder.is_dir():
        return []
    # Release ids start with a UTC timestamp, so name order is publication order.
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def rebuild_catalogue(root: Path, exclude: set[str] = frozenset()) -> Path:
    """Write a new catalogue file for the published releases and atomically replace the old one.

    Views named after each cohort table show the latest release; `releases` lists every
    published release with its approval. Parquet paths are absolute because DuckDB resolves
    relative paths in views against the reader's working directory.
    """
    releases = [p for p in published_releases(root) if p.name not in exclude]
    target = root / "published" / CATALOGUE_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{CATALOGUE_FILE}.{uuid.uuid4().hex}.tmp"
    con = duckdb.connect(str(tmp))
    try:
        con.execute(
            "CREATE TABLE releases (release_id VARCHAR PRIMARY KEY, decided_at VARCHAR, "
            "approved_by VARCHAR, approver_role VARCHAR, decision VARCHAR, conditions VARCHAR, "
            "tables VARCHAR[])"
        )
        for folder in releases:
            approval = json.loads((folder / "approval.json").read_text())
            tables = sorted(p.stem for p in folder.glob("*.parquet"))
            con.execute(
                "INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    folder.name,
                    approval.get("decided_at"),
                    approval.get("name"),
                    approval.get("role"),
                    approval.get("decision"),
                    approval.get("conditions"),
                    tables,
                ],
            )
        if releases:
            latest = releases[-1]
            for path in sorted(latest.glob("*.parquet")):
                absolute = _sql_literal(str(path.resolve()))
                con.execute(f'CREATE VIEW "{path.stem}" AS SELECT * FROM read_parquet({absolute})')
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.replace(tmp, target)
    return target


def query_catalogue(catalogue: Path, sql: str) -> pl.DataFrame:
    """Run one query against the catalogue opened read-only, as an analyst would."""
    if not catalogue.exists():
        raise ReleaseError(f"no catalogue at {catalogue}: nothing has been published yet")
    con = duckdb.connect(str(catalogue), read_only=True)
    # Analysts' SQL reads the published folder only: no read_csv of landing/ or any other file,
    # and the setting is locked so a query cannot turn it back on (DESIGN.md, Traps).
    published = _sql_literal(str(catalogue.parent.resolve()) + os.sep)
    con.execute(f"SET allowed_directories = [{published}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    try:
        return con.sql(sql).pl()
    except duckdb.Error as exc:
        # DuckDB messages quote the query, never table contents, so they are safe to show.
        raise ReleaseError(f"query failed: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
