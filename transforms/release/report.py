"""Write the anonymisation report as JSON (for machines and the audit) and HTML (for people).

The HTML is written for an IG officer who is not a statistician: a first page saying what is
released, why, from where, under which policy and what decision is needed; then every count
in words and percentages, charts as inline SVG (no JavaScript, readable offline) and a print
stylesheet for A4. Sections the template does not know (fields added by later stages) are
rendered generically as tables, so a new field shows up without template surgery.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from schemas.contract import DepartmentContract
from schemas.report import PURPOSE_FILE, ReleaseReport, load_purpose
from transforms.disclosure.hierarchy import load_hierarchies
from transforms.files import write_text_atomically
from transforms.release import charts, notice, provenance, wording

HERE = Path(__file__).parent
_TEMPLATES = Environment(
    loader=FileSystemLoader(HERE),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

# Fields the template lays out itself; any other field of the report becomes its own section.
LAID_OUT = {
    "release_id", "created_at", "status", "key_id", "demo", "policy", "contracts", "deliveries",
    "pseudonymisation", "linkage", "population", "anonymisation", "tables", "purpose",
    "variables", "level_words", "table_titles", "table_dimensions", "software", "accounting",
    "checks", "limitations", "approval", "decisions", "built_by", "approvers_required", "outputs",
    "protection", "hidden", "worst_hidden", "audit",
}  # fmt: skip

# Labels for keys whose plain reading is not obvious; anything else is "Snake case words".
LABELS = {
    "rows_received": "Rows received",
    "rows_quarantined": "Rows quarantined (broke a contract rule)",
    "records_accepted": "Records accepted",
    "records_linked": "Records linked into people",
    "people_linked": "People after linkage",
    "people_withheld_no_area": "People with no usable area (in no table)",
    "people_suppressed_by_anonymiser": "People suppressed by the anonymiser",
    "people_released_to_cohort_tables": "People counted in the cohort tables",
    "balanced": "Every row accounted for",
    "tables_checked": "Tables checked",
    "rows_checked": "Published rows checked",
    "values_scanned": "Published values scanned for identifiers",
    "identifier_matches": "Values that look like an identifier",
    "rows_below_k": "Published rows standing for fewer than k people",
    "population_classes_below_k": "Groups of the population smaller than k",
    "cells_suppressed": "Cells withheld",
    "cells_suppressed_secondary": "of which withheld to stop differencing",
    "units_in_published_cells": "Counted in published cells",
    "units_in_suppressed_cells": "In withheld cells",
    "rows_published": "Rows published",
    "sha256": "SHA-256",
    "audit_rounds": "Rounds of the independent audit",
    "cells_withheld_for_the_release": "Cells withheld to protect the release as a whole",
    "cells_withheld_again": "of which withheld because the last release withheld them",
    "cells_perturbed": "Cells perturbed (count changed)",
    "cells_published_as_zero": "Cells with people in them published as 0",
    "perturbation_table": "Perturbation table",
    "perturbation_check": "Every perturbed count worked out again",
    "max_noise": "Largest change to a count (D)",
    "small_counts": "Counts never published (1 to this)",
    "opt_out": "Residents' objections (opt-out register)",
    "transparency": "Transparency notice for residents",
    "not_ingested": "Files in landing/ not ingested",
    "freshness": "Freshness of each department's extract",
    "withheld_with_the_count": "Withheld with their count (small-number protection)",
    "withheld_p_percent": "Withheld by the p% rule",
    "withheld_dominance": "Withheld by (n,k) dominance",
    "withheld_zero_sum": "Withheld: a zero sum",
    "withheld_few_distinct": "Medians withheld: too few different amounts",
    "withheld_small_count": "Withheld: fewer people than the smallest publishable count",
    "withheld_secondary": "Withheld so that a withheld sum cannot be worked out",
    "sum_audits": "Audits of the sums run by their protection",
    "uid": "User id",
    "os_user": "Operating-system user",
}
# Checks whose result is a count of problems: zero means passed.
ZERO_MEANS_PASSED = {"identifier_matches", "rows_below_k", "population_classes_below_k"}


def report_dir(root: Path, release_id: str) -> Path:
    return root / "reports" / release_id


def _replace_text(path: Path, text: str) -> None:
    write_text_atomically(path, text)


def write_report(root: Path, report: ReleaseReport) -> tuple[Path, Path]:
    """Write the report, and the residents' notice beside it when the report carries its
    content: every write (staging, a decision, a withdrawal) re-renders the notice."""
    folder = report_dir(root, report.release_id)
    folder.mkdir(parents=True, exist_ok=True)
    if report.transparency is not None:
        page = notice.render_notice(report)
        readability = notice.readability(page)
        report = report.model_copy(
            update={"transparency": {**report.transparency, "readability": readability}}
        )
        _replace_text(folder / notice.NOTICE_FILE, page)
    json_path = folder / "anonymisation_report.json"
    html_path = folder / "anonymisation_report.html"
    _replace_text(json_path, json.dumps(report.model_dump(mode="json"), indent=2))
    _replace_text(html_path, render_html(report))
    return json_path, html_path


def read_report(root: Path, release_id: str) -> ReleaseReport:
    path = report_dir(root, release_id) / "anonymisation_report.json"
    return ReleaseReport.model_validate_json(path.read_text(encoding="utf-8"))


# --- what the flow adds for the reader ----------------------------------------------------


def describe_release(
    contracts_dir: Path, contracts: dict[str, DepartmentContract]
) -> dict[str, Any]:
    """The report's fields for a human reader, from `data_contracts/` and the environment:
    purpose, variables, generalisation levels in words, table titles, software."""
    purpose_path = contracts_dir / PURPOSE_FILE
    purpose = load_purpose(purpose_path) if purpose_path.exists() else None
    variables = [
        {
            "department": department,
            "column": column.name,
            "description": column.description,
            "privacy_role": column.privacy_role,
            "treatment": column.treatment,
            "identifier_type": column.identifier_type,
        }
        for department, contract in sorted(contracts.items())
        for column in contract.columns
    ]
    # Every hierarchy, not only the policy's quasi-identifiers: tables may publish any
    # hierarchy's column at a level of their own.
    hierarchies = load_hierarchies(contracts_dir / "hierarchies")
    reference = contracts_dir / "reference" / "geography.csv"
    words = {name: wording.level_words(h, reference) for name, h in hierarchies.items()}
    titles, dimensions = _table_descriptions(contracts_dir / "cohorts.yaml", words)
    return {
        "purpose": purpose,
        "variables": variables,
        "level_words": words,
        "table_titles": titles,
        "table_dimensions": dimensions,
        "software": provenance.software(),
    }


def _table_descriptions(
    path: Path, words: dict[str, list[str]]
) -> tuple[dict[str, str], dict[str, list[dict]]]:
    """Each table's title and each of its dimensions in words, read from cohorts.yaml as plain
    YAML: the flow has already validated the file, and the report needs only these fields
    (older files map a dimension name to its source; newer ones list name, source, level)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}, {}
    titles, dimensions = {}, {}
    for table in document.get("tables") or [] if isinstance(document, dict) else []:
        if not isinstance(table, dict) or "name" not in table:
            continue
        titles[table["name"]] = str(table.get("title", ""))
        declared = table.get("dimensions") or []
        if isinstance(declared, dict):
            declared = [{"name": n, "source": src} for n, src in declared.items()]
        dimensions[table["name"]] = [
            {"name": d.get("name"), "words": _dimension_words(d, words)}
            for d in declared
            if isinstance(d, dict)
        ]
    return titles, dimensions


