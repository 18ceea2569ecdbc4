"""Readable contract pages (Markdown) for data owners and IG officers."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader

from schemas.contract import DepartmentContract

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent), keep_trailing_newline=True
)

TREATMENTS = {
    "tokenise": "replaced by a keyed token for linkage, then removed",
    "derive": "used to derive a coarser field, then removed",
    "drop": "removed on arrival",
    "generalise": "generalised along its hierarchy before publication",
    "keep": "kept as is (aggregated before publication)",
}


def _rules(col) -> str:
    rules = []
    if col.required:
        rules.append("required")
    if col.unique:
        rules.append("unique")
    if col.allowed_values is not None:
        rules.append("one of " + ", ".join(f"`{v}`" for v in col.allowed_values))
    if col.minimum is not None or col.maximum is not None:
        low = "any" if col.minimum is None else f"{col.minimum:g}"
        high = "any" if col.maximum is None else f"{col.maximum:g}"
        rules.append(f"between {low} and {high}")
    if col.pattern:
        rules.append(f"matches `{col.pattern}`")
    if col.check_digit:
        rules.append(f"{col.check_digit.replace('_', ' ')} check digit")
    if col.issuance_rule == "hmrc_ni_prefix":
        rules.append("prefix one HMRC issues")
    if col.plausible_range is not None:
        low = col.plausible_range.earliest or "any date"
        high = col.plausible_range.latest or "any date"
        high = "the extract's date" if high == "extract_date" else high
        rules.append(f"plausible from {low} to {high}")
    if col.value_map:
        rules.append("recoded " + ", ".join(f"`{k}`→`{v}`" for k, v in col.value_map.items()))
    # A `|` inside a pattern would end the Markdown table cell.
    return "; ".join(rules).replace("|", "\\|") or "optional"


def render_page(contract: DepartmentContract) -> str:
    page = _TEMPLATES.get_template("contract.md.j2")
    return page.render(c=contract, rules=_rules, treatments=TREATMENTS)
