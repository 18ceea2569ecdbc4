"""Disclosure policy and cohort table definitions, as declared in `data_contracts/`.

Policy numbers are named constants with the source they come from; a council picks a preset
by name in `disclosure_policy.yaml` rather than typing thresholds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.errors import ConfigError


class SmallNumberRule(BaseModel):
    """Counts 1 to `suppress_at_or_below` are suppressed; the rest are rounded to `round_to`."""

    model_config = ConfigDict(frozen=True)

    name: str
    suppress_at_or_below: int
    round_to: int
    source: str


# NHS England statistical disclosure control for published aggregates: suppress 1-7 and round
# the rest to the nearest 5 (https://digital.nhs.uk/services/data-access-request-service-dars).
NHS_ENGLAND = SmallNumberRule(
    name="nhs_england",
    suppress_at_or_below=7,
    round_to=5,
    source="https://digital.nhs.uk/data-and-information/data-tools-and-services/data-services/"
    "hospital-episode-statistics/change-to-disclosure-control-methodology-for-hes-and-ecds-from-"
    "september-2018",
)
# OpenSAFELY output checking: redact counts of 7 or fewer, round to the nearest 5
# (https://docs.opensafely.org/releasing-files/).
OPENSAFELY = SmallNumberRule(
    name="opensafely",
    suppress_at_or_below=7,
    round_to=5,
    source="https://docs.opensafely.org/releasing-files/",
)
# ONS-style threshold: counts below 10 are suppressed, published counts are exact.
ONS_THRESHOLD_10 = SmallNumberRule(
    name="ons_threshold_10",
    suppress_at_or_below=9,
    round_to=1,
    source="https://www.ons.gov.uk/methodology/methodologytopicsandstatisticalconcepts/"
    "disclosurecontrol",
)
SMALL_NUMBER_RULES = {rule.name: rule for rule in (NHS_ENGLAND, OPENSAFELY, ONS_THRESHOLD_10)}

# Cell-key perturbation as the ONS applied it to Census 2021 outputs: record keys uniform on
# 0..255, a cell's key the sum of its members' record keys mod 256, and the noise for (true
# count, cell key) read from a perturbation table (ptable) built as the sdcTools `ptable`
# package does (maximum entropy, zero mean, fixed variance, maximum noise D, no published
# count in 1..js). https://www.ons.gov.uk/peoplepopulationandcommunity/populationandmigration/
# populationestimates/methodologies/protectingpersonaldataincensus2021results
CELL_KEYS = 256


class PerturbationRow(BaseModel):
    """For a true count `count` (the last row also stands for every larger count, shifted), how
    many of the 256 cell keys publish each value: `to` maps published value -> keys, keys
    allotted in increasing order of the published value (cell key 0 first)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = Field(ge=0)
    to: dict[int, int]


class PerturbationTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    source: str = ""
    built_by: str = ""
    max_noise: int = Field(ge=1, description="D: no published count differs from the truth by more")
    variance: float = Field(gt=0, description="V: the noise variance the table was built for")
    small_counts: int = Field(ge=0, description="js: no count 1..js is ever published")
    keys: int = CELL_KEYS
    rows: tuple[PerturbationRow, ...] = Field(min_length=2)

    @property
    def largest_row(self) -> int:
        return self.rows[-1].count

    @model_validator(mode="after")
    def _a_proper_table(self) -> PerturbationTable:
        problems = []
        if self.keys != CELL_KEYS:
            problems.append(f"keys must be {CELL_KEYS}")
        for position, row in enumerate(self.rows):
            where = f"rows.{position}"
            if row.count != position:
                problems.append(f"{where}: counts must run 0, 1, 2, ... (found {row.count})")
            if sum(row.to.values()) != self.keys or min(row.to.values(), default=0) < 1:
                problems.append(f"{where}: keys must be at least 1 and sum to {self.keys}")
            for published in row.to:
                if abs(published - row.count) > self.max_noise:
                    problems.append(f"{where}: noise beyond max_noise")
                if published < 0 or 1 <= published <= self.small_counts:
                    problems.append(f"{where}: publishes a count below 0 or in 1..small_counts")
            if sum(n * (published - row.count) for published, n in row.to.items()) != 0:
                problems.append(f"{where}: noise does not have mean zero")
        if self.rows and self.rows[0].to != {0: self.keys}:
            problems.append("rows.0: a true zero must publish as zero")
        if problems:
            raise ValueError("; ".join(problems))
        return self


# Magnitude-cell rules for sums and medians, with ACRO's defaults (acro/default.yaml:
# safe_pratio_p 0.10, safe_nk_n 2, safe_nk_k 0.90, zeros_are_disclosive true), the same rules
# tau-Argus applies as "p%-rule" and "(n,k)-dominance" (tau-Argus user manual, "sensitivity rules").
ACRO_DEFAULTS = "https://github.com/AI-SDC/ACRO/blob/main/acro/default.yaml"


