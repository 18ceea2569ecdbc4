"""The anonymisation report as an IG officer reads it: words, not key dumps; every field shown.

`report_data` is the JSON report of a real demo run (4,000 synthetic residents), with the fields
later stages add (decisions of two approvers, output checksums, who is hidden, the LP audit)
filled in as those stages write them.
"""

import copy
import json
import re
import shutil
from html import unescape
from pathlib import Path

import pytest

from schemas.errors import ConfigError
from schemas.report import PURPOSE_FILE, ReleaseReport, load_purpose
from transforms.disclosure.hierarchy import from_table, load_hierarchies
from transforms.release import charts, provenance, wording
from transforms.release.report import describe_release, render_html, variable_rows, write_report

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "data_contracts"
FIXTURE = REPO / "tests" / "fixtures" / "report" / "anonymisation_report.json"
HASH = "ab" * 32


def _decision(name, decision, **extra):
    return {
        "name": name, "role": "IG lead", "channel": "command line", "os_user": name.lower(),
        "uid": 1001, "host": "ig-laptop", "decision": decision, "conditions": "",
        "reason": "", "decided_at": "2026-11-27T21:00:00+00:00",
        "automatic_demo_approval": False, **extra,
    }  # fmt: skip


def full_report() -> dict:
    data = json.loads(FIXTURE.read_text())
    data.update(
        status="approved",
        approvers_required=2,
        built_by={"os_user": "builder", "uid": 1000, "host": "pipeline-01"},
        decisions=[
            _decision("Alice", "approved", conditions="internal use only"),
            _decision("Bob", "approved"),
        ],
        outputs=[
            {"path": "cohort_people_by_department_area.parquet", "sha256": HASH, "bytes": 2048},
            {"path": "manifest.json", "sha256": "cd" * 32, "bytes": 512},
        ],
        table_dimensions={
            "cohort_people_by_department_age": [
                {"name": "department", "words": "as recorded"},
                {"name": "age_band", "words": "20-year bands (0-19, 20-39, ...)"},
            ]
        },
        # The shapes the release's protection writes (flows/share_cohorts.py, stage_candidate).
        protection={"audit_rounds": 2, "cells_withheld_for_the_release": 7},
        hidden={
            "cohort_people_by_ethnic_group": {
                "unit": "people",
                "dimensions": {
                    "ethnic_group": {
                        "Asian": {"units": 120, "hidden": 9},
                        "White": {"units": 1500, "hidden": 0},
                    },
                    "department": {"housing": {"units": 356, "hidden": 4}},
                },
            },
            "cohort_households_by_area": {"unit": "households", "dimensions": {}},
        },
        worst_hidden={
            "ethnic group": {
                "Asian": [0.075, "cohort_people_by_ethnic_group"],
                "White": [0.01, "cohort_people_by_department_age"],
            },
            "department": {"housing": [0.0112, "cohort_people_by_ethnic_group"]},
        },
        audit={"cells_audited": 40, "narrowest_interval": 6, "passed": True},
        files_not_ingested=[{"file": "notes.docx", "reason": "unsupported format"}],
        # A section no template knows, nested, with a fingerprint in it (opt-out counts).
        opt_out={
            "purpose": "service_planning",
            "register_delivery_id": "ef" * 32,
            "objections_received": 14,
            "objections_matched_by_rule": {"nhs_number": 9, "name_dob": 3},
            "records_removed_by_department": {"housing": 4, "council_tax": 11},
        },
    )
    return data


@pytest.fixture
def report_data() -> dict:
    return full_report()


@pytest.fixture(scope="module")
def rendered() -> str:
    """The full report rendered once (charts take a second each on a loaded machine)."""
    return render_html(full_report())