def _dimension_words(dimension: dict, words: dict[str, list[str]]) -> str:
    source, level = dimension.get("source"), dimension.get("level")
    phrases = words.get(str(source), [])
    if isinstance(level, int) and 0 <= level < len(phrases):
        return phrases[level]
    if dimension.get("bands"):
        return "counted in bands: " + ", ".join(str(b) for b in dimension["bands"])
    if dimension.get("expand"):
        return f"one row per {str(source).replace('_', ' ')} (a resident may count in several)"
    if phrases:
        return "at the level the anonymiser chose (section 4)"
    return "as recorded"


# --- rendering ------------------------------------------------------------------------------


def label(key: Any) -> str:
    """A key as a heading: "nhs_number" -> "NHS number", "rows_received" -> "Rows received"."""
    key = str(key)
    if key in LABELS:
        return LABELS[key]
    parts = [p for p in key.split("_") if p]
    known = parts and all(p in wording.IDENTIFIER_WORDS for p in parts)
    text = wording.words(key) if key in wording.IDENTIFIER_WORDS or known else " ".join(parts)
    return text[:1].upper() + text[1:]


def fmt(value: Any, key: str = "") -> str:
    """One value as text: thousands separators, shares as percentages, yes/no, a dash."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if any(w in key for w in ("rate", "share", "loss", "prosecutor", "marketer", "journalist")):
            return f"{100 * value:.1f}%" if abs(value) <= 1 else f"{value:,.3g}"
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, list | tuple):
        if all(not isinstance(v, dict | list) for v in value):
            return ", ".join(fmt(v) for v in value)
    return str(value)


def shape(value: Any) -> str:
    """How the generic macro lays a value out: scalar, list (of scalars), kv (one mapping of
    scalars), matrix (mapping of mappings of scalars), records (list of mappings) or nested."""

    def scalar(v: Any) -> bool:
        return not isinstance(v, dict | list | tuple) or (
            isinstance(v, list | tuple) and all(not isinstance(x, dict | list) for x in v)
        )

    if isinstance(value, dict):
        if all(scalar(v) for v in value.values()):
            return "kv"
        inner = [v for v in value.values() if isinstance(v, dict)]
        if value and len(inner) == len(value) and all(all(map(scalar, v.values())) for v in inner):
            return "matrix"
        return "nested"
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, dict) for v in value):
            return "records"
        return "list" if all(scalar(v) for v in value) else "nested"
    return "scalar"


def columns_of(rows: Any) -> list[str]:
    """Union of the keys of several mappings, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows.values() if isinstance(rows, dict) else rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def soft(text: Any) -> Markup:
    """Escaped text that may wrap after "_", "|" or "+" (long column and table names)."""
    out = str(escape(str(text)))
    for mark in ("_", "|", "+"):
        out = out.replace(mark, mark + "<wbr>")
    return Markup(out)


