"""The anonymisation report printed as an IG officer prints it: headless Chromium, A4.

The report is a real demo run's (tests/fixtures/report), with the fields later stages add
(two approvers, output checksums, who is hidden, the LP audit) filled in, so every section
and chart is on the page.
"""

import pytest

from tests.browser import (
    A4_TEXT_WIDTH_PX,
    dump_dom,
    is_a4,
    pdf_info,
    pdf_text,
    print_overflow,
    print_pdf,
    screenshot,
)
from tests.unit.test_report import full_report
from transforms.release.report import render_html

# The demo's report fills 9 pages; more than this means a layout fault (a table running on
# page after page), fewer that a section went missing.
PAGES = range(6, 15)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    data = full_report()
    path = folder / "anonymisation_report.html"
    path.write_text(render_html(data), encoding="utf-8")
    return path, data["release_id"]


def test_report_prints_on_a4_with_release_id_and_page_numbers_on_every_page(page, tmp_path):
    path, release = page
    pdf = print_pdf(path, tmp_path / "report.pdf", tmp_path / "profile")
    info = pdf_info(pdf)
    pages = int(info["Pages"])
    assert is_a4(info), info.get("Page size")
    assert pages in PAGES, pages
    texts = pdf_text(pdf)
    assert len(texts) == pages
    for number, text in enumerate(texts, start=1):
        assert release in text, f"page {number} lacks the release id"
        assert f"Page {number} of {pages}" in text, f"page {number} lacks its number"
    assert "Anonymisation report" in texts[0] and "Sign-off" in texts[-1]  # kept together


def test_no_element_overflows_the_a4_text_width(page, tmp_path):
    path, _ = page
    found = print_overflow(path, tmp_path / "profile")
    assert found["width"] == A4_TEXT_WIDTH_PX
    assert found["bad"] == [] and found["scroll_width"] <= found["width"], found


def test_the_overflow_measure_sees_a_table_too_wide(page, tmp_path):
    """The measure above must be able to fail: plant an unbreakable row wider than A4."""
    path, _ = page
    wide = tmp_path / "wide.html"
    planted = '<table><tr><td style="white-space:nowrap">' + "x" * 200 + "</td></tr></table>"
    wide.write_text(path.read_text().replace("<h2>Sign-off</h2>", planted + "<h2>Sign-off</h2>"))
    found = print_overflow(wide, tmp_path / "profile")
    assert any(item.startswith("td.") for item in found["bad"]), found


def test_report_renders_on_screen_with_its_charts(page, tmp_path):
    path, release = page
    dom = dump_dom(path, tmp_path / "profile")
    assert f"Release <code>{release}</code>" in dom
    assert dom.count("<svg") == 5 and "By ethnic group" in dom
    shot = screenshot(path, tmp_path / "report.png", tmp_path / "profile")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
