"""A run that fails midway leaves nothing half-written, and the next run resumes cleanly."""

import shutil
from datetime import date
from pathlib import Path

import pytest

from schemas.errors import ConfigError
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
    cohorts = contracts / "cohorts.yaml"
    good = cohorts.read_text()
    # Break the cohort definitions: the run gets past ingest, pseudonymisation, linkage and
    # anonymisation, then stops at tabulation.
    cohorts.write_text(good.replace("tables:", "tablez:"))

    with pytest.raises(ConfigError, match="cohorts.yaml"):
        share_cohorts(root=str(root), contracts=str(contracts), demo=True)
    assert len(DeliveryRegistry(root).all()) == 5
    assert not (root / "staging").exists() or not any((root / "staging").iterdir())
    assert not (root / "published").exists()

    cohorts.write_text(good)
    release = share_cohorts(root=str(root), contracts=str(contracts), demo=True)

    assert len(DeliveryRegistry(root).all()) == 5  # nothing processed twice
    secure = sorted(p.parent.name for p in (root / "secure" / "pseudonymised").rglob("*.parquet"))
    assert secure == sorted(
        ["adult_social_care", "benefits", "childrens_services", "council_tax", "housing"]
    )
    assert [p.name for p in (root / "staging").iterdir()] == [release]
    assert not list(root.rglob("*.tmp"))
