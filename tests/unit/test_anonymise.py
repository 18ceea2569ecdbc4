"""The engine on hand-made tables: boundaries of k, the suppression limit, l, the report."""

import json

import polars as pl
import pytest

from schemas.errors import ConfigError, DisclosureError, HierarchyError
from transforms.disclosure.anonymise import anonymise
from transforms.disclosure.hierarchy import from_table

AGE = from_table("age", "age.csv", [[str(a), f"{a // 10 * 10}s", "*"] for a in range(20, 60)])
SEX = from_table("sex", "sex.csv", [["F", "*"], ["M", "*"]])
HIERARCHIES = {"age": AGE, "sex": SEX}


def table(pairs, diagnosis=None):
    data = {"age": [a for a, _ in pairs], "sex": [s for _, s in pairs]}
    if diagnosis is not None:
        data["diagnosis"] = diagnosis
    return pl.DataFrame(data)


# Three women aged 21, 22, 23 and three men aged 31, 32, 33.
SIX = table([(21, "F"), (22, "F"), (23, "F"), (31, "M"), (32, "M"), (33, "M")])


@pytest.mark.parametrize(("k", "levels"), [(1, (0, 0)), (2, (1, 0)), (3, (1, 0)), (4, (2, 1))])
def test_k_boundaries_choose_the_least_generalisation(k, levels):
    result = anonymise(SIX, ["age", "sex"], HIERARCHIES, k=k, max_suppression=0)
    assert (result.levels["age"], result.levels["sex"]) == levels
    assert result.k_achieved >= k
    assert result.suppressed == 0


def test_suppression_within_limit_is_preferred_when_cheaper():
    data = table([(21, "F")] * 5 + [(22, "F")] * 5 + [(45, "M")])
    strict = anonymise(data, ["age", "sex"], HIERARCHIES, k=2, max_suppression=0)
    loose = anonymise(data, ["age", "sex"], HIERARCHIES, k=2, max_suppression=0.1)
    assert strict.suppressed == 0 and strict.levels != {"age": 0, "sex": 0}
    assert loose.levels == {"age": 0, "sex": 0}
    assert loose.suppressed == 1
    assert loose.frame.height == 10
    assert loose.loss < strict.loss


def test_limit_just_below_one_record_forbids_suppression():
    data = table([(21, "F")] * 5 + [(45, "M")])
    result = anonymise(data, ["age", "sex"], HIERARCHIES, k=2, max_suppression=0.16)
    assert result.suppressed == 0  # 0.16 * 6 = 0.96 records: none may go


def test_output_replaces_quasi_identifiers_with_labels():
    result = anonymise(SIX, ["age", "sex"], HIERARCHIES, k=3, max_suppression=0)
    assert result.frame["age"].to_list() == ["20s"] * 3 + ["30s"] * 3
    assert result.frame["sex"].to_list() == ["F"] * 3 + ["M"] * 3


def test_distinct_l_diversity():
    data = table([(21, "F"), (22, "F"), (31, "F"), (32, "F")], diagnosis=["a", "a", "b", "c"])
    result = anonymise(
        data, ["age", "sex"], HIERARCHIES, k=2, max_suppression=0, l=2, sensitive="diagnosis"
    )
    assert result.levels["age"] == 2
    assert result.l_achieved == 3


def test_impossible_models_raise():
    data = table([(21, "F"), (22, "F")], diagnosis=["a", "a"])
    with pytest.raises(DisclosureError):
        anonymise(
            data, ["age", "sex"], HIERARCHIES, k=2, max_suppression=0, l=2, sensitive="diagnosis"
        )


def test_to_dict_is_json_and_carries_no_cell_values():
    data = table([(21, "F"), (22, "F"), (23, "F")], diagnosis=["Zeta", "Omega", "Sigma"])
    result = anonymise(
        data, ["age", "sex"], HIERARCHIES, k=2, max_suppression=0.5, l=2, sensitive="diagnosis"
    )
    text = json.dumps(result.to_dict())
    for value in ("Zeta", "Omega", "Sigma", '"20s"', '"F"'):
        assert value not in text
    summary = json.loads(text)
    assert {"levels", "loss", "suppressed", "k_achieved", "risk_before", "risk_after"} <= set(
        summary
    )
    assert summary["risk_before"]["sample_uniques"] == 3


def test_risk_before_and_after():
    result = anonymise(SIX, ["age", "sex"], HIERARCHIES, k=3, max_suppression=0)
    assert result.risk_before.sample_uniques == 6
    assert result.risk_before.prosecutor_max == 1.0
    assert result.risk_after.records_below_k == 0
    assert result.risk_after.prosecutor_max == pytest.approx(1 / 3)
    assert result.metrics["classes"] == 2


def test_journalist_risk_uses_the_population():
    population = pl.concat([SIX] * 4)
    result = anonymise(
        SIX, ["age", "sex"], HIERARCHIES, k=3, max_suppression=0, population=population
    )
    assert result.risk_after.journalist_max == pytest.approx(1 / 12)


def test_configuration_problems_are_reported_together():
    with pytest.raises(ConfigError) as err:
        anonymise(SIX, ["age", "postcode"], HIERARCHIES, k=2, max_suppression=2)
    assert "postcode" in str(err.value) and "max_suppression" in str(err.value)
    with pytest.raises(ConfigError, match="k must"):
        anonymise(SIX, ["age"], HIERARCHIES, k=0, max_suppression=0)
    with pytest.raises(HierarchyError, match="no hierarchy"):
        anonymise(
            SIX.with_columns(pl.col("sex").alias("x")), ["x"], HIERARCHIES, k=2, max_suppression=0
        )


def test_lazy_frames_and_integer_columns_are_accepted():
    result = anonymise(SIX.lazy(), ["age"], HIERARCHIES, k=3, max_suppression=0)
    assert result.levels == {"age": 1}
