"""Write the anonymisation report as JSON (for machines and the audit) and HTML (for people)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from schemas.report import ReleaseReport

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent),
    autoescape=select_autoescape(["html", "j2"]),
)


def report_dir(root: Path, release_id: str) -> Path:
    return root / "reports" / release_id


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(root: Path, report: ReleaseReport) -> tuple[Path, Path]:
    folder = report_dir(root, report.release_id)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "anonymisation_report.json"
    html_path = folder / "anonymisation_report.html"
    _replace_text(json_path, json.dumps(report.model_dump(mode="json"), indent=2))
    html = _TEMPLATES.get_template("report.html.j2").render(r=report)
    _replace_text(html_path, html)
    return json_path, html_path


def read_report(root: Path, release_id: str) -> ReleaseReport:
    path = report_dir(root, release_id) / "anonymisation_report.json"
    return ReleaseReport.model_validate_json(path.read_text(encoding="utf-8"))


def markdown_summary(report: ReleaseReport) -> str:
    """Counts-only summary for the Prefect artifact."""
    lines = [
        f"# Release {report.release_id}: {report.status}",
        "",
        f"Policy **{report.policy['name']}** (k = {report.policy['k']}, "
        f"{report.policy['small_number_rule']}), key id `{report.key_id}`.",
        "",
        "| department | status | received | accepted | quarantined |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {d.department} | {d.status} | {d.rows_received} | {d.rows_accepted} | "
        f"{d.rows_quarantined} |"
        for d in report.deliveries
    ]
    if report.freshness:
        lines += ["", "| department | newest extract | age (days) | status |", "|---|---|---:|---|"]
        lines += [
            f"| {f['department']} | {f['extract_date'] or 'none'} | "
            f"{'' if f['age_days'] is None else f['age_days']} | {f['status']} |"
            for f in report.freshness
        ]
    lines += ["", "| table | rows published | cells withheld |", "|---|---:|---:|"]
    lines += [
        f"| {t['table']} | {t['rows_published']} | {t['cells_suppressed']} |" for t in report.tables
    ]
    return "\n".join(lines)
