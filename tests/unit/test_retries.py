"""A delivery is retried after an I/O error only: a bug or a bad file would fail the same way
again, and each retry of a large extract costs minutes."""

import pytest
from prefect.states import Failed

from flows.guard import guarded
from flows.share_cohorts import _retry_after_io_error


def _failure(function) -> Exception:
    with pytest.raises(Exception) as raised:
        guarded(function)()
    return raised.value


def test_io_errors_are_retried_and_named_by_type_only(tmp_path):
    error = _failure(lambda: (tmp_path / "gone.csv").read_bytes())
    assert _retry_after_io_error(None, None, Failed(data=error))
    assert error.cause == "FileNotFoundError" and "gone.csv" not in str(error)


def test_other_errors_are_not_retried():
    assert not _retry_after_io_error(None, None, Failed(data=_failure(lambda: 1 / 0)))
