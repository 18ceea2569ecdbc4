"""The whole pipeline on a small synthetic council, under one real (test) Prefect server."""

import json
import stat
from datetime import date
from pathlib import Path

import duckdb
import pytest

from schemas.cohorts import load_cohorts
from schemas.policy import load_policy
from tests.home import home_beside
from tests.leaks import find_leaks, landing_identifiers

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "data_contracts"
RESIDENTS = 4000


@pytest.fixture(scope="module")
def published(prefect_harness, tmp_path_factory):
    """Generate a council, run the flow with demo approval; return (root, release id)."""
    from flows.share_cohorts import share_cohorts
    from transforms.synthetic import generate_council

    root = tmp_path_factory.mktemp("council")
    with home_beside(root):
        generate_council(root, RESIDENTS, seed=11, extract_date=date.today(), invalid=0.01)
        release = share_cohorts(
            root=str(root), contracts=str(CONTRACTS), demo=True, demo_approval=True
        )
    return root, release


def _catalogue(root: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(root / "published" / "cohorts.duckdb"), read_only=True)


def test_catalogue_rows_each_stand_for_at_least_k_people(published):
    root, release = published
    policy = load_policy(CONTRACTS / "disclosure_policy.yaml")
    con = _catalogue(root)
    try:
        tables = [
            r[0]
            for r in con.sql(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'latest' AND table_name LIKE 'cohort_%'"
            ).fetchall()
        ]
        definitions = load_cohorts(CONTRACTS / "cohorts.yaml").tables
        assert len(tables) == len(definitions)
        # Sum and median tables count filtered subsets (tenants on means-tested benefits) that
        # this small council is too small to publish; the demo and tests/unit/test_magnitude.py
        # exercise them. Half of the count tables must publish something.
        measured = {t.name for t in definitions if t.measure is not None}
        published_tables = 0
        for table in tables:
            unit = "households" if "households" in table else "people"
            rows, smallest, withheld_shown = con.sql(
                f"SELECT count(*), min({unit}) FILTER (WHERE NOT withheld AND {unit} > 0), "
                f"count({unit}) FILTER (WHERE withheld) FROM {table}"
            ).fetchall()[0]
            assert rows > 0, table
            # Suppression publishes nothing below k; perturbation nothing in 1..js.
            floor = (
                policy.perturbation.small_counts + 1 if policy.method == "cell_key" else policy.k
            )
            assert smallest is None or smallest >= floor, table  # None: all withheld
            assert withheld_shown == 0, table
            published_tables += smallest is not None and table not in measured
        assert published_tables >= (len(tables) - len(measured)) // 2
        approvals = con.sql("SELECT release_id, status, approved_by FROM releases").fetchall()
        assert approvals == [(release, "published", "automatic demo approval")]
    finally:
        con.close()


def test_report_accounts_for_every_row_and_is_labelled_demo(published):
    root, release = published
    report = json.loads((root / "reports" / release / "anonymisation_report.json").read_text())
    assert report["demo"] is True and report["key_id"].startswith("demo-")
    assert report["status"] == "approved"
    assert report["approval"]["automatic_demo_approval"] is True
    accounting = report["accounting"]
    assert accounting["balanced"] is True
    assert accounting["rows_quarantined"] > 0  # the council was made with some broken rows
    assert (
        accounting["rows_received"]
        == accounting["records_accepted"] + accounting["rows_quarantined"]
    )
    assert accounting["people_linked"] == (
        accounting["people_withheld_no_area"] + accounting["people_counted_in_cohort_tables"]
    )
    # Nobody is removed from the count tables: every linked resident with an area is counted.
    assert "people_suppressed_by_anonymiser" not in accounting
    assert len(report["deliveries"]) == 5
    html = (root / "reports" / release / "anonymisation_report.html").read_text()
    assert "Demo release" in html and release in html


def test_no_identifier_from_landing_appears_outside_restricted_zones(published):
    root, _ = published
    values = landing_identifiers(root, CONTRACTS)
    assert len(values) > 5 * RESIDENTS / 10  # the oracle really read the extracts
    folders = [root / zone for zone in ("published", "reports", "staging", "secure", "audit")]
    assert find_leaks(values, folders) == []


def test_leak_scan_would_catch_a_leak(published, tmp_path):
    root, _ = published
    values = landing_identifiers(root, CONTRACTS)
    planted = tmp_path / "report.html"
    planted.write_text(f"<td>{sorted(values)[0]}</td>")
    assert find_leaks(values, [tmp_path]) == [(str(planted), 1)]