def _text(html: str) -> str:
    """Visible text, roughly: tags and styles out, whitespace collapsed."""
    html = re.sub(r"<(style|svg)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def test_first_page_says_what_why_from_where_under_which_policy_and_the_decision(report_data):
    report_data["status"] = "awaiting approval"
    report_data["decisions"] = []
    html = render_html(report_data)
    first = _text(html.split('<section class="first-page">')[1].split("</section>")[0])
    purpose = report_data["purpose"]
    for expected in (
        purpose["title"],
        purpose["lawful_basis"].split("(")[0].strip(),
        purpose["data_sharing_agreement"]["reference"],
        "Residents known to each department, by area and sex",  # a table title from cohorts.yaml
        "adult social care (85 rows), benefits (616 rows)",
        "All extracted on 2026-11-27.",
        "council-default-2026",
        "Needed: approve or reject this release.",
        "2 approvals from different officers",
        "builder on pipeline-01",
    ):
        assert expected in first, expected


def test_the_policy_summary_says_how_the_numbers_are_protected_under_either_method(report_data):
    def first_page(data: dict) -> str:
        html = render_html(data)
        return _text(html.split('<section class="first-page">')[1].split("</section>")[0])

    data = copy.deepcopy(report_data)
    data["policy"] = {**data["policy"], "method": "suppression"}
    suppressed = first_page(data)
    assert "smaller counts are withheld" in suppressed
    assert "cell-key perturbation" not in suppressed

    data["policy"]["method"] = "cell_key"
    data["protection"] = {
        **data["protection"],
        "method": "cell_key",
        "perturbation_table": {"max_noise": 11, "small_counts": 2, "name": "t", "file": "p"},
        "perturbation_check": {"cells_checked": 10, "cells_differing": 0},
    }
    perturbed = first_page(data)
    assert "cell-key perturbation, at most 11 either way" in perturbed
    assert "no count from 1 to 2 is published" in perturbed
    assert "smaller counts are withheld" not in perturbed


def test_report_reads_in_words_not_key_dumps(rendered):
    text = _text(rendered)
    for raw in ("tok_veto", "prosecutor max", "balanced True", "discernibility 6", "age 3"):
        assert raw not in text, raw
    for words in (
        "Date of birth check (no link between records whose date of birth differs)",
        "20-year bands (0-19, 20-39, ...)",  # age at level 3, from the hierarchy
        "not published (all values combined)",  # area at its top level
        "People alone in their group",
        "Replaced by keyed pseudonyms for linkage, then removed; age is worked out first",
        "Rows received = accepted + quarantined",
        "age band : 20-year bands (0-19, 20-39, ...)",  # a table's own level, in words
    ):
        assert words in text, words
    # Percentages next to counts: 1,244 of 1,951 people were unique before generalisation.
    assert "1,244 (63.8%)" in text


def test_fingerprints_and_checksums_are_printed_in_full(rendered, report_data):
    html = rendered
    for delivery in report_data["deliveries"]:
        assert delivery["delivery_id"] in html
    assert HASH in html and "cd" * 32 in html and "2,048" in html


def test_two_approvals_each_with_who_and_where(rendered):
    text = _text(rendered)
    assert text.count("APPROVED") >= 3  # the status and one sign-off block per approver
    assert "alice on ig-laptop (user id 1001)" in text and "internal use only" in text
    assert "Built by builder on pipeline-01" in text


def test_withdrawn_release_says_withdrawn_with_who_and_why_not_approved(report_data):
    report_data["status"] = "withdrawn"
    report_data["decisions"].append(
        _decision("Carol", "withdrawn", reason="a department withdrew consent")
    )
    html = render_html(report_data)
    text = _text(html)
    assert "WITHDRAWN" in text and "APPROVED ·" not in text
    assert "withdrawn on 2026-11-27 21:00 UTC by Carol (IG lead)" in text
    assert "Reason: a department withdrew consent" in text
    assert 'class="status withdrawn"' in html


def test_fields_the_template_does_not_know_appear_as_sections(report_data):
    report_data["opt_outs"] = {"residents_opted_out": 12, "records_removed": 19}
    report_data["tables"][0]["people_hidden_by_protection"] = 89
    report_data["tables"][1].update(cells=38, cells_attribute_disclosure=2)
    text = _text(render_html(report_data))
    assert "Opt outs" in text and "Residents opted out 12" in text
    assert "Residents' objections (opt-out register)" in text and "ef" * 32 in text
    assert "Records removed by department Housing 4 Council tax 11" in text
    assert "Files not ingested" in text and "notes.docx unsupported format" in text
    assert "People hidden by protection 89" in text
    assert "of which all or none of a group" in text and "people 38 17 21 13 2 317" in text
    assert "Independent audit of withheld cells" in text and "Cells audited 40" in text


def test_who_is_hidden_is_charted_and_tabulated(rendered):
    html = rendered
    assert html.count("<svg") == 5  # risk, group sizes, per table, two groups of who is hidden
    assert "By ethnic group" in html and "7.5%" in html  # 9 of 120 Asian residents hidden
    text = _text(html)
    assert "ethnic group 1 of 2 1,620 9 0.6% Asian: 9 of 120 (7.5%)" in text
    assert "department 1 of 1 356 4 1.1% housing: 4 of 356 (1.1%)" in text
    assert "households_ by_ area no dimensions recorded" in text
    assert "Cells withheld to protect the release as a whole 7" in text
    # Readable offline: nothing is loaded from anywhere (links in the text are only links).
    for loader in ("<script", "<link", " src=", "@import", "url(http"):
        assert loader not in html, loader


def test_a_minimal_report_renders_without_later_sections():
    """An old report, or one from a run that stopped early: no section may fail to render."""
    minimal = {
        "release_id": "r1", "created_at": "2026-01-01T00:00:00+00:00",
        "status": "awaiting approval", "key_id": "k1", "demo": False,
        "policy": {"name": "p", "k": 10}, "contracts": {}, "deliveries": [],
        "pseudonymisation": {}, "linkage": {}, "population": {}, "anonymisation": {},
        "tables": [], "accounting": {}, "checks": {}, "limitations": [],
    }  # fmt: skip
    text = _text(render_html(minimal))
    assert "No purpose declared" in text and "Needed: approve or reject" in text
    assert "No output checksums recorded" in text
    assert "{{" not in text and "{%" not in text


def test_describe_release_reads_the_contracts_hierarchies_and_purpose():
    from schemas.contract import load_contracts

    contracts = load_contracts(CONTRACTS)
    found = describe_release(CONTRACTS, contracts)
    assert found["purpose"].data_sharing_agreement.reference
    assert len(found["variables"]) == sum(len(c.columns) for c in contracts.values())
    assert found["level_words"]["lsoa"][1] == "electoral ward (16 wards)"
    assert found["table_titles"] and all(found["table_titles"].values())
    dimensions = [d for dims in found["table_dimensions"].values() for d in dims]
    assert dimensions and all(d["name"] and d["words"] for d in dimensions)
    rows = variable_rows(found["variables"])
    dob = next(r for r in rows if r["column"] == "date_of_birth")
    assert len(dob["departments"]) == 6  # one row: every department and the opt-out register


def test_purpose_is_validated_with_every_problem_at_once(tmp_path):
    path = tmp_path / PURPOSE_FILE
    path.write_text("title: x\npurpose: ''\ndata_sharing_agreement: {reference: D1}\n")
    with pytest.raises(ConfigError) as caught:
        load_purpose(path)
    message = str(caught.value)
    for field in ("purpose", "controller", "lawful_basis", "data_sharing_agreement.title"):
        assert field in message, field
    assert load_purpose(CONTRACTS / PURPOSE_FILE).controller


def test_software_names_versions_and_the_commit_or_says_there_is_none(tmp_path):
    found = provenance.software()
    assert found["versions"]["polars"] and found["versions"]["matplotlib"]
    assert re.fullmatch(r"[0-9a-f]{40}", found["commit"]) or found["commit"] == "not a git checkout"
    outside = tmp_path / "unpacked"
    outside.mkdir()
    assert provenance.git_commit(outside)["commit"] == "not a git checkout"


def test_table_dimensions_in_words_at_each_tables_own_level(tmp_path):
    """cohorts.yaml may give each dimension its own hierarchy level, or bands."""
    from transforms.release.report import _table_descriptions

    path = tmp_path / "cohorts.yaml"
    path.write_text(
        "tables:\n"
        "  - name: cohort_x\n    title: X by ward\n    dimensions:\n"
        "      - {name: ward, source: lsoa, level: 1}\n"
        "      - {name: held, source: indicator_count, bands: ['0', '1', '2+']}\n"
    )
    words = {"lsoa": ["LSOA", "electoral ward (16 wards)", "not published"]}
    titles, dimensions = _table_descriptions(path, words)
    assert titles == {"cohort_x": "X by ward"}
    assert dimensions["cohort_x"] == [
        {"name": "ward", "words": "electoral ward (16 wards)"},
        {"name": "held", "words": "counted in bands: 0, 1, 2+"},
    ]


def test_level_words_come_from_the_hierarchies():
    hierarchies = load_hierarchies(CONTRACTS / "hierarchies", ["age", "ethnicity", "lsoa", "sex"])
    reference = CONTRACTS / "reference" / "geography.csv"
    assert wording.level_words(hierarchies["age"])[1:] == [
        "5-year bands (0-4, 5-9, ...)",
        "10-year bands (0-9, 10-19, ...)",
        "20-year bands (0-19, 20-39, ...)",
        "not published (all values combined)",
    ]
    assert wording.level_words(hierarchies["lsoa"], reference)[0].startswith("LSOA (128 small")
    assert wording.level_words(hierarchies["ethnicity"])[1].startswith("6 groups: Asian, Black")
    rule = {"type": "date", "levels": ["month", "year", "*"]}
    dates = from_table("seen", "seen.yaml", [["*"] * 4], rule)
    assert wording.level_words(dates) == [
        "exact value", "by month", "by year", "not published (all values combined)"
    ]


def test_class_size_bands_break_at_k():
    sizes = {"1": 5, "3": 2, "9": 1, "10": 1, "150": 2}
    assert charts.people_by_class_size(sizes, 10) == [
        ("1", 5, True), ("2-4", 6, True), ("5-9", 9, True), ("10-19", 10, False),
        ("20-49", 0, False), ("50-99", 0, False), ("100+", 300, False),
    ]  # fmt: skip


def test_charts_are_self_contained_svg_with_unique_ids(report_data):
    before = report_data["anonymisation"]["risk_before"]
    after = report_data["anonymisation"]["risk_after"]
    one, two = charts.risk_chart(before, after, 10), charts.risk_chart(before, after, 10)
    assert one.startswith("<svg") and "<title>" in one and "<script" not in one
    ids = set(re.findall(r'id="([^"]+)"', one)) & set(re.findall(r'id="([^"]+)"', two))
    assert ids == set()  # two charts in one page never share an id


def test_write_report_round_trips_the_json(tmp_path, report_data):
    model_fields = set(ReleaseReport.model_fields)
    report = ReleaseReport.model_validate(
        {k: v for k, v in copy.deepcopy(report_data).items() if k in model_fields}
    )
    json_path, html_path = write_report(tmp_path, report)
    assert ReleaseReport.model_validate_json(json_path.read_text()) == report
    assert report.release_id in html_path.read_text()
    shutil.rmtree(tmp_path / "reports")
