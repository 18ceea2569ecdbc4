import polars as pl

from transforms.identity.population import build_population


def _linked(**columns):
    base = {
        "department": ["housing"],
        "row_number": [1],
        "person_key": ["p1"],
        "household_key": ["h1"],
        "age": [40],
        "sex": ["F"],
        "ethnicity": ["W1"],
        "lsoa": ["L1"],
    }
    base.update(columns)
    n = len(base["person_key"])
    return pl.DataFrame(
        {k: (v * n if len(v) == 1 else v) for k, v in base.items()},
        schema_overrides={"age": pl.Int16},
    )


def test_values_come_from_the_most_reliable_department():
    linked = _linked(
        department=["council_tax", "benefits"],
        row_number=[1, 2],
        person_key=["p1", "p1"],
        age=[41, 40],
        sex=[None, "M"],
    )
    population, _, counts = build_population(linked)
    assert population.select("age", "sex").rows() == [("40", "M")]
    assert population["departments"].to_list() == [["benefits", "council_tax"]]
    assert counts.records == 2 and counts.people == 1


def test_people_without_an_area_are_withheld_and_counted():
    linked = _linked(
        person_key=["p1", "p2", "p3"],
        row_number=[1, 2, 3],
        age=[30, None, 50],
        lsoa=["L1", "L1", None],
    )
    population, incomplete, counts = build_population(linked)
    assert population.select("person_key", "age").rows() == [("p1", "30"), ("p2", "unknown")]
    assert incomplete["person_key"].to_list() == ["p3"]
    assert counts.people_incomplete == 1 and counts.people == 3


def test_unknown_sex_and_ethnicity_become_explicit_categories():
    population, _, _ = build_population(_linked(sex=[None], ethnicity=[None]))
    assert population.select("sex", "ethnicity").rows() == [("U", "NS")]


def _features(indicators):
    from pathlib import Path

    from schemas.cohorts import IndicatorDefinitions
    from schemas.contract import departments, load_contracts
    from transforms.identity.population import person_features

    contracts = load_contracts(Path(__file__).resolve().parents[2] / "data_contracts")
    return person_features(departments(contracts), IndicatorDefinitions(indicators=indicators))


def test_attributes_combine_as_declared_and_indicators_hold_when_any_record_meets_them():
    from schemas.cohorts import Indicator

    features = _features([
        Indicator(name="arrears", department="housing", description="d", rule="in_rent_arrears"),
        Indicator(name="hb", department="benefits", description="d",
                  rule="benefit_type = 'Housing Benefit'"),
    ])
    linked = _linked(
        department=["housing", "housing", "benefits", "benefits", "housing"],
        row_number=[1, 2, 3, 4, 5],
        person_key=["p1", "p1", "p1", "p1", "p2"],
        in_rent_arrears=[False, True, None, None, False],  # housing: any
        household_size=[3, 5, None, None, 2],  # housing: max
        tenure=["Council", "Private rented", None, None, "Council"],  # housing: latest
        benefit_type=[None, None, "Council Tax Reduction", "Housing Benefit", None],
    )
    population, _, _ = build_population(linked, features)
    p1, p2 = population.sort("person_key").iter_rows(named=True)
    assert (p1["in_rent_arrears"], p1["household_size"], p1["tenure"]) == (
        True, 5, "Private rented")
    assert p1["arrears"] and p1["hb"] and p1["indicator_count"] == 2
    assert sorted(p1["indicators"]) == ["arrears", "hb"]
    assert p1["known_to_housing"] and p1["known_to_benefits"]
    # p2 is unknown to benefits: no benefit attribute, no benefit indicator, never null flags.
    assert p2["benefit_type"] is None and p2["hb"] is False and p2["indicator_count"] == 0
    assert p2["known_to_benefits"] is False


def test_indicator_problems_are_reported_together_before_any_data():
    import pytest

    from schemas.cohorts import Indicator
    from schemas.errors import ConfigError

    with pytest.raises(ConfigError, match="3 problem") as error:
        _features([
            Indicator(name="a", department="nowhere", description="d", rule="x"),
            Indicator(name="b", department="housing", description="d", rule="benefit_type"),
            Indicator(name="age", department="housing", description="d", rule="tenure = 'C'"),
        ])
    assert "nowhere" in str(error.value) and "benefit_type" in str(error.value)
