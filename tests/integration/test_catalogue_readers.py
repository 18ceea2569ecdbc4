"""Publishing and withdrawing never break a reader: analysts query in a loop, in another process,
while releases are published and withdrawn; not one query may fail."""

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import polars as pl

from tests.integration.demo_catalogue import APPROVAL, CONTRACTS
from transforms.release import catalogue

DUCKDB_15 = Path(sys.executable).parent / "duckdb"
# An analyst in another process: open, query the latest table and the releases, close; repeat
# until told to stop, then report how many queries worked and how many failed.
READER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import duckdb
    path, stop = sys.argv[1], Path(sys.argv[2])
    ok, failed, errors, seen = 0, 0, [], set()
    while not stop.exists():
        try:
            con = duckdb.connect(path, read_only=True, config={"enable_external_access": False})
            try:
                rows = con.sql("SELECT release_id, sum(people) FROM latest.cohort_by_area "
                               "GROUP BY ALL").fetchall()
                con.sql("SELECT count(*) FROM releases").fetchall()
            finally:
                con.close()
            seen.update(r[0] for r in rows)
            ok += 1
        except Exception as exc:
            failed += 1
            errors.append(str(exc).splitlines()[0])
    print(json.dumps({"ok": ok, "failed": failed, "errors": errors[:3], "seen": sorted(seen)}))
    """
)


def _cli_reader(path, stop, counts: dict) -> None:
    while not stop.exists():
        result = subprocess.run(
            [DUCKDB_15, "-readonly", "-csv", str(path), "-c", "SELECT count(*) FROM releases"],
            capture_output=True,
            text=True,
        )
        if result.returncode == 0:
            counts["ok"] += 1
        else:
            counts["failed"] += 1
            counts["errors"].append(result.stderr.strip()[:200])


def _release(n: int) -> str:
    return f"202601{n:02d}T000000Z-r{n:05d}"


def _stage_and_publish(root, n: int):
    frame = pl.DataFrame(
        {"area": ["a", "b"], "people": [10 * n, None], "withheld": [False, True]},
        schema_overrides={"people": pl.Int64},
    )
    catalogue.stage_release(root, _release(n), {"cohort_by_area": frame}, {})
    return catalogue.publish_release(root, _release(n), APPROVAL, CONTRACTS)


def test_readers_never_fail_while_releases_are_published_and_withdrawn(tmp_path):
    path = _stage_and_publish(tmp_path, 1)
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path), str(stop)], stdout=subprocess.PIPE, text=True
    )
    # A second analyst with DuckDB 1.5's command-line client, one process per query.
    cli = {"ok": 0, "failed": 0, "errors": []}
    cli_reader = threading.Thread(target=_cli_reader, args=(path, stop, cli))
    cli_reader.start()
    try:
        time.sleep(1.0)  # let the reader get going on the first release
        for n in range(2, 7):
            _stage_and_publish(tmp_path, n)
            if n % 3 == 0:
                catalogue.withdraw_release(tmp_path, _release(n), "A. Officer", "test")
        catalogue.withdraw_release(tmp_path, _release(5), "A. Officer", "test")
        time.sleep(0.5)
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
        cli_reader.join(timeout=60)
    result = json.loads(out)
    print("reader during swaps:", {k: result[k] for k in ("ok", "failed")}, len(result["seen"]))
    print("DuckDB 1.5 CLI during swaps:", {k: cli[k] for k in ("ok", "failed")})
    assert result["failed"] == 0, result["errors"]
    assert cli["failed"] == 0, cli["errors"]
    assert result["ok"] >= 20 and cli["ok"] >= 5
    # The reader saw the catalogue change under it: several releases, one after another.
    assert len(result["seen"]) >= 3
    # 3, 5 and 6 withdrawn: the latest is 4 again, and the withdrawn ones stay listed.
    assert catalogue.query_catalogue(path, "SELECT DISTINCT release_id FROM latest.cohort_by_area")[
        "release_id"
    ].to_list() == [_release(4)]
    statuses = catalogue.query_catalogue(
        path, "SELECT status, count(*) AS n FROM releases GROUP BY status ORDER BY status"
    ).rows()
    assert statuses == [("published", 3), ("withdrawn", 3)]


def test_a_connection_held_open_keeps_its_release_through_publish_and_withdraw(tmp_path):
    import duckdb

    path = _stage_and_publish(tmp_path, 1)
    held = duckdb.connect(str(path), read_only=True)
    try:
        _stage_and_publish(tmp_path, 2)
        catalogue.withdraw_release(tmp_path, _release(1), "A. Officer", "test")
        assert held.sql(
            "SELECT people FROM latest.cohort_by_area WHERE NOT withheld"
        ).fetchall() == [(10,)]
    finally:
        held.close()
    assert catalogue.query_catalogue(
        path, "SELECT people FROM latest.cohort_by_area WHERE NOT withheld"
    ).rows() == [(20,)]
