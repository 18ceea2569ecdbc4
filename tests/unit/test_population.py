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
