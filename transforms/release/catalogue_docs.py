"""What the analysts' catalogue says about itself: a description of every table and column, and a
data dictionary of the codes that appear in them.

Everything here comes from the declarative inputs in `data_contracts/`: the cohort definitions
(`cohorts.yaml`), the department contracts, the disclosure policy, the generalisation hierarchies
and the reference lookups (geography, ethnic group names). It is worked out once, when a release
is published, and kept beside the release's Parquet files (`documentation.json`), so rebuilding
the catalogue later (after a withdrawal) needs no contracts and every release keeps the words it
was published with. Pure: reads declarative files, returns plain dictionaries.
"""

from __future__ import annotations

import csv
import itertools
import re
from pathlib import Path
from typing import Any

import yaml

from schemas.contract import load_contracts
from schemas.errors import ConfigError
from schemas.policy import load_policy
from transforms.disclosure.hierarchy import Hierarchy, load_hierarchies

# The project's own declarative inputs, whatever the working directory.
DEFAULT_CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"
COUNT_COLUMNS = ("people", "households")
WITHHELD_COLUMN = "withheld"
RELEASE_COLUMN = "release_id"

# Population columns the pipeline derives (no department contract has them), in plain words.
DERIVED = {
    "department": "The department that knows the resident (the domain of its data contract).",
    "departments": (
        "The exact combination of departments that know the resident: department codes in "
        "alphabetical order joined with '+'."
    ),
    "household_departments": ("How many departments know at least one member of the household."),
    "age": (
        "Age in whole years at the extract date, worked out from the date of birth in the "
        "departments' extracts and published as a band; 'unknown' where no department that "
        "knows the resident recorded a date of birth."
    ),
    "lsoa": (
        "Area of the resident's home postcode: an LSOA code (E01...), a ward code (E05...) where "
        "areas were generalised to wards, or '*' for the whole borough."
    ),
}
# Labels of codes the pipeline itself introduces (transforms/identity/population.py).
NOT_RECORDED = {
    ("sex", "U"): ("Not known", "No department that knows the resident recorded their sex."),
    ("age", "unknown"): (
        "Not known",
        "No department that knows the resident recorded a date of birth (mostly people known "
        "only to council tax).",
    ),
    ("ethnicity", "NS"): (
        "Not stated",
        "No department that knows the resident recorded an ethnic group.",
    ),
}


def describe_release(
    contracts_dir: Path,
    tables: dict[str, list[str]],
    levels: dict[str, dict[str, int]] | None = None,
) -> dict[str, Any]:
    """Descriptions of `tables` (name -> column names) and the data dictionary, as JSON-ready
    dictionaries. `levels` gives, per table, the generalisation level of each quasi-identifier
    it was published at (from its Parquet metadata), where known. Returns
    {"tables": {name: {"comment", "columns": {column: comment}}},
     "dictionary": [{column_name, code, label, meaning, parent_code, parent_label}]}."""
    contracts_dir = Path(contracts_dir)
    definitions = table_definitions(contracts_dir / "cohorts.yaml")
    policy = load_policy(contracts_dir / "disclosure_policy.yaml")
    contracts = load_contracts(contracts_dir)
    dimensions = {
        column: dimension
        for name in tables
        if name in definitions
        for column, dimension in definitions[name]["dimensions"].items()
    }
    sources = {column: _code_source(d) for column, d in dimensions.items()}
    hierarchies = _hierarchies(contracts_dir / "hierarchies", set(sources.values()))
    context = _Context(contracts, hierarchies)
    described = {}
    for name, columns in tables.items():
        definition = definitions.get(name)
        described[name] = {
            "comment": _table_comment(name, definition),
            "columns": {
                column: _column_comment(
                    column, definition, policy, context, (levels or {}).get(name, {})
                )
                for column in columns
            },
        }
    dictionary = []
    for column, source in sorted(sources.items()):
        for row in _codes(source, dimensions[column], contracts_dir, context):
            dictionary.append({"column_name": column, **row})
    described_measures = set()
    for name in tables:
        measure = _measure(definitions.get(name))
        column = _measure_column(measure) if measure else None
        if column and column not in described_measures:
            described_measures.add(column)
            dictionary.append({"column_name": column, **_row(
                measure["kind"], measure.get("unit", ""),
                " ".join(str(measure.get("description", "")).split()),
            )})  # fmt: skip
    return {"tables": described, "dictionary": dictionary}


