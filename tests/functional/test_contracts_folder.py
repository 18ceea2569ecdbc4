"""`--contracts` names the folder every declarative input of a run comes from, the geography
lookup included (it once came from the repository's folder whatever the run was given)."""

import shutil
from datetime import date
from pathlib import Path

import pytest

from schemas.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_the_run_reads_the_geography_of_its_contracts_folder(prefect_harness, tmp_path, demo_home):
    from flows.share_cohorts import share_cohorts
    from transforms.synthetic import generate_council

    root = tmp_path / "council"
    contracts = tmp_path / "data_contracts"
    shutil.copytree(REPO / "data_contracts", contracts)
    geography = contracts / "reference" / "geography.csv"
    geography.write_text(geography.read_text(encoding="utf-8").splitlines()[0] + "\n")
    generate_council(root, 300, seed=3, extract_date=date.today())

    with pytest.raises(ConfigError, match=f"geography lookup is empty: {geography}"):
        share_cohorts(root=str(root), contracts=str(contracts), demo=True)
