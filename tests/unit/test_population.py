import polars as pl

from schemas.cohorts import Indicator
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


def test_an_attribute_is_read_from_its_own_department_records_only():
    # Benefits also sends a `tenure` column of its own; housing declares `tenure` (latest) and
    # `in_rent_arrears` (any). p1 is known to benefits alone, p2 to both.
    features = _features([
        Indicator(name="arrears", department="housing", description="d", rule="in_rent_arrears"),
    ])
    linked = _linked(
        department=["benefits", "benefits", "housing"],
        row_number=[1, 2, 3],
        person_key=["p1", "p2", "p2"],
        tenure=["Owner", "Owner", "Council"],
        in_rent_arrears=[True, True, False],
    )
    population, _, _ = build_population(linked, features)
    p1, p2 = population.sort("person_key").iter_rows(named=True)
    assert (p1["tenure"], p1["in_rent_arrears"], p1["arrears"]) == (None, None, False)
    assert (p2["tenure"], p2["in_rent_arrears"], p2["arrears"]) == ("Council", False, False)


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


def test_linkage_keys_built_as_numbers_give_the_population_built_on_the_text(monkeypatch):
    """Keys of linkage's form are sorted, grouped and joined as 128-bit numbers: the same
    people, values and order as when built on the text."""
    import hashlib

    from transforms.identity import population

    keys = ["p-" + hashlib.sha256(str(i).encode()).hexdigest()[:24] for i in range(60)]
    n = len(keys) * 2
    linked = _linked(
        department=["benefits", "housing"] * len(keys),
        row_number=list(range(n)),
        person_key=[k for k in keys for _ in range(2)],
        household_key=[f"h{i % 7}" for i in range(n)],
        age=[30 + i % 50 for i in range(n)],
        lsoa=[None if i % 9 == 0 else f"L{i % 3}" for i in range(n)],
    )
    # Housing's arrears from its records; council tax's discount from none (an empty frame).
    features = population.PersonFeatures(
        departments=("benefits", "council_tax", "housing"),
        attributes=(population.Attribute("housing", "in_rent_arrears", "any", pl.Boolean),),
        indicators=(
            Indicator(name="arrears", department="housing", description="-",
                      rule="in_rent_arrears"),
            Indicator(name="discount", department="council_tax", description="-",
                      rule="band = 'A'"),
        ),
    )
    linked = linked.with_columns(in_rent_arrears=pl.int_range(n) % 4 == 1)  # housing rows
    assert population._key_numbers(linked["person_key"]) is not None
    numbered = build_population(linked, features, removed=pl.Series(keys[:5]), partitions=3)
    monkeypatch.setattr(population, "_key_numbers", lambda keys: None)
    as_text = build_population(linked, features, removed=pl.Series(keys[:5]), partitions=3)
    assert numbered[0]["arrears"].any() and not numbered[0]["discount"].any()
    assert numbered[0].equals(as_text[0]) and numbered[1].equals(as_text[1])
    assert numbered[0]["person_key"].to_list() == sorted(numbered[0]["person_key"].to_list())


def test_keys_differing_only_in_case_stay_two_people():
    from transforms.identity import population

    keys = ["p-" + "a" * 24, "p-" + "A" * 24]
    assert population._key_numbers(pl.Series(keys)) is None
    linked = _linked(department=["benefits", "housing"], row_number=[1, 2], person_key=keys)
    assert build_population(linked)[2].people == 2


def test_records_are_split_by_person_and_given_up_as_residents_are_built():
    """Every record of a person in one partition, opt-outs' in none; `residents_of` takes the
    partitions out, so the flow holds no record once its residents are built."""
    from transforms.identity.population import residents_of, split_records

    keys = [f"p{i:03d}" for i in range(40)]
    linked = _linked(
        department=["benefits", "housing"] * len(keys),
        row_number=list(range(2 * len(keys))),
        person_key=[k for k in keys for _ in range(2)],
    )
    for parts in (1, 4):
        records = split_records(linked, parts, removed=pl.Series(keys[:3]))
        assert len(records.partitions) == parts and records.records == 2 * 37
        if parts > 1:
            held = [set(p["person_key"]) for p in records.partitions]
            assert sum(len(h) for h in held) == 37 and set().union(*held) == set(keys[3:])
        residents = residents_of(records)
        assert records.partitions == []
        assert sum(p.height for p in residents.partitions) == 37
