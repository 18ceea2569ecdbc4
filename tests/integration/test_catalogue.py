"""Staging, the disclosure checks and publishing against real Parquet and DuckDB files."""

import polars as pl
import pytest

from schemas.cohorts import CohortDefinitions, CohortTable, Dimension
from schemas.errors import DisclosureError, ReleaseError
from schemas.policy import DisclosurePolicy
from transforms.files import write_parquet
from transforms.release import catalogue
from transforms.release.gates import check_release, scan_values

POLICY = DisclosurePolicy(
    name="test",
    k=10,
    max_suppression=0.0,
    small_number_rule="ons_threshold_10",
    quasi_identifiers=("lsoa",),
)
COHORTS = CohortDefinitions(
    tables=(
        CohortTable(
            name="cohort_by_area",
            title="t",
            description="d",
            question="q",
            unit="people",
            dimensions=(Dimension(name="area", source="lsoa"),),
        ),
    )
)
APPROVAL = {
    "decision": "approved",
    "name": "A. Officer",
    "role": "IG lead",
    "decided_at": "2026-11-21T00:00:00+00:00",
    "conditions": "",
}


def _population(tmp_path, sizes):
    areas = [a for a, n in sizes.items() for _ in range(n)]
    path = tmp_path / "population.parquet"
    pl.DataFrame({"person_key": [f"p{i}" for i in range(len(areas))], "lsoa": areas}).write_parquet(
        path
    )
    return path


def _stage(root, release, table):
    return catalogue.stage_release(
        root, release, {"cohort_by_area": table}, {"release_id": release}
    )


def _table(areas, people, withheld=None):
    withheld = withheld or [False] * len(areas)
    return pl.DataFrame(
        {"area": areas, "people": people, "withheld": withheld},
        schema_overrides={"people": pl.Int64},
    )


def test_checks_pass_on_an_honest_release(tmp_path):
    population = _population(tmp_path, {"a": 10, "b": 12, "c": 20})
    staged = _stage(tmp_path, "r1", _table(["a", "b", "c"], [10, 12, None], [False, False, True]))
    counts = check_release(staged, population, COHORTS, POLICY)
    assert counts.rows_checked == 3 and counts.rows_below_k == 0 and counts.values_scanned == 3


@pytest.mark.parametrize(("shown", "refused"), [(9, True), (10, False), (11, False), (0, False)])
def test_gate_refuses_a_published_row_below_k_at_the_boundary(tmp_path, shown, refused):
    population = _population(tmp_path, {"a": 30})
    staged = _stage(tmp_path, "r1", _table(["a", "b"], [30, shown]))
    if refused:
        with pytest.raises(DisclosureError, match="1 published row.* fewer than 10 people"):
            check_release(staged, population, COHORTS, POLICY)
    else:
        assert check_release(staged, population, COHORTS, POLICY).rows_below_k == 0


def test_gate_refuses_a_withheld_row_that_shows_a_count(tmp_path):
    population = _population(tmp_path, {"a": 30})
    staged = _stage(tmp_path, "r1", _table(["a", "b"], [30, 4], [False, True]))
    with pytest.raises(DisclosureError, match="1 withheld row"):
        check_release(staged, population, COHORTS, POLICY)


def test_gate_refuses_a_population_that_is_not_k_anonymous(tmp_path):
    population = _population(tmp_path, {"a": 30, "b": 4})
    staged = _stage(tmp_path, "r1", _table(["a"], [30]))
    with pytest.raises(DisclosureError, match="1 quasi-identifier class"):
        check_release(staged, population, COHORTS, POLICY)


def test_identifier_scan_stops_a_release_and_names_the_kind_not_the_value(tmp_path):
    population = _population(tmp_path, {"943 476 5919": 12})
    staged = _stage(tmp_path, "r1", _table(["943 476 5919"], [12]))
    with pytest.raises(DisclosureError) as error:
        check_release(staged, population, COHORTS, POLICY)
    assert "nhs_number" in str(error.value) and "5919" not in str(error.value)


@pytest.mark.parametrize(
    "value",
    [
        "ZZ1 2AB",
        "AB123456C",
        "9434765919",
        "1980-02-01",
        "someone@example.org",
        "07700 900123",
        "1a2b3c4d5e6f7a8b9c",
    ],
)
def test_scan_recognises_identifier_shapes(value):
    assert scan_values([value])


@pytest.mark.parametrize("value", ["30-34", "E05999001", "housing+benefits", "White", "F", "*"])
def test_scan_leaves_published_categories_alone(value):
    assert scan_values([value]) == {}


