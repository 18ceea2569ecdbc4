"""A run that fails midway leaves nothing half-written, and the next run resumes cleanly."""

import shutil
from datetime import date
from pathlib import Path

import pytest

from schemas.errors import HierarchyError
from transforms.intake.registry import DeliveryRegistry

REPO = Path(__file__).resolve().parents[2]


def test_a_failed_run_resumes_without_reprocessing_or_duplicates(
    prefect_harness, tmp_path, demo_home
):
    from flows.share_cohorts import share_cohorts
    from transforms.synthetic import generate_council

    root = tmp_path / "council"
    contracts = tmp_path / "data_contracts"
    shutil.copytree(REPO / "data_contracts", contracts)
    generate_council(root, 2000, seed=3, extract_date=date.today())
    policy = contracts / "disclosure_policy.yaml"
    good = policy.read_text()
    # A quasi-identifier with no hierarchy: the run gets past ingest, pseudonymisation and
    # linkage, then stops when the anonymiser looks for the hierarchy.
    policy.write_text(good.replace("quasi_identifiers: [age, sex, ethnicity, lsoa]",
                                   "quasi_identifiers: [age, sex, ethnicity, lsoa, tenure]"))

    with pytest.raises(HierarchyError, match="tenure"):
        share_cohorts(root=str(root), contracts=str(contracts), demo=True)
    assert len(DeliveryRegistry(root).all()) == 6  # five departments and the opt-out register
    assert not (root / "staging").exists() or not any((root / "staging").iterdir())
    assert not (root / "published").exists()

    policy.write_text(good)
    release = share_cohorts(root=str(root), contracts=str(contracts), demo=True)

    assert len(DeliveryRegistry(root).all()) == 6  # nothing processed twice
    secure = sorted(p.parent.name for p in (root / "secure" / "pseudonymised").rglob("*.parquet"))
    assert secure == sorted(
        ["adult_social_care", "benefits", "childrens_services", "council_tax", "housing",
         "opt_out"]
    )
    assert [p.name for p in (root / "staging").iterdir()] == [release]
    assert not list(root.rglob("*.tmp"))
