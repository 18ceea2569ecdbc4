"""Where a run reads and writes: the data root, the contracts folder, and whether it is a demo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    root: Path
    contracts: Path
    demo: bool = False


ROOT_ENV_VAR = "COHORTSHARE_ROOT"
CONTRACTS_ENV_VAR = "COHORTSHARE_CONTRACTS"


def settings_where_running(root: str | None = None, contracts: str | None = None) -> Settings:
    """Settings of a deployed run, read on the machine that runs it (the worker), not where it
    was deployed: `prefect deploy` resolves `{{ $VAR }}` in prefect.yaml on the deploying
    machine, so the data root comes from the worker's `COHORTSHARE_ROOT` here instead. The
    contracts default to the code checkout's own (the pull step's working directory)."""
    import os

    root_path = Path(root or os.environ.get(ROOT_ENV_VAR) or "data")
    contracts_path = Path(contracts or os.environ.get(CONTRACTS_ENV_VAR) or "data_contracts")
    return Settings(root=root_path.resolve(), contracts=contracts_path.resolve(), demo=False)
