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
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jsonschema
import open_data_contract_standard
import polars as pl
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
# Rules on how an identifier is issued: HMRC never issues some NI number prefixes.
IssuanceRule = Literal["hmrc_ni_prefix"]
Compression = Literal["none", "gzip"]
FormulaPolicy = Literal["neutralise", "quarantine"]
Frequency = Literal["daily", "weekly", "monthly", "quarterly"]
# Days between deliveries at each frequency: a newest extract older than this plus the contract's
# latency is overdue (flows/schedules.py turns the same names into cron schedules).
FREQUENCY_DAYS = {"daily": 1, "weekly": 7, "monthly": 31, "quarterly": 92}
Operator = Literal[">=", ">", "<=", "<"]
# How several records of one resident in one department combine into one person attribute:
# any/all for yes-no facts, latest (the resident's last record in the extract), max/min for
# numbers and dates, count for how many records.
Combine = Literal["any", "all", "latest", "max", "min", "count", "sum"]

# The Polars type of each logical type, wherever a contract's column becomes a frame's column.
POLARS_TYPES: dict[str, type[pl.DataType]] = {
    "string": pl.String,
    "date": pl.Date,
    "integer": pl.Int64,
    "number": pl.Float64,
    "boolean": pl.Boolean,
}

# A department's extract is linked and counted; the opt-out register is only matched against
# it, to remove residents who objected (customProperties `deliveryType`, default department).
DeliveryType = Literal["department", "opt_out"]

CONTRACT_SUFFIX = ".odcs.yaml"
RULE_ENGINE = "cohortshare"
# A delivery whose quarantined share is above this is rejected unless the contract says otherwise.
DEFAULT_QUARANTINE_LIMIT = 0.05


