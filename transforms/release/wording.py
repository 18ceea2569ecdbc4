"""Plain words for the anonymisation report: what a generalisation level, a privacy role, a
treatment, a token or a linkage rule means, for a reader who is not a statistician.

Level words are derived from the hierarchies themselves (bands from interval rules, group
counts from tables) and, for area codes, from the reference geography whose columns name
them (`lsoa_code` -> LSOA, `ward_code` -> ward). Labels quoted are hierarchy labels from
`data_contracts/`, never values from residents' data.
"""

from __future__ import annotations

import csv
from pathlib import Path

from transforms.disclosure.hierarchy import SUPPRESSED, Hierarchy

# A table level with at most this many groups lists them by name.
LIST_AT_MOST = 8

AREA_WORDS = {
    "lsoa": "LSOA ({n} small areas of about 1,500 residents each)",
    "msoa": "MSOA ({n} areas of about 7,500 residents each)",
    "ward": "electoral ward ({n} wards)",
    "borough": "the whole borough",
    "postcode_sector": "postcode sector ({n} sectors)",
    "postcode_district": "postcode district ({n} districts)",
}

ROLE_WORDS = {
    "direct_identifier": "Direct identifier",
    "quasi_identifier": "Quasi-identifier (identifying in combination)",
    "sensitive": "Sensitive",
    "attribute": "Other attribute",
}

TREATMENT_WORDS = {
    "tokenise": "Replaced by keyed pseudonyms for linkage, then removed",
    "derive": "Used to derive a coarser field, then removed",
    "drop": "Removed on arrival, not used",
    "generalise": "Kept, generalised as the disclosure policy requires",
    "keep": "Kept (not identifying on its own)",
}

# What is worked out from an identifier before it is removed.
DERIVED_FROM = {"date_of_birth": "age is worked out first", "postcode": "area is looked up first"}

IDENTIFIER_WORDS = {
    "nhs_number": "NHS number",
    "ni_number": "National Insurance number",
    "nhs": "NHS number",
    "ni": "National Insurance number",
    "date_of_birth": "date of birth",
    "dob": "date of birth",
    "uprn": "property reference (UPRN)",
    "forename": "first name",
    "surname": "family name",
    "name": "name",
    "postcode": "postcode",
    "sector": "postcode sector",
    "household": "household (address)",
    "email": "email address",
    "phone": "phone number",
}


def words(name: str) -> str:
    """`name_dob_sector` -> "name, date of birth and postcode sector"."""
    if name in IDENTIFIER_WORDS:
        return IDENTIFIER_WORDS[name]
    parts = [IDENTIFIER_WORDS.get(p, p.replace("_", " ")) for p in name.split("_") if p]
    if len(parts) <= 1:
        return parts[0] if parts else name
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def token_words(token: str) -> str:
    """`tok_veto_date_of_birth` -> a sentence an IG officer can read."""
    name = token.removeprefix("tok_")
    if name.startswith("veto_"):
        what = IDENTIFIER_WORDS.get(name.removeprefix("veto_"), name.removeprefix("veto_"))
        return f"{what} check (no link between records whose {what} differs)"
    whole = IDENTIFIER_WORDS.get(name)
    return whole if whole else words(name)


def treatment_words(treatment: str, identifier_type: str | None) -> str:
    text = TREATMENT_WORDS.get(treatment, treatment.replace("_", " "))
    extra = DERIVED_FROM.get(identifier_type or "")
    return f"{text}; {extra}" if extra and treatment in ("tokenise", "derive") else text


def _reference_columns(reference: Path | None) -> dict[str, set[str]]:
    if reference is None or not reference.is_file():
        return {}
    with reference.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {name: {row[name] for row in rows} for name in (rows[0] if rows else {})}


def _area_name(labels: list[str], columns: dict[str, set[str]]) -> str | None:
    """The most specific reference column holding every label (`ward_code` for ward codes)."""
    fits = [(len(vals), name) for name, vals in columns.items() if set(labels) <= vals]
    if not fits:
        return None
    name = min(fits)[1].removesuffix("_code").removesuffix("_name")
    return AREA_WORDS.get(name, name.replace("_", " ") + " ({n} areas)").format(n=len(labels))


def _listed(labels: list[str]) -> str:
    return ", ".join(labels) if len(labels) <= LIST_AT_MOST else f"{labels[0]}, {labels[1]}, ..."


def _band_words(rule: dict, level: int) -> str:
    """Bands from the interval rule itself (labels sort as text: 0-4, 10-14, 100-104)."""
    unit, low, high = rule.get("unit", "unit"), int(rule["min"]), int(rule["max"])
    if level == 0:
        return f"exact {unit}s ({low} to {high})"
    width = rule["levels"][level - 1]
    width = int(width.get("width") if isinstance(width, dict) else width)
    return (
        f"{width}-{unit} bands ({low}-{low + width - 1}, {low + width}-{low + 2 * width - 1}, ...)"
    )


def level_words(hierarchy: Hierarchy, reference: Path | None = None) -> list[str]:
    """One phrase per level of `hierarchy` (index = level): "20-year bands (0-19, 20-39, ...)",
    "electoral ward (16 areas)", "not published (all values combined)"."""
    rule = hierarchy.rule or {}
    columns = _reference_columns(reference)
    phrases = []
    for level in range(hierarchy.height):
        labels = [str(x) for x in hierarchy.labels[level]]
        if rule.get("type") in ("date", "postcode"):
            # Open-domain rules are placeholders until they meet data: name the levels.
            name = str(rule["levels"][level - 1]) if level else None
            if name is None:
                phrases.append("exact value")
            else:
                phrases.append(
                    "not published (all values combined)" if name == SUPPRESSED else f"by {name}"
                )
            continue
        if labels == [SUPPRESSED]:
            phrases.append("not published (all values combined)")
            continue
        if rule.get("type") == "intervals":
            phrases.append(_band_words(rule, level))
            continue
        area = _area_name(labels, columns)
        if area is not None:
            phrases.append(area)
        elif level == 0:
            phrases.append(f"as recorded ({len(labels)} values: {_listed(labels)})")
        else:
            phrases.append(f"{len(labels)} groups: {_listed(labels)}")
    return phrases


def percent(part: float, whole: float) -> str:
    """"12.3%", or "-" when there is nothing to divide by."""
    if not whole:
        return "-"
    share = 100 * part / whole
    if 0 < share < 0.1:
        return "<0.1%"
    return f"{share:.1f}%"