class MagnitudeRules(BaseModel):
    """When a sum or median over a cell may be published.

    - p% rule: sensitive when sum - x1 - x2 < p/100 * x1 (x1, x2 the two largest
      contributions): the second-largest contributor could estimate the largest to within p%.
    - (n,k) dominance: sensitive when the n largest contributions exceed k% of the sum.
    - A zero sum is sensitive (everyone in the cell has nothing), as ACRO's zeros_are_disclosive.
    - A median is published only where the count is publishable, neither rule flags the cell,
      and the cell holds at least `median_min_distinct` distinct values (ACRO withholds
      "all values are the same"); it is rounded to `median_round_to`.
    - The differencing audit demands, for every withheld sum, an interval at least p% of its
      value wide (tau-Argus's protection level for the p% rule).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    p_percent: float = Field(default=10.0, gt=0, le=100)
    dominance_n: int = Field(default=2, ge=1)
    dominance_k_percent: float = Field(default=90.0, gt=0, le=100)
    sum_round_to: int = Field(default=1, ge=1)
    median_round_to: int = Field(default=1, ge=1)
    median_min_distinct: int = Field(default=3, ge=1)
    source: str = ACRO_DEFAULTS


class DisclosurePolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    k: int = Field(ge=2, description="every published row stands for at least k people")
    max_suppression: float = Field(ge=0, le=1)
    small_number_rule: Literal["nhs_england", "opensafely", "ons_threshold_10"]
    quasi_identifiers: tuple[str, ...] = Field(min_length=1)
    l_diversity: int | None = Field(default=None, ge=2)
    sensitive: str | None = None
    require_approval: bool = True
    # The narrowest interval an attacker may derive, from everything published in this release
    # and the last, for a withheld small cell (the differencing audit's criterion). Defaults to
    # the smallest publishable count: an attacker cannot tell 1 from min_published_count - 1.
    protection_interval: int | None = Field(default=None, ge=1)
    # How withheld cells are protected by others (secondary suppression):
    # - release_audit: withhold more only where the audit (over every table of the release and
    #   the previous release) finds a withheld cell it can narrow too far;
    # - every_table_total: also treat every total of each table as known (published elsewhere
    #   or not), and protect withheld cells in each such total on top of the audit.
    secondary_suppression: Literal["release_audit", "every_table_total"] = "release_audit"
    # Two-person rule: with 2, two different officers (neither the one who ran the build) must
    # approve before a release is published; one rejection is enough to stop it.
    approvers_required: int = Field(default=1, ge=1, le=2)
    # A department whose newest extract is overdue under its contract, or that never delivered:
    # "warn" builds the release and flags the department in the report (and the log);
    # "block" builds none (cohorts would mix this month with last quarter, or leave a
    # department's residents out).
    stale_departments: Literal["block", "warn"] = "warn"
    # How the cohort tables are protected: suppression (the small-number rule above, with
    # secondary suppression) or cell_key (ONS-style cell-key perturbation, the noise read from
    # the perturbation table named by `ptable`, a file beside this one).
    method: Literal["suppression", "cell_key"] = "suppression"
    ptable: str | None = None
    # The perturbation table itself, read from `ptable` by load_policy (kept in the policy so
    # the gates re-run at approval with exactly the table the release was built with).
    perturbation: PerturbationTable | None = None
    # Sums and medians (cohorts.yaml `measure`): p% and (n,k) dominance, ACRO's defaults.
    magnitude: MagnitudeRules = MagnitudeRules()

    @property
    def rule(self) -> SmallNumberRule:
        return SMALL_NUMBER_RULES[self.small_number_rule]

    @property
    def min_published_count(self) -> int:
        """The smallest true count a published cell may stand for.

        At least k and above the small-number threshold, and large enough that rounding cannot
        publish a number below k (with k = 11 and base 5, a true 11 or 12 would show as 10).
        """
        base = self.rule.round_to
        smallest = max(self.k, self.rule.suppress_at_or_below + 1)
        while (smallest + base // 2) // base * base < self.k:
            smallest += 1
        return smallest

    @property
    def protection_width(self) -> int:
        return self.protection_interval or self.min_published_count

    @model_validator(mode="after")
    def _sensitive_with_l(self) -> DisclosurePolicy:
        if (self.l_diversity is None) != (self.sensitive is None):
            raise ValueError("l_diversity and sensitive must be given together")
        return self

    @model_validator(mode="after")
    def _cell_key_with_table(self) -> DisclosurePolicy:
        if self.method == "cell_key" and self.perturbation is None:
            raise ValueError("method cell_key needs a perturbation table: ptable: <file>")
        return self


def _read_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path.name}: cannot be read as YAML ({type(exc).__name__})") from None


def load_yaml_model(path: Path, model: type[BaseModel], document=None) -> BaseModel:
    if document is None:
        document = _read_yaml(path)
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{path.name}: {len(exc.errors())} problem(s): {problems}") from None


def load_ptable(path: Path) -> PerturbationTable:
    return load_yaml_model(path, PerturbationTable)  # type: ignore[return-value]


def load_policy(path: Path) -> DisclosurePolicy:
    """The policy, with its perturbation table read from the file `ptable` names (beside it)."""
    document = _read_yaml(path)
    if isinstance(document, dict) and isinstance(document.get("ptable"), str):
        if "perturbation" in document:
            raise ConfigError(f"{path.name}: perturbation: give the table as a file (ptable)")
        table_path = path.parent / document["ptable"]
        if not table_path.is_file():
            raise ConfigError(f"{path.name}: ptable: no file {document['ptable']} beside it")
        document = {**document, "perturbation": load_ptable(table_path).model_dump()}
    return load_yaml_model(path, DisclosurePolicy, document)  # type: ignore[return-value]