class Limits(BaseModel):
    """What one delivery may cost to read. A file beyond a limit is rejected (`resource_limit`)
    before the reader that would suffer from it runs; defaults suit a council's monthly
    extracts, and a contract can raise or lower each under `customProperties.limits`."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    # A physical line of a text extract (CSV, NDJSON, JSON).
    max_line_bytes: int = Field(1 << 20, ge=1024, alias="maxLineBytes")
    # One cell, after conforming (Excel's own limit is 32,767 characters).
    max_cell_bytes: int = Field(32_767, ge=1, alias="maxCellBytes")
    # Spreadsheets: sheets in the workbook, cells in the sheet's used range (the reader sizes
    # its buffers from that range: 32 bytes a cell), bytes of the sheet's XML once unpacked.
    max_sheets: int = Field(64, ge=1, alias="maxSheets")
    max_used_range_cells: int = Field(20_000_000, ge=1, alias="maxUsedRangeCells")
    max_sheet_bytes: int = Field(2 << 30, ge=1, alias="maxSheetBytes")
    # The child process reading a spreadsheet: address space and wall time.
    reader_memory_bytes: int = Field(8 << 30, ge=1 << 28, alias="readerMemoryBytes")
    reader_seconds: int = Field(600, ge=1, alias="readerSeconds")
    # A compressed text extract (where the contract allows compression), once unpacked.
    max_decompressed_bytes: int = Field(4 << 30, ge=1, alias="maxDecompressedBytes")


class PlausibleRange(BaseModel):
    """Dates a value can truly take: `latest: extract_date` means not after the extract's date.
    A value outside is quarantined (`plausible_range`): a birth in 1800 or 2099 is a typo."""

    model_config = ConfigDict(frozen=True)

    earliest: date | None = None
    latest: date | Literal["extract_date"] | None = None


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
    issuance_rule: IssuanceRule | None = None
    plausible_range: PlausibleRange | None = None
    value_map: dict[str, str] | None = None
    aliases: tuple[str, ...] = ()
    check_digit: CheckDigit | None = None
    # Set when the column may feed cohort tables as a person attribute (`cohortAttribute`).
    cohort_combine: Combine | None = None

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
    delivery_type: DeliveryType = "department"
    format: FileFormat
    file_pattern: str
    delimiter: str = ","
    encoding: str = "utf-8"
    sheet: str | None = None
    row_count_min: int = 1
    row_count_max: int | None = None
    max_latency_days: int | None = None
    # How often the department delivers (ODCS slaProperties `frequency`): sets its ingestion
    # schedule and when its newest extract counts as overdue in a release.
    frequency: Frequency | None = None
    # Rank of this department's identity data when departments disagree about a resident
    # (customProperties `identityPriority`; 1 = most reliable). See `source_priority`.
    identity_priority: int | None = Field(default=None, ge=1)
    columns: tuple[Column, ...]
    cross_field_rules: tuple[CrossFieldRule, ...] = ()
    quarantine_limit: float = Field(DEFAULT_QUARANTINE_LIMIT, ge=0, le=1)
    formula_policy: FormulaPolicy = "quarantine"
    compression: Compression = "none"
    limits: Limits = Limits()

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
            issuance_rule=custom.get("issuanceRule"),
            plausible_range=custom.get("plausibleRange"),
            value_map=custom.get("valueMap"),
            aliases=tuple(aliases),
            check_digit=custom.get("checkDigit"),
            cohort_combine=custom.get("cohortAttribute"),
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


def _frequency(contract: OpenDataContractStandard) -> str | None:
    for sla in contract.slaProperties or []:
        if sla.property == "frequency" and sla.value is not None:
            return str(sla.value)
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
        if col.issuance_rule is not None and col.logical_type != "string":
            problems.append(f"{where}: issuanceRule: needs a string column")
        if col.plausible_range is not None:
            low, high = col.plausible_range.earliest, col.plausible_range.latest
            if col.logical_type != "date":
                problems.append(f"{where}: plausibleRange: only for date columns")
            elif isinstance(low, date) and isinstance(high, date) and low > high:
                problems.append(f"{where}: plausibleRange: earliest is after latest")
        if col.privacy_role == "direct_identifier" and col.treatment not in ("tokenise", "drop"):
            problems.append(
                f"{where}: treatment: a direct identifier must be tokenised or dropped, "
                f"not '{col.treatment}'"
            )
        if col.cohort_combine is not None:
            if col.treatment != "keep":
                problems.append(f"{where}: cohortAttribute: only a kept column may feed cohorts")
            if col.cohort_combine in ("any", "all") and col.logical_type != "boolean":
                problems.append(f"{where}: cohortAttribute: {col.cohort_combine} needs a boolean")
            if col.cohort_combine in ("max", "min") and col.logical_type in ("string", "boolean"):
                problems.append(f"{where}: cohortAttribute: {col.cohort_combine} needs a number "
                                "or date")
            if col.cohort_combine == "sum" and col.logical_type not in ("number", "integer"):
                problems.append(f"{where}: cohortAttribute: sum needs a number")
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
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path.name}: cannot be read ({type(exc).__name__})")
        return None
    return parse_contract_text(text, path, problems)


def parse_contract_text(text: str, path: Path, problems: list[str]) -> DepartmentContract | None:
    """Parse a contract's text (e.g. a previous version from git) as if it were at `path`."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problems.append(f"{path.name}: cannot be read as YAML ({type(exc).__name__})")
        return None
    if not isinstance(document, dict):
        problems.append(f"{path.name}: (document): not a YAML mapping")
        return None
    start = len(problems)
    schema_errors = sorted(_odcs_validator().iter_errors(document), key=lambda e: e.json_path)
    for err in schema_errors:
        problems.append(f"{path.name}: {_where(err.absolute_path)}: {_short(err.message)}")
    try:
        odcs = OpenDataContractStandard.model_validate(document)
    except ValidationError as exc:
        if not schema_errors:
            problems.extend(_pydantic_problems(path.name, exc))
        return None
    # Carry on past errors against the standard, so our own checks report too; the standard
    # already named a bad logical type, so ours would only repeat it.
    ours: list[str] = []
    contract = _parse_odcs(odcs, path, ours)
    problems.extend(p for p in ours if not (schema_errors and ": logical_type: " in p))
    return contract if len(problems) == start else None


def _short(message: str, limit: int = 160) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _parse_odcs(
    odcs: OpenDataContractStandard, path: Path, problems: list[str]
) -> DepartmentContract | None:
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
            delivery_type=custom.get("deliveryType", "department"),
            format=custom.get("format"),
            file_pattern=custom.get("filePattern", "*"),
            delimiter=custom.get("delimiter", ","),
            encoding=custom.get("encoding", "utf-8"),
            sheet=custom.get("sheet"),
            row_count_min=low,
            row_count_max=high,
            max_latency_days=_latency_days(odcs),
            frequency=_frequency(odcs),
            identity_priority=custom.get("identityPriority"),
            columns=tuple(columns),
            cross_field_rules=tuple(rules),
            quarantine_limit=custom.get("quarantineLimit", DEFAULT_QUARANTINE_LIMIT),
            formula_policy=custom.get("formulaPolicy", "quarantine"),
            compression=custom.get("compression", "none"),
            limits=custom.get("limits") or {},
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


def departments(contracts: dict[str, DepartmentContract]) -> dict[str, DepartmentContract]:
    """The contracts of departments, whose records are linked and counted: not the opt-out
    register, which is received the same way but only removes residents."""
    return {n: c for n, c in contracts.items() if c.delivery_type == "department"}


def opt_out_registers(contracts: dict[str, DepartmentContract]) -> dict[str, DepartmentContract]:
    return {n: c for n, c in contracts.items() if c.delivery_type == "opt_out"}


# --- comparing versions --------------------------------------------------------------------

# A column may widen to these types without breaking its consumers.
_WIDENINGS = {("integer", "number"), ("integer", "string"), ("number", "string"),
              ("date", "string"), ("boolean", "string")}