def when(timestamp: Any) -> str:
    """"2026-11-27T21:55:22+00:00" -> "2026-11-27 21:55 UTC" (other offsets kept as given)."""
    text = str(timestamp or "")
    if text.endswith("+00:00") and "T" in text:
        return text[:16].replace("T", " ") + " UTC"
    return text


def unbroken(value: Any) -> bool:
    """A long string with no space (a fingerprint, a path): printed so it may break anywhere,
    else it would push its table past the edge of the page."""
    return isinstance(value, str) and len(value) > 24 and " " not in value


def variable_rows(variables: list[dict]) -> list[dict]:
    """One row per column name, role and treatment, with the departments holding it: the same
    column (a date of birth, say) is treated alike in every department that sends it."""
    rows: dict[tuple, dict] = {}
    for v in variables:
        key = (v.get("column"), v.get("privacy_role"), v.get("treatment"), v.get("identifier_type"))
        row = rows.setdefault(key, {**v, "departments": []})
        row["departments"].append(v.get("department"))
    order = list(wording.ROLE_WORDS)
    return sorted(
        rows.values(),
        key=lambda r: (
            order.index(r["privacy_role"]) if r.get("privacy_role") in order else len(order),
            str(r.get("column")),
        ),
    )


def failed_checks(checks: dict) -> list[str]:
    """Checks that did not pass: a false flag, or a count of problems above zero."""
    return [
        key
        for key, value in checks.items()
        if value is False or (key in ZERO_MEANS_PASSED and value != 0)
    ]


def _decisions(data: dict) -> list[dict]:
    if data.get("decisions"):
        return list(data["decisions"])
    return [data["approval"]] if data.get("approval") else []


def worst_hidden_rows(worst: Any) -> dict[str, list[tuple[str, float, str]]]:
    """`{group: {value: (share, table)}}` (pairs arrive from JSON as lists) as rows per group."""
    rows: dict[str, list[tuple[str, float, str]]] = {}
    for group, values in (worst or {}).items() if isinstance(worst, dict) else []:
        for value, entry in (values or {}).items() if isinstance(values, dict) else []:
            if isinstance(entry, dict):
                share, table = entry.get("share"), entry.get("table", "")
            elif isinstance(entry, list | tuple) and entry:
                share, table = entry[0], entry[1] if len(entry) > 1 else ""
            else:
                share, table = entry, ""
            if isinstance(share, int | float):
                rows.setdefault(str(group), []).append((str(value), float(share), str(table)))
    return rows


