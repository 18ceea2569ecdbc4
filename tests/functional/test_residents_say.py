"""Residents' say, end to end: the opt-out register against the generator's ground truth, and
the transparency notice in a real browser under axe-core.

The council is made without identifier noise, so every record of a resident is linked to them
and "is this objector anywhere in the population?" has an exact answer.
"""

import json
import os
import re
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from schemas.contract import departments, load_contracts
from tests.accessibility.axe import run_axe
from tests.home import home_beside
from tests.leaks import find_leaks, landing_identifiers
from transforms.identity.link import link, load_linkage_rules
from transforms.identity.secure import latest_tokens
from transforms.intake.validate import inspect_delivery

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "data_contracts"
RESIDENTS = 2000
OFFICER = ("A. Officer", "Information Governance Lead")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}[-/]\d{2}[-/]\d{4}")


@pytest.fixture(scope="module")
def council(prefect_harness, tmp_path_factory):
    """Generate, run, read the notice while the release awaits approval, then approve it.

    Returns (root, release id, notice text before the decision)."""
    from flows.approval import decide
    from flows.share_cohorts import share_cohorts
    from transforms.synthetic import generate_council

    root = tmp_path_factory.mktemp("objecting-council")
    with home_beside(root):
        generate_council(root, RESIDENTS, seed=5, noise=0.0, extract_date=date.today())
        release = share_cohorts(root=str(root), contracts=str(CONTRACTS), demo=True)
    before = (root / "reports" / release / "notice.html").read_text(encoding="utf-8")
    with _as_os_user("ig-officer"):  # an approver must not be whoever ran the build
        decide(root, release, name=OFFICER[0], role=OFFICER[1], decision="approve")
    return root, release, before


@contextmanager
def _as_os_user(user: str):
    saved = {k: os.environ.get(k) for k in ("USER", "LOGNAME")}
    os.environ.update(USER=user, LOGNAME=user)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _report(root: Path, release: str) -> dict:
    return json.loads((root / "reports" / release / "anonymisation_report.json").read_text())


@pytest.fixture(scope="module")
def keyed(council) -> pl.DataFrame:
    """(department, record_id, resident_id, person_key): the flow's secure tokens linked again
    by the same rules, joined to the truth through the pipeline's own reading of landing/."""
    root = council[0]
    contracts = departments(load_contracts(CONTRACTS))
    records, ids = [], []
    for path, meta in latest_tokens(root).items():
        department = meta["department"]
        if department not in contracts:
            continue
        records.append(pl.read_parquet(path))
        landing = next((root / "landing" / department).glob(contracts[department].file_pattern))
        received, _ = inspect_delivery(landing, contracts[department], date.today())
        ids.append(received.frame.select(
            pl.lit(department).alias("department"), "row_number", "record_id"
        ))
    linked, _ = link(pl.concat(records, how="diagonal_relaxed"),
                     load_linkage_rules(CONTRACTS / "linkage.yaml"))
    truth = pl.read_parquet(root / "synthetic_truth" / "truth.parquet")
    return (
        linked.select("department", "row_number", "person_key")
        .join(pl.concat(ids), on=["department", "row_number"])
        .join(truth.select("department", "record_id", "resident_id"),
              on=["department", "record_id"])
    )


def test_no_objecting_resident_is_in_the_population_any_table_is_made_from(council, keyed):
    root, _, _ = council
    objections = pl.read_parquet(root / "synthetic_truth" / "opt_out.parquet")
    objectors = objections.filter("applies").get_column("resident_id")
    objector_keys = set(keyed.filter(pl.col("resident_id").is_in(objectors.implode()))
                        .get_column("person_key"))
    # Without the opt-outs these residents would be counted: the check can fail.
    assert len(objector_keys) >= 10
    for stage in ("linked", "anonymised"):  # every cohort table is tabulated from these
        population = pl.read_parquet(root / "secure" / stage / "population.parquet")
        assert population.height > 500
        assert objector_keys.isdisjoint(population.get_column("person_key")), stage
    # Everyone else stays (erring on the side of an objector may take a namesake too).
    others = set(keyed.get_column("person_key")) - objector_keys
    linked = set(pl.read_parquet(root / "secure" / "linked" / "population.parquet")["person_key"])
    assert len(others - linked) <= 0.005 * len(others)


