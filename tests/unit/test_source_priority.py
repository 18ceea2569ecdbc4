"""The order in which departments' identity data is trusted comes from their contracts."""

from pathlib import Path

from schemas.contract import load_contracts, source_priority
from transforms.identity.population import SOURCE_PRIORITY

REPO = Path(__file__).resolve().parents[2]


def test_contracts_declare_the_order_population_uses():
    assert source_priority(load_contracts(REPO / "data_contracts")) == SOURCE_PRIORITY


def test_a_department_without_a_declared_priority_comes_last():
    contracts = load_contracts(REPO / "data_contracts")
    unranked = contracts["benefits"].model_copy(update={"identity_priority": None})
    order = source_priority({**contracts, "benefits": unranked})
    assert order[-1] == "benefits"