def _measure(definition: dict[str, Any] | None) -> dict[str, Any] | None:
    return (definition or {}).get("measure")


def _measure_column(measure: dict[str, Any]) -> str:
    return measure.get("name") or f"{measure['attribute']}_{measure['kind']}"


def _measure_comment(measure: dict[str, Any], policy) -> str:
    """A sum or median: what it is, its unit and when it is withheld."""
    rules = policy.magnitude
    what = "Sum" if measure["kind"] == "sum" else "Median"
    base = rules.sum_round_to if measure["kind"] == "sum" else rules.median_round_to
    text = " ".join(str(measure.get("description", "")).split())
    return (
        f"{what} of {measure['attribute']} over the cell, in {measure.get('unit', 'units')}, "
        f"rounded to the nearest {base}. {text} NULL where the row is withheld, or where one "
        f"or two residents dominate it: the {rules.p_percent:g}% rule (the second-largest "
        f"could estimate the largest to within {rules.p_percent:g}%) or the largest "
        f"{rules.dominance_n} making up more than {rules.dominance_k_percent:g}% of the sum"
        + (
            f", or fewer than {rules.median_min_distinct} different values in the cell"
            if measure["kind"] == "median"
            else ""
        )
        + "; also where it would let another withheld sum be worked out. A withheld sum is "
        "not zero."
    )


class _Context:
    def __init__(self, contracts, hierarchies: dict[str, Hierarchy]):
        self.contracts = contracts
        self.hierarchies = hierarchies

    def contract_description(self, source: str) -> str | None:
        for contract in self.contracts.values():
            for column in contract.columns:
                if column.name == source:
                    return column.description
        return None

    def value_labels(self, source: str) -> dict[str, str]:
        """Published code -> the value departments record, from the contracts' value maps."""
        labels: dict[str, str] = {}
        for contract in self.contracts.values():
            for column in contract.columns:
                if column.name == source and column.value_map:
                    for recorded, code in column.value_map.items():
                        labels.setdefault(code, recorded)
        return labels


def _hierarchies(folder: Path, sources: set[str]) -> dict[str, Hierarchy]:
    present = {p.stem for p in folder.iterdir()} if folder.is_dir() else set()
    wanted = sorted(sources & present)
    return load_hierarchies(folder, wanted) if wanted else {}


