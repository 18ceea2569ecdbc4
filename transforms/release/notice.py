"""The transparency notice: a short plain-English page for residents about one release.

Its content is declared, never typed per release: `notice_content` gathers it from
data_contracts/transparency.yaml, the department contracts, the disclosure policy and the
cohort tables when the release is built, and it travels in the report (`transparency`). The
page is rendered from the report with its approval (`render_notice`), so writing the report
again after a decision re-renders the notice with who approved it and when.

Readability is measured with textstat (Flesch reading ease and Flesch-Kincaid grade) on the
text a resident reads, and stated in the report; the notice itself holds no count of people.
"""

from __future__ import annotations

from datetime import date, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

NOTICE_FILE = "notice.html"
# How each quasi-identifier is named for a resident; others are shown with spaces for "_".
PLAIN_NAMES = {
    "age": "age",
    "sex": "sex",
    "ethnicity": "ethnic group",
    "lsoa": "the local area where they live",
}


def _long_date(value: str) -> str:
    """'2026-11-27T21:40:00+00:00' -> '27 November 2026'."""
    day = datetime.fromisoformat(value).date() if "T" in value else date.fromisoformat(value)
    return f"{day.day} {day:%B %Y}"


_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent),
    autoescape=select_autoescape(["html", "j2"]),
)
_TEMPLATES.filters["long_date"] = _long_date


def notice_content(transparency, contracts: dict, policy, cohorts) -> dict[str, Any]:
    """What the notice says about this release, from the declarative inputs only."""
    departments = [
        {"name": name, "title": contract.title, "about": transparency.departments[name]}
        for name, contract in sorted(contracts.items())
    ]
    return {
        "council": transparency.council,
        "purpose": transparency.purpose.model_dump(),
        "other_purposes": list(transparency.other_purposes.values()),
        "departments": departments,
        "facts_used": [
            PLAIN_NAMES.get(q, q.replace("_", " ")) for q in policy.quasi_identifiers
        ],
        "tables": [table.title for table in cohorts.tables],
        "smallest_group": max(policy.k, policy.min_published_count),
        "round_to": policy.rule.round_to,
        "contact": transparency.contact.model_dump(),
    }


def render_notice(report) -> str:
    return _TEMPLATES.get_template("notice.html.j2").render(r=report)


class _Text(HTMLParser):
    """The words a resident reads: body text, without style, script or the page title."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "script", "title", "head"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("style", "script", "title", "head"):
            self._skip -= 1
        elif tag in ("p", "li", "h1", "h2", "h3"):
            # A heading or list item is a sentence of its own to a reader (and to textstat).
            done = "".join(self.parts).rstrip().endswith((".", "!", "?", ":"))
            self.parts.append("\n" if done else ".\n")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join("".join(parser.parts).split())


def readability(html: str) -> dict[str, float | int]:
    """Flesch reading ease (60-70: plain English) and Flesch-Kincaid grade of the page's text."""
    import textstat  # imported here: only releases need it, and it loads a pronouncing dictionary

    text = visible_text(html)
    return {
        "flesch_reading_ease": round(float(textstat.flesch_reading_ease(text)), 1),
        "flesch_kincaid_grade": round(float(textstat.flesch_kincaid_grade(text)), 1),
        "words": int(textstat.lexicon_count(text)),
        "sentences": int(textstat.sentence_count(text)),
    }
