"""The synthetic opt-out register: its contract, its formatting differences, its ground truth."""

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from schemas.contract import load_contracts
from schemas.transparency import load_transparency
from transforms.intake.validate import inspect_delivery
from transforms.synthetic import generate_council
from transforms.synthetic.opt_out import LAYOUT, PIPELINE_PURPOSE, SCOPES

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "data_contracts"
EXTRACT = dt.date(2026, 10, 31)


@pytest.fixture(scope="module")
def council(tmp_path_factory):
    root = tmp_path_factory.mktemp("register")
    summary = generate_council(root, 3000, seed=3, extract_date=EXTRACT)
    register = next((root / "landing" / "opt_out").glob("*.csv"))
    return root, summary, register


def test_the_register_is_the_contracts_layout_and_meets_it(council):
    root, summary, path = council
    contract = load_contracts(CONTRACTS)["opt_out"]
    assert [c.physical_name for c in contract.columns] == list(LAYOUT.values())
    received, _ = inspect_delivery(path, contract, EXTRACT)
    outcome = received.outcome
    assert outcome.status == "accepted" and outcome.rows_quarantined == 0
    assert outcome.rows_received == summary.objections >= 40


def test_scopes_are_the_declared_purposes(council):
    declared = load_transparency(CONTRACTS / "transparency.yaml")
    assert PIPELINE_PURPOSE == declared.purpose.code
    assert set(SCOPES) == set(declared.scopes())
    allowed = load_contracts(CONTRACTS)["opt_out"].column("scope").allowed_values
    assert set(allowed) == set(declared.scopes())


def test_objections_are_written_with_formatting_differences(council):
    _, _, path = council
    raw = pl.read_csv(path, infer_schema=False)
    nhs, ni = raw["NHS Number"].drop_nulls(), raw["NI Number"].drop_nulls()
    assert nhs.str.contains(" ").any() and (~nhs.str.contains(" ")).any()
    assert ni.str.contains(" ").any() and ni.str.contains("[a-z]").any()
    names = raw["Last Name"]
    assert (names == names.str.to_uppercase()).any() and (names == names.str.to_lowercase()).any()
    postcodes = raw["Postcode"]
    assert (~postcodes.str.contains(" ")).any() and postcodes.str.contains("[a-z]").any()


def test_the_ground_truth_names_each_objector_and_whether_it_applies(council):
    root, _, path = council
    truth = pl.read_parquet(root / "synthetic_truth" / "opt_out.parquet")
    raw = pl.read_csv(path, infer_schema=False)
    assert truth["record_id"].to_list() == raw["Objection Ref"].to_list()
    residents = pl.read_parquet(root / "synthetic_truth" / "residents.parquet")
    assert truth["resident_id"].is_in(residents["resident_id"].implode()).all()
    assert truth["resident_id"].is_unique().all()
    expected = truth["scope"].is_in(["all", PIPELINE_PURPOSE]) & (
        truth["objection_date"] <= EXTRACT
    )
    assert truth["applies"].to_list() == expected.to_list()
    assert truth["applies"].any() and not truth["applies"].all()
    assert (truth["objection_date"] > EXTRACT).any()  # some apply only later

