"""Failures are reported without the data values that library messages tend to quote."""

import logging

import pytest

from flows.guard import _DropUserErrorTracebacks, guarded
from schemas.errors import DeliveryRejected, PipelineError

SENTINEL = "Zebedee-943-476-5919"


def test_unexpected_errors_name_the_stage_and_type_but_not_the_value():
    @guarded
    def pseudonymise_stage():
        raise ValueError(f"could not parse {SENTINEL!r}")

    with pytest.raises(PipelineError) as error:
        pseudonymise_stage()
    assert "pseudonymise_stage" in str(error.value) and "ValueError" in str(error.value)
    assert SENTINEL not in str(error.value)
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_our_own_errors_pass_through_unchanged():
    @guarded
    def stage():
        raise DeliveryRejected("x.csv: missing_column: column 'surname' (1 column)")

    with pytest.raises(DeliveryRejected, match="missing_column"):
        stage()


def test_user_error_tracebacks_are_dropped_from_run_logs():
    try:
        raise DeliveryRejected("x.csv: rule")
    except DeliveryRejected:
        import sys

        record = logging.LogRecord(
            "prefect.task_runs", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    assert _DropUserErrorTracebacks().filter(record) is True
    assert record.exc_info is None