def hidden_rows(hidden: Any) -> list[dict]:
    """`{table: {"unit", "dimensions": {dimension: {value: {units, hidden}}}}}` summed per
    table and dimension: values with anyone hidden, units counted and hidden, and the value
    with the largest share hidden (value, units, hidden). One line per dimension keeps the
    section short however many values a dimension has."""
    out = []
    for table, entry in (hidden or {}).items() if isinstance(hidden, dict) else []:
        if not isinstance(entry, dict):
            continue
        dimensions = []
        for dimension, values in (entry.get("dimensions") or {}).items():
            counted = [
                (str(value), int(n.get("units") or 0), int(n.get("hidden") or 0))
                for value, n in (values or {}).items()
                if isinstance(n, dict)
            ]
            worst = max(
                (c for c in counted if c[2]),
                key=lambda c: (c[2] / c[1] if c[1] else 1, c[2]),
                default=None,
            )
            dimensions.append(
                {
                    "dimension": dimension,
                    "value_count": len(counted),
                    "values_hidden": sum(1 for c in counted if c[2]),
                    "units": sum(c[1] for c in counted),
                    "hidden": sum(c[2] for c in counted),
                    "worst": worst,
                }
            )
        out.append({"table": table, "unit": entry.get("unit", ""), "dimensions": dimensions})
    return out


def _charts(data: dict, worst: dict[str, list[tuple[str, float, str]]]) -> dict[str, Any]:
    k = int(data.get("policy", {}).get("k", 0) or 0)
    anonymisation = data.get("anonymisation", {})
    before, after = anonymisation.get("risk_before") or {}, anonymisation.get("risk_after") or {}
    return {
        "risk": charts.risk_chart(before, after, k),
        "class_sizes": charts.class_size_chart(
            before.get("class_sizes") or {}, after.get("class_sizes") or {}, k
        ),
        "tables": charts.table_hidden_chart(data.get("tables") or []),
        "worst": {group: charts.worst_hidden_chart(group, rows) for group, rows in worst.items()},
    }


def render_html(report: ReleaseReport | dict) -> str:
    """The report as one self-contained HTML page (styles and charts inline)."""
    data = report.model_dump(mode="json") if isinstance(report, ReleaseReport) else report
    extra = {
        key: value
        for key, value in data.items()
        if key not in LAID_OUT and value not in (None, "", [], {})
    }
    decisions = _decisions(data)
    worst = worst_hidden_rows(data.get("worst_hidden"))
    withdrawal = next((d for d in reversed(decisions) if d.get("decision") == "withdrawn"), None)
    return _TEMPLATES.get_template("report.html.j2").render(
        r=data,
        extra=extra,
        decisions=decisions,
        withdrawal=withdrawal,
        charts=_charts(data, worst),
        worst=worst,
        hidden=hidden_rows(data.get("hidden")),
        css=(HERE / "report.css").read_text(encoding="utf-8"),
        label=label,
        fmt=fmt,
        soft=soft,
        unbroken=unbroken,
        when=when,
        upper_first=lambda text: text[:1].upper() + text[1:],
        variable_rows=variable_rows(data.get("variables") or []),
        shape=shape,
        columns_of=columns_of,
        percent=wording.percent,
        words=wording.words,
        token_words=wording.token_words,
        role_words=lambda role: wording.ROLE_WORDS.get(role, label(role)),
        treatment_words=wording.treatment_words,
        zero_means_passed=ZERO_MEANS_PASSED,
        failed_checks=failed_checks(data.get("checks") or {}),
    )


def markdown_summary(report: ReleaseReport) -> str:
    """Counts-only summary for the Prefect artifact."""
    lines = [
        f"# Release {report.release_id}: {report.status}",
        "",
        f"Policy **{report.policy['name']}** (k = {report.policy['k']}, "
        f"{report.policy['small_number_rule']}, method "
        f"{report.policy.get('method', 'suppression')}), key id `{report.key_id}`.",
        "",
        "| department | status | received | accepted | quarantined |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {d.department} | {d.status} | {d.rows_received} | {d.rows_accepted} | "
        f"{d.rows_quarantined} |"
        for d in report.deliveries
    ]
    if report.opt_out:
        o = report.opt_out
        lines += [
            "",
            f"Opt-outs: {o['objections_received']} objections received, "
            f"{o['objections_matched']} matched, {o['objections_applied']} applied; "
            f"{o['records_removed']} records of {o['residents_removed']} residents removed.",
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
        f"| {t.get('table', '-')} | {t.get('rows_published', '-')} | "
        f"{t.get('cells_suppressed', '-')} |"
        for t in report.tables
    ]
    return "\n".join(lines)
