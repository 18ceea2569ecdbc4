"""Department data contracts: ODCS v3 files read into one plain model the pipeline uses.

The ODCS document is checked against the standard's JSON Schema and parsed by
`open-data-contract-standard`; our own needs (privacy role, treatment, identifier type, value
maps, aliases, check digits, file format, formula policy, quarantine limit) live in ODCS custom
properties and are lifted here into typed fields, so no other module reads raw ODCS.

Every problem in every contract file is collected and reported at once, each with the file and
the path inside it, before any data is read (splink's "validate settings up front").

Cross-field rules are schema-level ODCS quality rules of type `custom`, engine `cohortshare`:

    quality:
      - name: support_not_before_birth
        type: custom
        engine: cohortshare
        description: Support cannot start before the client was born.
        implementation: {column: support_start_date, operator: ">=", other: date_of_birth}
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jsonschema
import open_data_contract_standard
import yaml
from open_data_contract_standard.model import OpenDataContractStandard, SchemaProperty
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.errors import ContractError

PrivacyRole = Literal["direct_identifier", "quasi_identifier", "sensitive", "attribute"]
Treatment = Literal["tokenise", "derive", "drop", "generalise", "keep"]
LogicalType = Literal["string", "date", "integer", "number", "boolean"]
FileFormat = Literal["csv", "xlsx", "json", "ndjson", "parquet"]
IdentifierType = Literal[
    "nhs_number", "ni_number", "forename", "surname", "date_of_birth", "postcode", "uprn",
    "email", "phone",
]
CheckDigit = Literal["nhs_mod11"]
FormulaPolicy = Literal["neutralise", "quarantine"]
Operator = Literal[">=", ">", "<=", "<"]

CONTRACT_SUFFIX = ".odcs.yaml"
RULE_ENGINE = "cohortshare"
# A delivery whose quarantined share is above this is rejected unless the contract says otherwise.
DEFAULT_QUARANTINE_LIMIT = 0.05


class Column(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    physical_name: str
    logical_type: LogicalType
    description: str
    required: bool = False
    unique: bool = False
    pattern: str | None = None
    date_format: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    allowed_values: tuple[str, ...] | None = None
    privacy_role: PrivacyRole
    treatment: Treatment
    identifier_type: IdentifierType | None = None
    value_map: dict[str, str] | None = None
    aliases: tuple[str, ...] = ()
    check_digit: CheckDigit | None = None

    @property
    def raw_names(self) -> tuple[str, ...]:
        """Every header under which this column may arrive: physical name first, then aliases."""
        return (self.physical_name, *self.aliases)


class CrossFieldRule(BaseModel):
    """`column operator other`, checked on rows where both values are present."""

    model_config = ConfigDict(frozen=True)

    name: str
    column: str
    operator: Operator
    other: str
    description: str = ""


class DepartmentContract(BaseModel):
    model_config = ConfigDict(frozen=True)

    department: str
    contract_id: str
    version: str
    title: str
    path: str
    format: FileFormat
    file_pattern: str
    delimiter: str = ","
    encoding: str = "utf-8"
    sheet: str | None = None
    row_count_min: int = 1
    row_count_max: int | None = None
    max_latency_days: int | None = None
    columns: tuple[Column, ...]
    cross_field_rules: tuple[CrossFieldRule, ...] = ()
    quarantine_limit: float = Field(DEFAULT_QUARANTINE_LIMIT, ge=0, le=1)
    formula_policy: FormulaPolicy = "quarantine"

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def by_role(self, role: PrivacyRole) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.privacy_role == role)


# --- reading one file ----------------------------------------------------------------------


@cache
def _odcs_validator() -> jsonschema.protocols.Validator:
    schema_path = Path(open_data_contract_standard.__file__).parent / "schema.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    return jsonschema.validators.validator_for(schema)(schema)


def _where(path: Any) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in path]
    return "".join(parts).lstrip(".") or "(document)"


def _pydantic_problems(name: str, exc: ValidationError, prefix: str = "") -> list[str]:
    return [f"{name}: {prefix}{_where(err['loc'])}: {err['msg']}" for err in exc.errors()]


def _custom(items: list[Any] | None) -> dict[str, Any]:
    return {item.property: item.value for item in items or []}


def _allowed_values(prop: SchemaProperty) -> tuple[str, ...] | None:
    for rule in prop.quality or []:
        if rule.metric == "invalidValues" and rule.arguments:
            values = rule.arguments.get("validValues")
            if values is not None:
                return tuple(str(v) for v in values)
    return None


def _column(prop: SchemaProperty, where: str, problems: list[str]) -> Column | None:
    custom = _custom(prop.customProperties)
    options = prop.logicalTypeOptions or {}
    aliases = custom.get("aliases") or []
    try:
        return Column(
            name=prop.name,
            physical_name=prop.physicalName or prop.name,
            logical_type=prop.logicalType,
            description=prop.description or "",
            required=bool(prop.required),
            unique=bool(prop.unique),
            pattern=options.get("pattern"),
            date_format=options.get("format"),
            minimum=options.get("minimum"),
            maximum=options.get("maximum"),
            allowed_values=_allowed_values(prop),
            privacy_role=custom.get("privacyRole"),
            treatment=custom.get("treatment"),
            identifier_type=custom.get("identifierType"),
            value_map=custom.get("valueMap"),
            aliases=tuple(aliases),
            check_digit=custom.get("checkDigit"),
        )
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(f"{where}: {_where(err['loc'])}: {err['msg']}")
        return None


def _row_bounds(quality: list[Any] | None) -> tuple[int, int | None]:
    for rule in quality or []:
        if rule.metric == "rowCount" and rule.mustBeBetween:
            low, high = rule.mustBeBetween
            return int(low), int(high)
    return 1, None


def _latency_days(contract: OpenDataContractStandard) -> int | None:
    for sla in contract.slaProperties or []:
        if sla.property == "latency" and sla.value is not None:
            return int(sla.value)
    return None


def _cross_field_rules(
    quality: list[Any] | None, name: str, problems: list[str]
) -> list[CrossFieldRule]:
    rules = []
    for i, rule in enumerate(quality or []):
        if rule.type != "custom" or rule.engine != RULE_ENGINE:
            continue
        where = f"{name}: schema[0].quality[{i}]"
        spec = rule.implementation if isinstance(rule.implementation, dict) else {}
        try:
            rules.append(
                CrossFieldRule(
                    name=rule.name or f"rule_{i}",
                    column=spec.get("column"),
                    operator=spec.get("operator"),
                    other=spec.get("other"),
                    description=rule.description or "",
                )
            )
        except ValidationError as exc:
            problems.extend(_pydantic_problems(where, exc, "implementation."))
    return rules


def _semantic_problems(contract: DepartmentContract, name: str) -> list[str]:
    """What the JSON Schema cannot know: rules that must make sense together."""
    problems = []
    raw_seen: dict[str, str] = {}
    for i, col in enumerate(contract.columns):
        where = f"{name}: schema[0].properties[{i}] ({col.name})"
        for raw in col.raw_names:
            if raw in raw_seen and raw_seen[raw] != col.name:
                problems.append(f"{where}: header '{raw}' is also used by '{raw_seen[raw]}'")
            raw_seen[raw] = col.name
        if col.pattern is not None:
            try:
                re.compile(col.pattern)
            except re.error as exc:
                problems.append(f"{where}: logicalTypeOptions.pattern: invalid regex ({exc})")
            if col.logical_type != "string":
                problems.append(f"{where}: logicalTypeOptions.pattern: only for string columns")
        if col.minimum is not None or col.maximum is not None:
            if col.logical_type not in ("integer", "number"):
                problems.append(f"{where}: minimum/maximum: only for integer or number columns")
            elif (
                col.minimum is not None and col.maximum is not None and col.minimum > col.maximum
            ):
                problems.append(f"{where}: minimum is above maximum")
        if col.date_format is not None and col.logical_type != "date":
            problems.append(f"{where}: logicalTypeOptions.format: only for date columns")
        if col.value_map and col.allowed_values is not None:
            unknown = sorted(set(col.value_map) - set(col.allowed_values))
            if unknown:
                problems.append(f"{where}: valueMap: keys {unknown} are not valid values")
        if col.check_digit == "nhs_mod11" and col.logical_type != "string":
            problems.append(f"{where}: checkDigit: nhs_mod11 needs a string column")
        if col.privacy_role == "direct_identifier" and col.treatment not in ("tokenise", "drop"):
            problems.append(
                f"{where}: treatment: a direct identifier must be tokenised or dropped, "
                f"not '{col.treatment}'"
            )
        if col.treatment == "tokenise" and col.identifier_type is None:
            problems.append(f"{where}: identifierType: required when treatment is tokenise")
    names = {c.name: c for c in contract.columns}
    for i, rule in enumerate(contract.cross_field_rules):
        where = f"{name}: schema[0] cross-field rule {i} ({rule.name})"
        missing = [c for c in (rule.column, rule.other) if c not in names]
        if missing:
            problems.append(f"{where}: unknown column(s) {missing}")
            continue
        types = {names[rule.column].logical_type, names[rule.other].logical_type}
        if len(types) != 1 or types & {"string", "boolean"}:
            problems.append(f"{where}: columns must share a date, integer or number type")
    if contract.row_count_max is not None and contract.row_count_min > contract.row_count_max:
        problems.append(f"{name}: schema[0].quality rowCount: lower bound is above upper bound")
    if contract.format == "xlsx" and not contract.sheet:
        problems.append(f"{name}: customProperties.sheet: required for xlsx extracts")
    if contract.format == "csv" and len(contract.delimiter) != 1:
        problems.append(f"{name}: customProperties.delimiter: must be one character")
    try:
        "".encode(contract.encoding)
    except LookupError:
        problems.append(f"{name}: customProperties.encoding: unknown '{contract.encoding}'")
    return problems


def parse_contract(path: Path, problems: list[str]) -> DepartmentContract | None:
    """Parse one contract file, appending every problem found (file and path) to `problems`."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        problems.append(f"{path.name}: cannot be read as YAML ({type(exc).__name__})")
        return None
    if not isinstance(document, dict):
        problems.append(f"{path.name}: (document): not a YAML mapping")
        return None
    schema_errors = sorted(_odcs_validator().iter_errors(document), key=lambda e: e.json_path)
    for err in schema_errors:
        problems.append(f"{path.name}: {_where(err.absolute_path)}: {err.message}")
    if schema_errors:
        return None
    try:
        odcs = OpenDataContractStandard.model_validate(document)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(path.name, exc))
        return None
    if not odcs.schema_ or len(odcs.schema_) != 1:
        problems.append(f"{path.name}: schema: exactly one schema object (the extract) is expected")
        return None
    table = odcs.schema_[0]
    start = len(problems)
    columns = []
    for i, prop in enumerate(table.properties or []):
        column = _column(prop, f"{path.name}: schema[0].properties[{i}] ({prop.name})", problems)
        if column is not None:
            columns.append(column)
    names = [c.name for c in columns]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{path.name}: schema[0].properties: column '{dup}' is declared twice")
    rules = _cross_field_rules(table.quality, path.name, problems)
    custom = _custom(odcs.customProperties)
    low, high = _row_bounds(table.quality)
    department = path.name.removesuffix(CONTRACT_SUFFIX)
    if odcs.domain and odcs.domain != department:
        problems.append(f"{path.name}: domain: '{odcs.domain}' differs from the file name")
    try:
        contract = DepartmentContract(
            department=department,
            contract_id=odcs.id,
            version=odcs.version,
            title=odcs.name or department,
            path=str(path),
            format=custom.get("format"),
            file_pattern=custom.get("filePattern", "*"),
            delimiter=custom.get("delimiter", ","),
            encoding=custom.get("encoding", "utf-8"),
            sheet=custom.get("sheet"),
            row_count_min=low,
            row_count_max=high,
            max_latency_days=_latency_days(odcs),
            columns=tuple(columns),
            cross_field_rules=tuple(rules),
            quarantine_limit=custom.get("quarantineLimit", DEFAULT_QUARANTINE_LIMIT),
            formula_policy=custom.get("formulaPolicy", "quarantine"),
        )
    except ValidationError as exc:
        problems.extend(_pydantic_problems(path.name, exc, "customProperties."))
        return None
    problems.extend(_semantic_problems(contract, path.name))
    return contract if len(problems) == start else None


def load_contracts(directory: Path) -> dict[str, DepartmentContract]:
    """Load every `*.odcs.yaml` in `directory`; report all problems in all files at once."""
    paths = sorted(directory.glob(f"*{CONTRACT_SUFFIX}"))
    if not paths:
        raise ContractError(f"no data contracts (*{CONTRACT_SUFFIX}) in {directory}")
    problems: list[str] = []
    contracts = {}
    for path in paths:
        contract = parse_contract(path, problems)
        if contract is not None:
            contracts[contract.department] = contract
    if problems:
        raise ContractError(
            f"{len(problems)} problem(s) in data contracts: " + "; ".join(problems)
        )
    return contracts