def _bound_tightened(old: float | None, new: float | None, *, lower: bool) -> bool:
    if new is None:
        return False
    if old is None:
        return True
    return new > old if lower else new < old


def breaking_changes(old: DepartmentContract, new: DepartmentContract) -> list[str]:
    """What a delivery valid under `old` could fail, or a consumer of `old` could misread,
    under `new`: removed or renamed columns, narrowed types, changed privacy roles or
    treatments, and tightened rules. Each item names the column and the change."""
    found: list[str] = []
    new_cols = {c.name: c for c in new.columns}
    for before in old.columns:
        after = new_cols.get(before.name)
        where = f"column '{before.name}'"
        if after is None:
            found.append(f"{where}: removed or renamed")
            continue
        if before.physical_name not in after.raw_names:
            found.append(
                f"{where}: header renamed from '{before.physical_name}' to "
                f"'{after.physical_name}' without an alias"
            )
        if before.logical_type != after.logical_type and (
            (before.logical_type, after.logical_type) not in _WIDENINGS
        ):
            found.append(f"{where}: type narrowed from {before.logical_type} to "
                         f"{after.logical_type}")
        if before.privacy_role != after.privacy_role:
            found.append(f"{where}: privacy role changed from {before.privacy_role} to "
                         f"{after.privacy_role}")
        if before.treatment != after.treatment:
            found.append(f"{where}: treatment changed from {before.treatment} to "
                         f"{after.treatment}")
        if after.required and not before.required:
            found.append(f"{where}: now required")
        if after.unique and not before.unique:
            found.append(f"{where}: now unique")
        if after.allowed_values is not None and (
            before.allowed_values is None
            or not set(before.allowed_values) <= set(after.allowed_values)
        ):
            found.append(f"{where}: allowed values narrowed")
        if _bound_tightened(before.minimum, after.minimum, lower=True):
            found.append(f"{where}: minimum raised")
        if _bound_tightened(before.maximum, after.maximum, lower=False):
            found.append(f"{where}: maximum lowered")
        if after.pattern is not None and after.pattern != before.pattern:
            found.append(f"{where}: pattern added or changed (treated as tightened)")
        if after.date_format != before.date_format and before.logical_type == "date":
            found.append(f"{where}: date format changed")
        if after.check_digit is not None and after.check_digit != before.check_digit:
            found.append(f"{where}: check digit {after.check_digit} added")
        if after.issuance_rule is not None and after.issuance_rule != before.issuance_rule:
            found.append(f"{where}: issuance rule {after.issuance_rule} added")
        if after.plausible_range is not None and after.plausible_range != before.plausible_range:
            found.append(f"{where}: plausible range added or changed (treated as tightened)")
        if (after.value_map or {}) != (before.value_map or {}):
            found.append(f"{where}: value map changed")
    old_names = {c.name for c in old.columns}
    for after in new.columns:
        if after.name not in old_names and after.required:
            found.append(f"column '{after.name}': added as required")
    old_rules = {r.name: r for r in old.cross_field_rules}
    for rule in new.cross_field_rules:
        if old_rules.get(rule.name) != rule:
            found.append(f"cross-field rule '{rule.name}': added or changed")
    if new.delivery_type != old.delivery_type:
        found.append(f"delivery type changed from {old.delivery_type} to {new.delivery_type}")
    if new.format != old.format or new.delimiter != old.delimiter or new.encoding != old.encoding:
        found.append("file: format, delimiter or encoding changed")
    if new.sheet != old.sheet:
        found.append("file: sheet changed")
    if new.row_count_min > old.row_count_min or (
        _bound_tightened(old.row_count_max, new.row_count_max, lower=False)
    ):
        found.append("file: row count bounds narrowed")
    if _bound_tightened(old.max_latency_days, new.max_latency_days, lower=False):
        found.append("file: freshness (latency) shortened")
    if new.quarantine_limit < old.quarantine_limit:
        found.append("file: quarantine limit lowered")
    if new.compression != old.compression and new.compression == "none":
        found.append("file: compression no longer accepted")
    tightened = [
        name for name, value in new.limits.model_dump().items()
        if value < old.limits.model_dump()[name]
    ]
    if tightened:
        found.append(f"file: limits lowered ({', '.join(tightened)})")
    if new.formula_policy == "quarantine" and old.formula_policy == "neutralise":
        found.append("file: formulas now quarantined instead of neutralised")
    return found


def source_priority(contracts: dict[str, DepartmentContract]) -> tuple[str, ...]:
    """Departments in the order their identity data is trusted, as their contracts declare
    (`identityPriority`, lowest first); departments that declare none come last, by name.
    A new department joins the order through its contract, not through code."""
    return tuple(
        sorted(
            contracts,
            key=lambda d: (contracts[d].identity_priority is None,
                           contracts[d].identity_priority or 0, d),
        )
    )
