"""The catalogue as analysts meet it: schemas, withheld rows, descriptions, codes, the releases
table, a copied folder, DuckDB 1.5's command-line client, and no way to read other files."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from schemas.errors import ReleaseError
from schemas.policy import load_policy
from tests.integration.demo_catalogue import APPROVAL, CONTRACTS, FIXTURES, publish_demo
from transforms.release import catalogue
from transforms.release.catalogue_docs import table_definitions

FIRST, SECOND = "20261001T090000Z-aaaaaa", "20261101T090000Z-bbbbbb"
TABLES = len(table_definitions(FIXTURES / "cohorts.yaml"))
# The DuckDB 1.5 command-line client from PyPI (`duckdb-cli`, a dev dependency).
DUCKDB_15 = Path(sys.executable).parent / "duckdb"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Two demo-sized releases, the newer one published last."""
    root = tmp_path_factory.mktemp("analysts") / "data"
    publish_demo(root, FIRST, seed=1)
    path = publish_demo(root, SECOND, seed=2)
    return root, path


def _sql(path: Path, sql: str) -> list[tuple]:
    return catalogue.query_catalogue(path, sql).rows()


def test_one_schema_per_release_and_latest_shows_the_newest(demo):
    root, path = demo
    schemas = {r[0] for r in _sql(path, "SELECT schema_name FROM duckdb_schemas()")}
    assert {catalogue.schema_name(FIRST), catalogue.schema_name(SECOND), "latest"} <= schemas
    tables = [r[0] for r in _sql(path, "SELECT table_name FROM duckdb_tables()")]
    # The cohort tables of each release (stored inside the file) plus releases and the codes.
    assert len(tables) == 2 * TABLES + 2
    for schema, release in (("latest", SECOND), ("main", SECOND)):
        views = _sql(
            path,
            f"SELECT view_name FROM duckdb_views() WHERE schema_name = '{schema}' AND NOT internal",
        )
        assert len(views) == TABLES
        for (view,) in views:
            assert _sql(path, f"SELECT DISTINCT release_id FROM {schema}.{view}") == [(release,)]
    old = catalogue.schema_name(FIRST)
    assert _sql(path, f"SELECT DISTINCT release_id FROM {old}.cohort_indicator_by_ward") == [
        (FIRST,)
    ]
    assert _sql(path, "SELECT release_id FROM releases WHERE is_latest") == [(SECOND,)]


def test_every_cohort_table_has_release_id_first_and_withheld_last(demo):
    _, path = demo
    columns = catalogue.query_catalogue(
        path,
        "SELECT schema_name, table_name, list(column_name ORDER BY column_index) AS columns "
        "FROM duckdb_columns() WHERE table_name LIKE 'cohort_%' GROUP BY ALL",
    )
    assert columns.height == 4 * TABLES  # two releases, latest and main
    for names in columns["columns"].to_list():
        assert names[0] == "release_id" and names[-1] == "withheld"
        assert names[-2] in ("people", "households")


def test_withheld_cells_are_rows_with_no_count_never_zero(tmp_path):
    frame = pl.DataFrame(
        {"area": ["a", "b", "c"], "people": [25, None, None], "withheld": [False, True, True]},
        schema_overrides={"people": pl.Int64},
    )
    catalogue.stage_release(tmp_path, FIRST, {"cohort_by_area": frame}, {})
    path = catalogue.publish_release(tmp_path, FIRST, APPROVAL, CONTRACTS)
    rows = _sql(path, "SELECT area, people, withheld FROM latest.cohort_by_area ORDER BY area")
    assert rows == [("a", 25, False), ("b", None, True), ("c", None, True)]
    assert _sql(path, "SELECT count(*) FROM latest.cohort_by_area WHERE people = 0") == [(0,)]


def test_a_table_staged_without_withheld_is_all_published_cells(tmp_path):
    frame = pl.DataFrame({"area": ["a"], "people": [25]})
    catalogue.stage_release(tmp_path, FIRST, {"cohort_by_area": frame}, {})
    path = catalogue.publish_release(tmp_path, FIRST, APPROVAL, CONTRACTS)
    assert _sql(path, "SELECT * FROM latest.cohort_by_area") == [(FIRST, "a", 25, False)]


def test_every_table_view_and_column_is_described(demo):
    _, path = demo
    undescribed = _sql(
        path,
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE coalesce(comment, '') = '' "
        "UNION ALL SELECT schema_name, view_name FROM duckdb_views() "
        "WHERE NOT internal AND coalesce(comment, '') = '' "
        "UNION ALL SELECT schema_name, table_name || '.' || column_name FROM duckdb_columns() "
        "WHERE NOT internal AND coalesce(comment, '') = ''",
    )
    assert undescribed == []
    [(table,)] = _sql(
        path,
        "SELECT comment FROM duckdb_views() "
        "WHERE schema_name = 'latest' AND view_name = 'cohort_department_overlap_by_ward'",
    )
    assert table.startswith("Residents known to both of two departments, by ward.")
    [(column,)] = _sql(
        path,
        "SELECT comment FROM duckdb_columns() WHERE schema_name = 'latest' "
        "AND table_name = 'cohort_people_by_department_ward_sex' AND column_name = 'people'",
    )
    # The count's description follows the policy's method: rounded, or perturbed.
    method = load_policy(CONTRACTS / "disclosure_policy.yaml").method
    assert "NULL where the cell is withheld" in column
    assert ("perturbed" if method == "cell_key" else "nearest 5") in column


