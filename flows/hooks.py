"""Flow state hooks: a failed or crashed run says, in one log line, which flow, which department
and why, so the operator on call knows where to look without opening a traceback.

The reason is the run's final state message: our errors name the stage, department and file
and never a value (flows/guard.py); a crash (the process killed, out of memory) names only the
kind of crash.
"""

from __future__ import annotations

import logging

from prefect.logging.loggers import flow_run_logger


def report_failure(flow, flow_run, state) -> None:
    department = (flow_run.parameters or {}).get("department")
    where = f" for department {department}" if department else " for every department"
    try:
        logger = flow_run_logger(flow_run, flow)
    except Exception:  # noqa: BLE001 - a hook must never mask the failure it reports
        logger = logging.getLogger("cohortshare")
    logger.error(
        "run %s of flow %s%s ended %s: %s",
        flow_run.name,
        flow.name,
        where,
        state.name,
        (state.message or "no message").splitlines()[0],
    )