def test_publish_is_immutable_and_swaps_the_catalogue_under_an_open_reader(tmp_path):
    _stage(tmp_path, "20260101T000000Z-a", pl.DataFrame({"area": ["a"], "people": [10]}))
    path = catalogue.publish_release(tmp_path, "20260101T000000Z-a", APPROVAL)
    rows = catalogue.query_catalogue(path, "SELECT area, people FROM cohort_by_area").rows()
    assert rows == [("a", 10)]
    # Publishing the same files again completes (a re-run after a crash); other files are refused.
    assert catalogue.publish_release(tmp_path, "20260101T000000Z-a", APPROVAL) == path
    staged = catalogue.staging_dir(tmp_path, "20260101T000000Z-a") / "cohort_by_area.parquet"
    write_parquet(pl.DataFrame({"area": ["a"], "people": [15]}), staged)
    with pytest.raises(ReleaseError, match="immutable"):
        catalogue.publish_release(tmp_path, "20260101T000000Z-a", APPROVAL)

    import duckdb

    reader = duckdb.connect(str(path), read_only=True)
    _stage(tmp_path, "20260201T000000Z-b", pl.DataFrame({"area": ["a"], "people": [20]}))
    catalogue.publish_release(tmp_path, "20260201T000000Z-b", APPROVAL)
    assert reader.sql("SELECT people FROM cohort_by_area").fetchall() == [(10,)]
    reader.close()
    assert catalogue.query_catalogue(path, "SELECT people FROM cohort_by_area").rows() == [(20,)]
    assert catalogue.query_catalogue(path, "SELECT count(*) FROM releases").item() == 2


def test_catalogue_views_work_from_any_working_directory(tmp_path, monkeypatch):
    _stage(tmp_path, "r1", pl.DataFrame({"area": ["a"], "people": [10]}))
    path = catalogue.publish_release(tmp_path, "r1", APPROVAL)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert catalogue.query_catalogue(path, "SELECT count(*) FROM cohort_by_area").item() == 1


def test_unstaged_release_cannot_be_published(tmp_path):
    with pytest.raises(ReleaseError, match="not staged"):
        catalogue.publish_release(tmp_path, "nope", APPROVAL)


def test_failed_staging_leaves_nothing_behind(tmp_path):
    with pytest.raises(AttributeError):
        catalogue.stage_release(tmp_path, "r1", {"cohort_by_area": object()}, {})
    assert list((tmp_path / "staging").iterdir()) == []


def test_withdrawn_release_leaves_the_catalogue_but_stays_listed_with_who_and_why(tmp_path):
    _stage(tmp_path, "20260101T000000Z-a", pl.DataFrame({"area": ["a"], "people": [10]}))
    catalogue.publish_release(tmp_path, "20260101T000000Z-a", APPROVAL)
    _stage(tmp_path, "20260201T000000Z-b", pl.DataFrame({"area": ["a"], "people": [20]}))
    path = catalogue.publish_release(tmp_path, "20260201T000000Z-b", APPROVAL)

    reason = "a table was published with the wrong policy"
    catalogue.withdraw_release(tmp_path, "20260201T000000Z-b", "B. Officer", reason, role="DPO")

    listed = catalogue.query_catalogue(
        path, "SELECT release_id, status, withdrawn_by, withdrawal_reason FROM releases"
    ).rows()
    assert listed == [
        ("20260101T000000Z-a", "published", None, None),
        ("20260201T000000Z-b", "withdrawn", "B. Officer, DPO", reason),
    ]
    # The views fall back to the latest release still published; the withdrawn schema is gone.
    assert catalogue.query_catalogue(path, "SELECT people FROM cohort_by_area").item() == 10
    schemas = catalogue.query_catalogue(path, "SELECT schema_name FROM duckdb_schemas()")
    assert catalogue.schema_name("20260201T000000Z-b") not in schemas["schema_name"].to_list()
    assert not catalogue.release_dir(tmp_path, "20260201T000000Z-b").exists()
    assert (tmp_path / "staging" / "withdrawn" / "20260201T000000Z-b").is_dir()
    # Withdrawing again completes quietly (a re-run); a release never published is refused.
    catalogue.withdraw_release(tmp_path, "20260201T000000Z-b", "B. Officer", reason)
    with pytest.raises(ReleaseError, match="not published"):
        catalogue.withdraw_release(tmp_path, "20260301T000000Z-c", "B. Officer", reason)
    with pytest.raises(ReleaseError, match="withdrawn"):
        catalogue.publish_release(tmp_path, "20260201T000000Z-b", APPROVAL)
