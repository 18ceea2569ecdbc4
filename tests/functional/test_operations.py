"""What a data engineer relies on when a department's extract is unreadable or missing: the
other departments are still received, the failure names the department and file, and a
missing department stops the release (or, by policy, is flagged in its report)."""

import json
import shutil
from datetime import date
from pathlib import Path

import pytest

from schemas.errors import NoDataError
from transforms.intake import DeliveryRegistry

REPO = Path(__file__).resolve().parents[2]


def test_an_unreadable_department_stops_neither_the_others_nor_goes_unreported(
    prefect_harness, tmp_path, demo_home
):
    from flows.share_cohorts import share_cohorts
    from transforms.synthetic import generate_council

    root = tmp_path / "council"
    contracts = tmp_path / "data_contracts"
    shutil.copytree(REPO / "data_contracts", contracts)
    generate_council(root, 1500, seed=4, extract_date=date.today())
    housing = root / "landing" / "housing"
    shutil.rmtree(housing)
    housing.mkdir()
    (housing / "housing_20261127.ndjson").symlink_to(tmp_path / "gone.ndjson")

    # The dangling link is named and not ingested (issue 13); the others carry on, and housing,
    # never delivered, is flagged as missing (warn) in the release that is built.
    release = share_cohorts(root=str(root), contracts=str(contracts), demo=True)
    received = {o.department for o in DeliveryRegistry(root).all()}
    assert received == {
        "adult_social_care", "benefits", "childrens_services", "council_tax", "opt_out"
    }
    report = json.loads(
        (root / "reports" / release / "anonymisation_report.json").read_text(encoding="utf-8")
    )
    assert [i["path"] for i in report["not_ingested"]] == ["housing/housing_20261127.ndjson"]
    shutil.rmtree(root / "staging")

    # Housing never delivered: under `stale_departments: block` no release, and it says why.
    (housing / "housing_20261127.ndjson").unlink()
    policy = contracts / "disclosure_policy.yaml"
    policy.write_text(policy.read_text().replace("stale_departments: warn",
                                                 "stale_departments: block"))
    with pytest.raises(NoDataError, match="housing: no accepted delivery"):
        share_cohorts(root=str(root), contracts=str(contracts), demo=True)
    assert not (root / "staging").exists()

    # Under `stale_departments: warn` (the shipped policy) the release is built, and its report
    # flags housing.
    policy.write_text(policy.read_text().replace("stale_departments: block",
                                                 "stale_departments: warn"))
    release = share_cohorts(root=str(root), contracts=str(contracts), demo=True)
    report = json.loads((root / "reports" / release / "anonymisation_report.json").read_text())
    freshness = {f["department"]: f for f in report["freshness"]}
    assert freshness["housing"]["status"] == "missing"
    assert freshness["benefits"]["status"] == "fresh"
    assert freshness["benefits"]["extract_date"] == date.today().isoformat()
    assert len(DeliveryRegistry(root).all()) == 5  # nothing received twice (4 and the register)