def table_definitions(path: Path) -> dict[str, dict[str, Any]]:
    """cohorts.yaml as plain data: table name -> its definition, with `dimensions` as published
    column -> {"source", and where declared "description", "level", "bands", "expand"}.

    Read as YAML rather than through the pipeline's model, which the flow has already validated,
    so that both ways of declaring dimensions are described: a mapping (`{area: lsoa}`) or a
    list of dimensions with their own descriptions and levels.
    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path.name}: cannot be read as YAML ({type(exc).__name__})") from None
    tables = {}
    for table in document.get("tables", []):
        dimensions = table.get("dimensions", {})
        if isinstance(dimensions, dict):
            dimensions = [{"name": k, "source": v} for k, v in dimensions.items()]
        tables[table["name"]] = {**table, "dimensions": {d["name"]: d for d in dimensions}}
    return tables


def _code_source(dimension: dict[str, Any]) -> str:
    """Whose codes a column holds: a list of departments expanded per member holds departments."""
    if dimension.get("bands"):
        return "bands"
    if dimension["source"] == "departments" and dimension.get("expand"):
        return "department"
    return dimension["source"]


def _table_comment(name: str, definition: dict[str, Any] | None) -> str:
    if definition is None:
        return f"Cohort table {name}."
    unit = "residents" if definition.get("unit") == "people" else "households"
    parts = [f"{definition['title']}.", str(definition.get("description", "")).strip()]
    if definition.get("question"):
        parts.append(f"Answers: {definition['question'].strip()}")
    parts.append(
        f"Counts are of {unit}; one row per cell, withheld cells included (withheld = true, "
        "count NULL)."
    )
    return " ".join(p for p in parts if p)


def _column_comment(
    column: str, definition, policy, context: _Context, levels: dict[str, int]
) -> str:
    if column == RELEASE_COLUMN:
        return "The release this row belongs to (see the releases table)."
    perturbed = getattr(policy, "method", "suppression") == "cell_key"
    if column == WITHHELD_COLUMN and perturbed:
        return (
            "True where the count is withheld: it would tell something about everyone in a "
            "group, or the other tables would narrow its perturbed count too far. Its count is "
            "NULL: a withheld cell is not zero."
        )
    if column in COUNT_COLUMNS and perturbed:
        unit = "residents" if column == "people" else "households"
        table = policy.perturbation
        return (
            f"Number of distinct {unit} in this cell, perturbed (cell-key method, disclosure "
            f"policy {policy.name}, perturbation table {table.name}): it may differ from the "
            f"true count by up to {table.max_noise}, most often by none or 1; the same {unit} "
            f"always get the same noise, in every table and release. No count from 1 to "
            f"{table.small_counts} is published; a 0 may stand for a few {unit}. Sums over a "
            "table differ from the table's own totals. NULL where the cell is withheld."
        )
    if column == WITHHELD_COLUMN:
        return (
            "True where the count is withheld: the cell is below the small-number threshold "
            f"({policy.min_published_count}), or is withheld as well so that a small cell "
            "cannot be worked out from the totals, or because it would tell something about "
            "everyone in a group. Its count is NULL: a withheld cell is not zero."
        )
    if column in COUNT_COLUMNS:
        unit = "residents" if column == "people" else "households"
        base = policy.rule.round_to
        rounding = f", rounded to the nearest {base}" if base > 1 else ""
        return (
            f"Number of distinct {unit} in this cell{rounding} (small-number rule "
            f"{policy.rule.name}, disclosure policy {policy.name}); at least "
            f"{policy.min_published_count} where published. NULL where the cell is withheld: "
            "never read a NULL as zero."
        )
    measure = _measure(definition)
    if measure is not None and column == _measure_column(measure):
        return _measure_comment(measure, policy)
    dimension = definition["dimensions"].get(column) if definition is not None else None
    if dimension is None:
        return f"Dimension {column}."
    source = dimension["source"]
    text = (
        dimension.get("description")
        or DERIVED.get(_code_source(dimension))
        or context.contract_description(source)
        or f"From {source}."
    ).strip()
    level = dimension.get("level", levels.get(source))
    hierarchy = context.hierarchies.get(source)
    if isinstance(level, int) and hierarchy is not None and level < hierarchy.height:
        in_order = dict.fromkeys(row[level] for row in hierarchy.table())
        examples = ", ".join(f"'{v}'" for v in list(in_order)[:3])
        text += (
            f" Published at generalisation level {level} of {hierarchy.height - 1} of its "
            f"hierarchy (values such as {examples})."
        )
    if dimension.get("bands"):
        text += f" Bands: {', '.join(dimension['bands'])} ('N+' is N or more)."
        return text
    return text + f" Codes are explained in data_dictionary (column_name = '{column}')."


def _codes(
    source: str, dimension: dict[str, Any], contracts_dir: Path, context: _Context
) -> list[dict[str, str | None]]:
    if source == "bands":
        return [_band(label, dimension.get("description", "")) for label in dimension["bands"]]
    if source == "indicators":
        return [
            _row(
                i["name"],
                i["name"].replace("_", " ").capitalize(),
                " ".join(i["description"].split()),
            )
            for i in _indicators(contracts_dir / "indicators.yaml")
        ]
    if source == "lsoa":
        return _area_codes(contracts_dir / "reference" / "geography.csv")
    if source == "department":
        return [
            _row(
                code,
                contract.title,
                f"Known to the department through its extract: {contract.title}.",
            )
            for code, contract in sorted(context.contracts.items())
        ]
    if source == "departments":
        return _combinations(context)
    if source == "household_departments":
        n = len(context.contracts)
        return [
            _row(
                str(i),
                f"{i} department{'s' if i > 1 else ''}",
                f"At least one member of the household is known to {i} of the {n} departments.",
            )
            for i in range(1, n + 1)
        ]
    hierarchy = context.hierarchies.get(source)
    if hierarchy is None:
        return []
    names = _reference_names(contracts_dir / "reference" / f"{source}.csv")
    names.update(context.value_labels(source))
    return _hierarchy_codes(source, hierarchy, names)


def _band(label: str, description: str) -> dict[str, str | None]:
    words = f"{label.removesuffix('+')} or more" if label.endswith("+") else f"exactly {label}"
    return _row(label, words, f"{description.rstrip('.') or 'Value'}: {words}.")


def _indicators(path: Path) -> list[dict[str, Any]]:
    """data_contracts/indicators.yaml, where the council declares derived indicators."""
    if not path.is_file():
        return []
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("indicators", [])


def _row(code, label, meaning, parent_code=None, parent_label=None) -> dict[str, str | None]:
    return {
        "code": code,
        "label": label,
        "meaning": meaning,
        "parent_code": parent_code,
        "parent_label": parent_label,
    }


def _reference_names(path: Path) -> dict[str, str]:
    """`code,name` lookups in data_contracts/reference/ (ethnic group names, for example)."""
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8", newline="") as handle:
        return {row["code"]: row["name"] for row in csv.DictReader(handle)}


BAND = re.compile(r"^(\d+)-(\d+)$")


def _hierarchy_codes(source: str, hierarchy: Hierarchy, names: dict[str, str]) -> list[dict]:
    """Every label at every level, with the label of the level above it as its parent."""
    table = hierarchy.table()
    top = hierarchy.height - 1
    found: dict[str, tuple[str, str, str | None]] = {}  # code -> (label, meaning, parent)
    for leaf in table:
        for level, code in enumerate(leaf):
            if code in found:
                continue
            parent = leaf[level + 1] if level < top and leaf[level + 1] != code else None
            found[code] = (*_label(source, code, level, table, names), parent)
    return [
        _row(code, label, meaning, parent, found[parent][0] if parent else None)
        for code, (label, meaning, parent) in found.items()
    ]


def _label(source: str, code: str, level: int, table: list[list[str]], names) -> tuple[str, str]:
    if (source, code) in NOT_RECORDED:
        return NOT_RECORDED[(source, code)]
    if code == "*":
        return "All", f"Every value together: {source} is not published at this level."
    band = BAND.match(code)
    if band:
        low, high = band.groups()
        label = low if low == high else f"{low} to {high}"
        return label, f"Aged {label} years."
    if code.isdigit():
        return code, f"Aged {code} years."
    label = names.get(code, code)
    children = sorted({row[level - 1] for row in table if row[level] == code}) if level else []
    return label, (f"Any of {', '.join(children)}." if children else f"Recorded as {label}.")


def _area_codes(path: Path) -> list[dict[str, str | None]]:
    with path.open(encoding="utf-8", newline="") as handle:
        geography = list(csv.DictReader(handle))
    lsoas = {r["lsoa_code"]: r for r in geography}
    wards = {r["ward_code"]: r for r in geography}
    per_ward = {w: sum(1 for r in lsoas.values() if r["ward_code"] == w) for w in wards}
    rows = [
        _row(
            code,
            r["lsoa_name"],
            f"Lower layer super output area {r['lsoa_name']}, in ward {r['ward_name']}.",
            r["ward_code"],
            r["ward_name"],
        )
        for code, r in sorted(lsoas.items())
    ]
    rows += [
        _row(
            code,
            r["ward_name"],
            f"Electoral ward {r['ward_name']} of {r['borough_name']} ({per_ward[code]} LSOAs).",
            r["borough_code"],
            r["borough_name"],
        )
        for code, r in sorted(wards.items())
    ]
    borough = geography[0]
    rows.append(
        _row("*", "All areas", f"The whole borough of {borough['borough_name']}.", None, None)
    )
    return rows


def _combinations(context: _Context) -> list[dict[str, str | None]]:
    departments = sorted(context.contracts)
    rows = []
    for size in range(1, len(departments) + 1):
        for combo in itertools.combinations(departments, size):
            titles = [context.contracts[d].title for d in combo]
            rows.append(
                _row(
                    "+".join(combo),
                    " + ".join(titles),
                    "Known to exactly these departments and to no other.",
                )
            )
    return rows
