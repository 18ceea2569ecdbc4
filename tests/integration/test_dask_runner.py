"""Departments on Dask: the flow runs its department tasks on a local Dask cluster (the real
distributed scheduler and worker, in this process to keep the test short; `cohortshare run
--dask local` starts worker processes) and stages a release."""

from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_flow_receives_departments_on_a_local_dask_cluster(
    prefect_harness, tmp_path, demo_home, monkeypatch
):
    from flows.runners import dask_task_runner
    from flows.share_cohorts import share_cohorts
    from transforms.intake import DeliveryRegistry
    from transforms.synthetic import generate_council

    root = tmp_path / "council"
    generate_council(root, 800, seed=2, extract_date=date.today())
    monkeypatch.setenv("COHORTSHARE_WORKERS", "2")
    on_dask = share_cohorts.with_options(task_runner=dask_task_runner("local", processes=False))
    assert type(on_dask.task_runner).__name__ == "DaskTaskRunner"

    release = on_dask(root=str(root), contracts=str(REPO / "data_contracts"), demo=True)

    assert len(DeliveryRegistry(root).all()) == 6  # five departments and the opt-out register
    assert (root / "staging" / release).is_dir()
