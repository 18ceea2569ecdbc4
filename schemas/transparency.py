"""What residents are told: the declared content of every release's transparency notice, and the
purpose of this pipeline that opt-out scopes are matched against (data_contracts/transparency.yaml).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from schemas.errors import ConfigError
from schemas.policy import load_yaml_model

TRANSPARENCY_FILE = "transparency.yaml"
_CODE = r"^[a-z][a-z0-9_]*$"


class Purpose(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=_CODE)
    title: str = Field(min_length=1)
    summary: str = Field(min_length=1)


class Contact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    team: str = Field(min_length=1)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str = Field(min_length=1)
    post: str = Field(min_length=1)
    how_to_object: str = Field(min_length=1)
    complaints: str = Field(min_length=1)


class Transparency(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    council: str = Field(min_length=1)
    purpose: Purpose
    other_purposes: dict[str, str] = {}
    departments: dict[str, str]
    contact: Contact

    def scopes(self) -> tuple[str, ...]:
        """Every scope an objection may name: all sharing, this purpose, the others."""
        return ("all", self.purpose.code, *self.other_purposes)


def load_transparency(path: Path, departments: list[str] | None = None) -> Transparency:
    """Read and check the file; with `departments`, each must have its plain line."""
    path = Path(path)
    declared = load_yaml_model(path, Transparency)
    missing = sorted(set(departments or ()) - set(declared.departments))
    if missing:
        raise ConfigError(
            f"{path.name}: departments: no plain description for {', '.join(missing)}"
        )
    return declared