def test_the_counts_match_the_ground_truth_and_the_books_balance(council, keyed):
    root, release, _ = council
    report = _report(root, release)
    counts = report["opt_out"]
    truth = pl.read_parquet(root / "synthetic_truth" / "opt_out.parquet")
    known = truth.filter(pl.col("resident_id").is_in(keyed["resident_id"].implode()))
    assert counts["objections_received"] == truth.height
    assert counts["register_delivery"]["rows_quarantined"] == 0
    assert counts["objections_not_yet_applicable"] == truth.filter(
        pl.col("objection_date") > date.today()
    ).height
    assert counts["objections_other_purpose"] == truth.filter(
        ~pl.col("scope").is_in(["all", "service_planning"])
    ).height
    # Every objector known to some department is matched; the rest are in no extract.
    assert counts["objections_matched"] == known.height
    assert counts["objections_applied"] == known.filter("applies").height
    removed = keyed.filter(pl.col("resident_id").is_in(
        known.filter("applies")["resident_id"].implode()))
    assert counts["records_removed_by_department"] == dict(
        removed.group_by("department").len().sort("department").iter_rows()
    )
    accounting = report["accounting"]
    assert accounting["records_removed_by_opt_out"] == counts["records_removed"] > 0
    assert accounting["balanced"] is True
    html = (root / "reports" / release / "anonymisation_report.html").read_text()
    assert "objections (opt-out register)" in html and "notice.html" in html


def test_the_audit_log_has_the_counts_and_no_identity(council):
    root, release, _ = council
    events = [json.loads(line) for line in (root / "audit" / "audit.jsonl").read_text()
              .splitlines()]
    staged = [e for e in events if e["event"] == "release_staged"]
    assert [e["release_id"] for e in staged] == [release]
    report = _report(root, release)
    assert staged[0]["opt_out"]["objections_applied"] == report["opt_out"]["objections_applied"]
    assert staged[0]["opt_out"]["records_removed_by_department"] == report["opt_out"][
        "records_removed_by_department"
    ]
    assert staged[0]["notice_readability"]["flesch_reading_ease"] > 0
    # The register's identifiers are looked for too. Bare dates are left out, as in the linkage
    # quality test: a kept attribute date (an objection's, a support plan's) can coincide with
    # somebody's date of birth.
    values = {v for v in landing_identifiers(root, CONTRACTS) if not DATE.fullmatch(v)}
    register = set(pl.read_csv(next((root / "landing" / "opt_out").glob("*.csv")),
                               infer_schema=False)["Last Name"].str.to_uppercase())
    assert values & register  # the oracle looks for the objectors' own identifiers too
    folders = [root / z for z in ("published", "reports", "staging", "secure", "audit")]
    assert find_leaks(values, folders) == []


def test_the_notice_is_written_next_to_the_report_and_is_plain_english(council):
    root, release, before = council
    report = _report(root, release)
    readability = report["transparency"]["readability"]
    assert readability["flesch_reading_ease"] >= 60  # "plain English"
    assert readability["flesch_kincaid_grade"] <= 9
    notice = (root / "reports" / release / "notice.html").read_text()
    for text in ('lang="en-GB"', "Planning council services".lower(), "Adult social care",
                 "at least 10 people", "privacy@synthetic-borough.example", "How to say no",
                 "Information Commissioner"):
        assert text in notice, text
    assert "waiting to be checked" in before and OFFICER[0] not in before
    today = date.today()
    assert f"{OFFICER[0]} ({OFFICER[1]}) checked and approved this release on " \
           f"{today.day} {today:%B %Y}" in notice
    assert not re.search(r"\{\{|\{%", notice)


def test_the_notice_passes_axe_in_chromium(council, tmp_path):
    root, release, _ = council
    result = run_axe(root / "reports" / release / "notice.html", tmp_path)
    assert result["violations"] == []
    assert result["passes"] >= 10 and result["version"] == "4.14.1"


def test_the_axe_check_fails_a_notice_without_lang_or_contrast(council, tmp_path):
    root, release, _ = council
    page = (root / "reports" / release / "notice.html").read_text()
    broken = page.replace(' lang="en-GB"', "", 1).replace(
        "</style>", " p { color: #b0b0b0; }\n</style>", 1
    )
    (tmp_path / "broken.html").write_text(broken)
    result = run_axe(tmp_path / "broken.html", tmp_path / "axe")
    found = {v["id"] for v in result["violations"]}
    assert {"html-has-lang", "color-contrast"} <= found


def test_the_published_catalogue_matches_the_release(council):
    root, release, _ = council
    con = duckdb.connect(str(root / "published" / "cohorts.duckdb"), read_only=True)
    try:
        rows = con.sql("SELECT release_id, approved_by FROM releases").fetchall()
    finally:
        con.close()
    assert rows == [(release, OFFICER[0])]
