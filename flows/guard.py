"""Keep failures readable and free of data values, in our own output and in Prefect's logs.

Library exceptions (Polars, PyArrow, GX) often quote the cell value that broke them. A task
wrapped in `guarded` turns any exception that is not ours into a `PipelineError` that names the
stage and the exception type only; and the log filter drops tracebacks of user errors, whose
one-line message already says everything (docs/architecture.md, privacy property 1).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any

from schemas.errors import CohortShareError, PipelineError

PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.engine")


def guarded(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except CohortShareError:
            raise
        except BaseException as error:
            if not is_failure(error):
                raise
            failure = PipelineError(
                f"stage '{function.__name__}' failed with {type(error).__name__} "
                "(details withheld: library messages may quote data values; set "
                "COHORTSHARE_DEBUG=1 on a restricted machine and re-run to see them)"
            )
            # The type (never the message) names the failure in summaries; I/O errors (a file
            # share that blinks, a full disk) may pass on a retry.
            failure.cause = type(error).__name__
            failure.transient = isinstance(error, OSError)
            raise failure from (error if _debug() else None)

    return run


def is_failure(error: BaseException) -> bool:
    """An exception, or a Rust panic in a native library (pyo3's PanicException derives from
    BaseException, so `except Exception` misses it); not an interrupt or an exit."""
    return isinstance(error, Exception) or type(error).__name__ == "PanicException"


def _debug() -> bool:
    return os.environ.get("COHORTSHARE_DEBUG") == "1"


class _DropUserErrorTracebacks(logging.Filter):
    """Our errors' one-line messages already say everything (a `PipelineError`'s traceback
    shows only this module, its cause being withheld), and Prefect logs a failure once per
    task, once per flow and once per engine: without this each error printed three tracebacks.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.exc_info
            and isinstance(record.exc_info[1], CohortShareError)
            and not _debug()
        ):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_user_error_tracebacks() -> None:
    """Install the filter on Prefect's run loggers (idempotent)."""
    for name in PREFECT_RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropUserErrorTracebacks) for f in logger.filters):
            logger.addFilter(_DropUserErrorTracebacks())
