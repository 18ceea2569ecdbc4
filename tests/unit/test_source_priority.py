"""The order in which departments' identity data is trusted comes from their contracts."""

from pathlib import Path

from schemas.contract import departments, load_contracts, source_priority
from transforms.identity.population import SOURCE_PRIORITY, person_features

REPO = Path(__file__).resolve().parents[2]


def test_contracts_declare_the_order_population_uses():
    contracts = departments(load_contracts(REPO / "data_contracts"))
    assert source_priority(contracts) == SOURCE_PRIORITY
    # ... and the population takes it from the contracts, not from the constant.
    assert person_features(contracts, None).priority == SOURCE_PRIORITY


def test_a_department_without_a_declared_priority_comes_last():
    contracts = departments(load_contracts(REPO / "data_contracts"))
    unranked = contracts["benefits"].model_copy(update={"identity_priority": None})
    order = source_priority({**contracts, "benefits": unranked})
    assert order[-1] == "benefits"
