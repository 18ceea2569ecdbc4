"""Cohort definitions are checked against the population's columns and the hierarchies before
any data is read, and every problem is reported at once with its place in cohorts.yaml."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.cohorts import CohortDefinitions, CohortTable, Dimension, load_cohorts, load_indicators
from schemas.contract import departments, load_contracts
from schemas.errors import ConfigError
from transforms.disclosure import check_definitions, load_hierarchies
from transforms.identity import person_features

CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"


def _columns():
    features = person_features(
        departments(load_contracts(CONTRACTS)), load_indicators(CONTRACTS / "indicators.yaml")
    )
    return features.columns()


def test_the_shipped_definitions_are_valid():
    check_definitions(
        load_cohorts(CONTRACTS / "cohorts.yaml"), _columns(),
        load_hierarchies(CONTRACTS / "hierarchies"),
    )


def test_every_problem_is_reported_together_with_its_place():
    table = CohortTable(
        name="cohort_bad", title="t", description="d", question="q", unit="people",
        where="no_such_column > 1",
        dimensions=(
            Dimension(name="x", source="in_rent_arrears_typo"),
            Dimension(name="ward", source="lsoa", level=7),
            Dimension(name="band", source="tenure", bands=("0", "1+")),
            Dimension(name="dept", source="sex", expand="each"),
        ),
    )
    with pytest.raises(ConfigError, match="5 problem") as error:
        check_definitions(CohortDefinitions(tables=(table,)), _columns(),
                          load_hierarchies(CONTRACTS / "hierarchies"))
    message = str(error.value)
    for expected in ("tables[0] (cohort_bad).where", "in_rent_arrears_typo", "level 7",
                     "bands need a whole-number", "expand needs a list"):
        assert expected in message


def test_malformed_bands_and_pairs_are_refused_by_the_schema():
    with pytest.raises(ValidationError, match="increase"):
        Dimension(name="b", source="indicator_count", bands=("2", "1"))
    with pytest.raises(ValidationError, match="exactly two"):
        CohortTable(name="cohort_p", title="t", description="d", question="q", unit="people",
                    dimensions=(Dimension(name="a", source="departments", expand="pair"),))
