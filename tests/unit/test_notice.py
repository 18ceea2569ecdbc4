"""The residents' notice: declared content, every decision state, and its readability."""

from pathlib import Path

import pytest

from schemas.cohorts import load_cohorts
from schemas.contract import departments, load_contracts
from schemas.errors import ConfigError
from schemas.policy import load_policy
from schemas.report import ReleaseReport
from schemas.transparency import load_transparency
from transforms.release.notice import notice_content, readability, render_notice, visible_text

CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"


def report(approval=None, status="awaiting approval", demo=False) -> ReleaseReport:
    shared = departments(load_contracts(CONTRACTS))
    policy = load_policy(CONTRACTS / "disclosure_policy.yaml")
    content = notice_content(
        load_transparency(CONTRACTS / "transparency.yaml", list(shared)), shared, policy,
        load_cohorts(CONTRACTS / "cohorts.yaml"),
    )
    return ReleaseReport(
        release_id="20261127T120000Z-abcdef", created_at="2026-11-27T12:00:00+00:00",
        status=status, key_id="k-1", demo=demo, policy={}, contracts={}, deliveries=[],
        pseudonymisation={}, linkage={}, population={}, anonymisation={}, tables=[],
        accounting={}, checks={}, limitations=[], opt_out={"as_of": "2026-10-31"},
        transparency=content, approval=approval,
    )


def decision(decision="approved", demo=False) -> dict:
    return {"decision": decision, "name": "A. Officer", "role": "IG Lead",
            "decided_at": "2026-11-28T09:30:00+00:00", "automatic_demo_approval": demo}


@pytest.mark.parametrize(
    ("approval", "status", "says"),
    [
        (None, "awaiting approval", "waiting to be checked"),
        (decision(), "approved", "A. Officer (IG Lead) checked and approved this release on "
                                 "28 November 2026"),
        (decision("rejected"), "rejected", "did not approve this release on 28 November 2026"),
        (decision(), "withdrawn", "We have since withdrawn this release"),
        (decision(demo=True), "approved", "approved by the computer on 28 November 2026"),
    ],
    ids=["awaiting", "approved", "rejected", "withdrawn", "demo"],
)
def test_the_notice_says_who_decided_and_when(approval, status, says):
    page = render_notice(report(approval, status, demo=approval is not None and
                                approval["automatic_demo_approval"]))
    assert says in page


def test_the_notice_is_built_from_the_declared_content():
    page = render_notice(report())
    for text in ("Synthetic Borough Council", "Planning council services".lower(),
                 "People who get care and support as adults", "ethnic group",
                 "Residents known to each department, by ward and sex", "at least 10 people",
                 "nearest 5", "by 31 October 2026", "Research by the council or its partners",
                 "privacy@synthetic-borough.example"):
        assert text in page, text
    assert '<html lang="en-GB">' in page


def test_every_department_needs_a_plain_line(tmp_path):
    text = (CONTRACTS / "transparency.yaml").read_text().replace("  benefits: People", "  x: P")
    (tmp_path / "transparency.yaml").write_text(text)
    with pytest.raises(ConfigError, match="no plain description for benefits"):
        load_transparency(tmp_path / "transparency.yaml", ["benefits", "housing"])


def test_readability_reads_the_words_not_the_markup():
    page = render_notice(report())
    words = visible_text(page)
    assert "font-family" not in words and "<" not in words
    measured = readability(page)
    assert measured["flesch_reading_ease"] >= 60 and measured["flesch_kincaid_grade"] <= 9
    hard = page.replace(
        "This helps us plan services",
        "Consequently, comprehensive interdepartmental administrative information facilitates "
        "organisational optimisation, notwithstanding considerable methodological complexity, "
        "institutional fragmentation and unprecedented intergovernmental accountability",
    )
    assert readability(hard)["flesch_reading_ease"] < measured["flesch_reading_ease"] - 5
