"""Linkage rules: what `data_contracts/linkage.yaml` may say, validated up front.

The rules, in priority order, each name the identifiers (or parts of them: an initial, a postcode
sector, a birth year) whose keyed tokens must agree for two records to be one person; a rule may
be vetoed by an identifier that must not differ; `conflicts.unique_per_person` names the
identifiers a person holds only one of. Every problem in the file is reported at once. The
linker (`link.py`) applies them; pseudonymisation makes one token column per rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.errors import LinkageError

DEFAULT_RULES_PATH = Path(__file__).resolve().parents[2] / "data_contracts" / "linkage.yaml"
TOKEN_PREFIX = "tok_"

IdentifierName = Literal[
    "nhs_number", "ni_number", "forename", "surname", "date_of_birth", "postcode", "uprn",
    "email", "phone",
]
Part = Literal["full", "initial", "sector", "district", "year"]
_PARTS_FOR = {
    "initial": {"forename", "surname"},
    "sector": {"postcode"},
    "district": {"postcode"},
    "year": {"date_of_birth"},
}


class RuleField(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    identifier: IdentifierName
    part: Part = "full"

    @model_validator(mode="after")
    def _part_fits(self) -> RuleField:
        if self.part != "full" and self.identifier not in _PARTS_FOR[self.part]:
            raise ValueError(f"part '{self.part}' does not apply to {self.identifier}")
        return self


class LinkageRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    purpose: str | None = None
    fields: tuple[RuleField, ...] = Field(min_length=1)
    # Identifiers that, present in both records and different, stop this rule linking them.
    vetoed_by: tuple[IdentifierName, ...] = ()

    @property
    def token_column(self) -> str:
        return TOKEN_PREFIX + self.name


VETO_PREFIX = "veto_"


def veto_rule(identifier: str) -> LinkageRule:
    """The check-only token of an identifier named in some rule's `vetoed_by`."""
    return LinkageRule(
        name=VETO_PREFIX + identifier,
        description=f"check only: {identifier} must not differ",
        fields=(RuleField(identifier=identifier),),
    )


class ConflictPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    unique_per_person: tuple[str, ...] = ()
    resolution: Literal["refuse_link"] = "refuse_link"


class LinkageRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    purpose: str = Field(default="linkage", pattern=r"^[a-z][a-z0-9_]*$")
    rules: tuple[LinkageRule, ...] = Field(min_length=1)
    household: LinkageRule | None = None
    conflicts: ConflictPolicy = ConflictPolicy()

    @model_validator(mode="after")
    def _consistent(self) -> LinkageRules:
        problems = []
        names = [r.name for r in self.rules] + ([self.household.name] if self.household else [])
        for dup in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"rule name '{dup}' is used twice")
        by_name = {r.name: r for r in self.rules}
        for name in self.conflicts.unique_per_person:
            rule = by_name.get(name)
            if rule is None:
                problems.append(f"conflicts.unique_per_person: '{name}' is not a rule")
            elif len(rule.fields) != 1 or rule.fields[0].part != "full":
                problems.append(
                    f"conflicts.unique_per_person: rule '{name}' must be one full identifier"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def token_rules(self) -> list[tuple[str, LinkageRule]]:
        """Every (purpose, rule) that needs a token column, linkage rules first."""
        made = [(rule.purpose or self.purpose, rule) for rule in self.rules]
        made += [(self.purpose, veto_rule(i)) for i in self.veto_identifiers()]
        if self.household is not None:
            made.append((self.household.purpose or "household", self.household))
        return made

    def veto_identifiers(self) -> list[str]:
        found: list[str] = []
        for rule in self.rules:
            found += [i for i in rule.vetoed_by if i not in found]
        return found

    def token_columns(self) -> list[str]:
        return [rule.token_column for _, rule in self.token_rules()]


def load_linkage_rules(path: Path = DEFAULT_RULES_PATH) -> LinkageRules:
    """Read and validate the declared rules; every problem is reported at once."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LinkageError(f"linkage rules {path} cannot be read ({type(exc).__name__})") from None
    except yaml.YAMLError:
        raise LinkageError(f"linkage rules {path} are not valid YAML") from None
    try:
        return LinkageRules.model_validate(document)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'file'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise LinkageError(
            f"{len(problems)} problem(s) in linkage rules {path.name}: " + "; ".join(problems)
        ) from None