def test_audit_log_records_staging_approval_and_publication(published):
    root, release = published
    events = [
        json.loads(line) for line in (root / "audit" / "audit.jsonl").read_text().splitlines()
    ]
    kinds = [e["event"] for e in events if e.get("release_id") == release]
    assert kinds == ["release_staged", "release_approved", "release_published"]


def test_published_release_is_read_only_and_immutable(published):
    root, release = published
    folder = root / "published" / "releases" / f"release_id={release}"
    files = sorted(folder.glob("*.parquet"))
    assert len(files) == len(load_cohorts(CONTRACTS / "cohorts.yaml").tables)
    # Mode bits, not open(): the tests may run as root, which ignores them.
    for path in [folder, *files]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0, path.name


def test_second_run_reuses_deliveries_and_swaps_the_catalogue_atomically(published):
    """An analyst's open connection keeps its release; a new connection sees the new one."""
    from flows.approval import decide
    from flows.share_cohorts import share_cohorts

    root, first = published
    analyst = _catalogue(root)
    try:
        before = analyst.sql("SELECT count(*) FROM releases").fetchall()[0][0]
        # Same demo key as the first run: the secure zone's tokens must stay joinable. Nothing
        # changed since the first run, so only `force` builds a second release.
        with home_beside(root):
            unchanged = share_cohorts(root=str(root), contracts=str(CONTRACTS), demo=True)
            second = share_cohorts(
                root=str(root), contracts=str(CONTRACTS), demo=True, force=True
            )
        assert unchanged == first
        assert second != first
        with pytest.MonkeyPatch.context() as mp:  # an officer, not whoever ran the build
            mp.setenv("LOGNAME", "ig-officer")
            decide(
                root,
                second,
                name="A. Officer",
                role="Information Governance Lead",
                decision="approve",
                conditions="internal use",
            )
        assert analyst.sql("SELECT count(*) FROM releases").fetchall()[0][0] == before == 1
    finally:
        analyst.close()
    fresh = _catalogue(root)
    try:
        assert [
            r[0] for r in fresh.sql("SELECT release_id FROM releases ORDER BY 1").fetchall()
        ] == sorted([first, second])
    finally:
        fresh.close()
    report = json.loads((root / "reports" / second / "anonymisation_report.json").read_text())
    assert {d["delivery_id"] for d in report["deliveries"]} == {
        d["delivery_id"]
        for d in json.loads((root / "reports" / first / "anonymisation_report.json").read_text())[
            "deliveries"
        ]
    }


def test_prefect_keeps_no_identifier_in_logs_artifacts_or_parameters(published):
    """What the Prefect server stored about the run: logs, artifacts, parameters, run names."""
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogWorker

    root, _ = published
    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs()
        artifacts = client.read_artifacts()
        flow_runs = client.read_flow_runs()
        task_runs = client.read_task_runs()
    stored = "\n".join(
        [log.message for log in logs]
        + [str(a.data) + str(a.description) for a in artifacts]
        + [json.dumps(r.parameters, default=str) + r.name for r in flow_runs]
        + [r.name for r in task_runs]
    )
    assert any("received" in log.message for log in logs)  # the run really logged here
    assert any(a.key == "anonymisation-report" for a in artifacts)
    scratch = root.parent / f"{root.name}-prefect-dump"
    scratch.mkdir(exist_ok=True)
    (scratch / "prefect.txt").write_text(stored)
    assert find_leaks(landing_identifiers(root, CONTRACTS), [scratch]) == []


def test_report_renders_in_a_real_browser(published, tmp_path):
    """What the IG officer sees: Chromium renders the report with every section filled in,
    and laid out for print it fits the A4 text width."""
    from tests.browser import dump_dom, print_overflow, screenshot

    root, release = published
    page = root / "reports" / release / "anonymisation_report.html"
    dom = dump_dom(page, tmp_path / "profile")
    for text in (
        f"Release <code>{release}</code>",
        "APPROVED",
        "Demo release",
        "What is being released",
        "Sources and row accounting",
        "council_<wbr>tax_",  # file names may wrap at underscores
        "Generalisation and re-identification risk",
        "cohort_<wbr>prevention_<wbr>two_<wbr>plus_<wbr>indicators",
        "Checks before release",
        "automatic demo approval",
    ):
        assert text in dom, text
    assert "{{" not in dom and "{%" not in dom
    assert print_overflow(page, tmp_path / "print")["bad"] == []
    shot = screenshot(page, tmp_path / "report.png", tmp_path / "profile", size="1200,2000")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
