"""Contracts: every problem in every file is reported at once, with file and path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from schemas.contract import departments, load_contracts, opt_out_registers
from schemas.errors import ContractError

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "data_contracts"


def test_the_shipped_contracts_load_with_our_custom_properties():
    contracts = load_contracts(CONTRACTS)
    assert set(departments(contracts)) == {
        "adult_social_care", "childrens_services", "housing", "council_tax", "benefits"
    }
    # The opt-out register is received like an extract but is no department: never counted.
    assert set(opt_out_registers(contracts)) == {"opt_out"} == set(contracts) - set(
        departments(contracts)
    )
    assert contracts["opt_out"].delivery_type == "opt_out"
    asc = contracts["adult_social_care"]
    assert asc.column("nhs_number").check_digit == "nhs_mod11"
    assert "NHS No" in asc.column("nhs_number").aliases
    assert asc.cross_field_rules[0].operator == ">="
    assert asc.formula_policy == "neutralise"
    assert contracts["housing"].formula_policy == "quarantine"
    assert all(0 < c.quarantine_limit <= 1 for c in contracts.values())
    assert all(c.max_latency_days for c in contracts.values())
    assert contracts["council_tax"].encoding == "windows-1252"
    assert contracts["childrens_services"].sheet == "Children"


def _break(folder: Path, name: str, old: str, new: str) -> None:
    path = folder / name
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_all_problems_in_all_files_are_reported_together(tmp_path):
    for path in CONTRACTS.glob("*.odcs.yaml"):
        shutil.copy(path, tmp_path / path.name)
    _break(tmp_path, "housing.odcs.yaml", "logicalType: integer", "logicalType: integr")
    _break(tmp_path, "housing.odcs.yaml", "value: quarantine", "value: ignore")
    _break(tmp_path, "benefits.odcs.yaml", "pattern: '^\\d{1,12}$'", "pattern: '^(\\d{1,12}$'")
    _break(tmp_path, "adult_social_care.odcs.yaml", "other: date_of_birth",
           "other: date_of_death")
    _break(tmp_path, "council_tax.odcs.yaml", "- {property: treatment, value: tokenise}",
           "- {property: treatment, value: keep}")
    (tmp_path / "broken.odcs.yaml").write_text("apiVersion: [unclosed\n", encoding="utf-8")
    with pytest.raises(ContractError) as caught:
        load_contracts(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    for expected in [
        "housing.odcs.yaml: schema[0].properties[8].logicalType: 'integr' is not one of",
        "housing.odcs.yaml: customProperties.formula_policy",
        "benefits.odcs.yaml: schema[0].properties[7] (uprn): logicalTypeOptions.pattern",
        "adult_social_care.odcs.yaml: schema[0] cross-field rule 0 (support_not_before_birth): "
        "unknown column(s) ['date_of_death']",
        "council_tax.odcs.yaml: schema[0].properties[1] (forename): treatment",
        "broken.odcs.yaml: cannot be read as YAML",
    ]:
        assert expected in message, expected


def test_odcs_structure_is_checked_against_the_standard(tmp_path):
    shutil.copy(CONTRACTS / "housing.odcs.yaml", tmp_path / "housing.odcs.yaml")
    _break(tmp_path, "housing.odcs.yaml", "kind: DataContract", "kind: Contract")
    with pytest.raises(ContractError) as caught:
        load_contracts(tmp_path)
    assert "housing.odcs.yaml: kind: 'Contract' is not one of ['DataContract']" in str(
        caught.value
    )


def test_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ContractError, match="no data contracts"):
        load_contracts(tmp_path)
