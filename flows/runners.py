"""Where a run's tasks execute: threads on this machine by default, or a Dask cluster.

Departments are received concurrently. Polars and PyArrow release the GIL in their kernels, so
threads use the cores without copying frames between processes. `COHORTSHARE_DASK_ADDRESS`
sends tasks to a Dask cluster instead (`prefect-dask`): a scheduler address such as
`tcp://10.0.0.5:8786`, or `local` for a cluster of processes on this machine. Dask workers
must see the same data root (a shared file system) and have the key available as the flow
does (Secret block, environment or key file).
"""

from __future__ import annotations

import os

from prefect.task_runners import ThreadPoolTaskRunner

DASK_ENV_VAR = "COHORTSHARE_DASK_ADDRESS"
WORKERS_ENV_VAR = "COHORTSHARE_WORKERS"


def thread_workers() -> int:
    """Threads for department tasks: one per department, at most the machine's cores (each
    department's frames are in memory while it is received)."""
    configured = os.environ.get(WORKERS_ENV_VAR)
    return int(configured) if configured else max(1, min(5, os.cpu_count() or 1))


def dask_task_runner(address: str, processes: bool = True):
    """A Prefect task runner on Dask: `local` starts a cluster of worker processes here
    (`processes=False`: one worker process's threads, for tests)."""
    from prefect_dask import DaskTaskRunner

    if address == "local":
        workers = thread_workers() if processes else 1
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": workers,
                "threads_per_worker": 1 if processes else thread_workers(),
                "processes": processes,
            }
        )
    return DaskTaskRunner(address=address)


def task_runner_from_environment():
    address = os.environ.get(DASK_ENV_VAR)
    if address:
        return dask_task_runner(address)
    return ThreadPoolTaskRunner(max_workers=thread_workers())