@pytest.mark.parametrize(
    ("column", "code", "label", "parent_label"),
    [
        ("sex", "U", "Not known", "All"),
        ("age_band", "unknown", "Not known", None),
        ("ward", "E01999001", "Cohortshire 001A", "Abbeygate"),
        ("ward", "E05999001", "Abbeygate", "Cohortshire"),
        ("indicator", "rent_arrears", "Rent arrears", None),
        ("indicators_held", "2+", "2 or more", None),
        ("department_a", "housing", "Housing tenancies and applicants", None),
        ("ethnic_group", "A1", "Indian", "Asian, Asian British or Asian Welsh"),
        ("department", "council_tax", "Council tax liable parties", None),
    ],
)
def test_data_dictionary_explains_the_codes(demo, column, code, label, parent_label):
    _, path = demo
    rows = _sql(
        path,
        "SELECT label, parent_label, meaning FROM data_dictionary "
        f"WHERE column_name = '{column}' AND code = '{code}'",
    )
    assert len(rows) == 1 and rows[0][:2] == (label, parent_label) and rows[0][2]


def test_every_published_code_is_in_the_dictionary(demo):
    _, path = demo
    for table, columns in (
        ("cohort_people_by_department_ward_sex", ("department", "ward", "sex")),
        ("cohort_people_by_department_age_sex", ("age_band",)),
        ("cohort_department_overlap_by_ward", ("department_a", "department_b")),
        ("cohort_people_by_department_ethnic_group", ("ethnic_group",)),
        ("cohort_indicator_by_ward", ("indicator",)),
        ("cohort_indicator_count_by_ward", ("indicators_held",)),
        ("cohort_households_by_departments_involved", ("departments_involved",)),
    ):
        for column in columns:
            missing = _sql(
                path,
                f"SELECT DISTINCT t.{column} FROM latest.{table} t ANTI JOIN data_dictionary d "
                f"ON d.column_name = '{column}' AND d.code = t.{column}",
            )
            assert missing == [], (table, column)


def test_releases_table_has_typed_times_and_approvers(demo):
    _, path = demo
    types = dict(
        _sql(
            path,
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'releases'",
        )
    )
    assert types["approved_at"] == types["published_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["withdrawn_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["approvers"].startswith("STRUCT(") and types["approvers"].endswith("[]")
    [(approver, when)] = _sql(
        path,
        "SELECT approvers[1].name, approvers[1].decided_at = TIMESTAMPTZ "
        f"'2026-11-21 09:30:00+00' FROM releases WHERE release_id = '{FIRST}'",
    )
    assert (approver, when) == ("A. Officer", True)


def test_two_approvers_are_both_listed_and_their_accounts_are_not_published(tmp_path):
    frame = pl.DataFrame({"area": ["a"], "people": [25]})
    catalogue.stage_release(tmp_path, FIRST, {"cohort_by_area": frame}, {})
    first = {**APPROVAL, "os_user": "officer1", "host": "ig-laptop-1"}
    second = {**first, "name": "B. Officer", "decided_at": "2026-11-21T10:00:00+00:00"}
    # As a two-person decision arrives: the last decision, carrying every approval.
    decision = {**second, "name": "A. Officer and B. Officer", "approvals": [first, second]}
    path = catalogue.publish_release(tmp_path, FIRST, decision, CONTRACTS)
    assert _sql(path, "SELECT approved_by, len(approvers) FROM releases") == [
        ("A. Officer and B. Officer", 2)
    ]
    published = "".join(p.read_text() for p in (tmp_path / "published").rglob("*.json"))
    assert "A. Officer" in published and "officer1" not in published
    assert "ig-laptop" not in published


def test_a_copied_published_folder_works_anywhere(demo, tmp_path):
    root, _ = demo
    copy = tmp_path / "elsewhere" / "published"
    shutil.copytree(root / "published", copy)
    copied = copy / catalogue.CATALOGUE_FILE
    with _hidden(root / "published"):
        rows = _sql(copied, "SELECT count(*) FROM latest.cohort_people_by_department_ward_sex")
        assert rows[0][0] > 0
        # Reading every release's Parquet files gives the release as a column (Hive layout).
        frame = pl.scan_parquet(
            copy / "releases" / "*" / "cohort_indicator_by_ward.parquet", hive_partitioning=True
        )
        releases = frame.select(pl.col("release_id").unique().sort()).collect()
        assert releases["release_id"].to_list() == [FIRST, SECOND]
        output = _duckdb_15(copied, "SELECT count(*) FROM latest.cohort_indicator_by_ward;")
        assert int(output.strip().splitlines()[-1]) > 0


def test_duckdb_15_command_line_client_opens_the_catalogue(demo):
    _, path = demo
    version = subprocess.run([DUCKDB_15, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("v1.5.")
    output = _duckdb_15(path, "SELECT release_id, status FROM releases ORDER BY release_id;")
    assert output.splitlines() == ["release_id,status", f"{FIRST},published", f"{SECOND},published"]


def test_analysts_connection_cannot_read_other_files(demo, tmp_path):
    _, path = demo
    secret = tmp_path / "landing.csv"
    secret.write_text("name\nsomeone\n")
    with pytest.raises(ReleaseError, match="query failed"):
        catalogue.query_catalogue(path, f"SELECT * FROM read_csv('{secret}')")
    with pytest.raises(ReleaseError, match="query failed"):
        catalogue.query_catalogue(path, "SET enable_external_access = true")


def _duckdb_15(path: Path, sql: str) -> str:
    result = subprocess.run(
        [DUCKDB_15, "-readonly", "-csv", str(path), "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


class _hidden:
    """Move a folder out of the way for a while: proves nothing still points into it."""

    def __init__(self, folder: Path):
        self.folder, self.away = folder, folder.with_name(folder.name + ".away")

    def __enter__(self):
        os.replace(self.folder, self.away)

    def __exit__(self, *exc):
        os.replace(self.away, self.folder)
