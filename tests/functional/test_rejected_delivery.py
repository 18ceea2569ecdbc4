"""A broken delivery is rejected whole, named in the report, and the other departments carry on."""

import json
from datetime import date
from pathlib import Path

from schemas.contract import load_contracts
from transforms.intake.registry import DeliveryRegistry

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "data_contracts"


def test_missing_required_column_rejects_only_that_delivery(prefect_harness, tmp_path, demo_home):
    from flows.share_cohorts import share_cohorts
    from transforms.synthetic import generate_council

    generate_council(tmp_path, 3000, seed=5, extract_date=date.today())
    contract = load_contracts(CONTRACTS)["council_tax"]
    [extract] = (tmp_path / "landing" / "council_tax").glob("*.csv")
    text = extract.read_bytes().decode(contract.encoding)
    header, body = text.split("\r\n", 1)
    extract.write_bytes(
        ("\r\n".join([header.replace("Surname", "Family Name"), body])).encode(contract.encoding)
    )

    release = share_cohorts(root=str(tmp_path), contracts=str(CONTRACTS), demo=True)

    report = json.loads((tmp_path / "reports" / release / "anonymisation_report.json").read_text())
    statuses = {d["department"]: d["status"] for d in report["deliveries"]}
    assert statuses == {
        "adult_social_care": "accepted",
        "benefits": "accepted",
        "childrens_services": "accepted",
        "council_tax": "rejected",
        "housing": "accepted",
    }
    [rejected] = [d for d in report["deliveries"] if d["status"] == "rejected"]
    assert extract.name in rejected["rejection"] and "surname" in rejected["rejection"]
    assert report["accounting"]["balanced"] is True
    assert report["linkage"]["records_by_department"].get("council_tax", 0) == 0
    registry = {o.department: o.status for o in DeliveryRegistry(tmp_path).all()}
    assert registry["council_tax"] == "rejected"
