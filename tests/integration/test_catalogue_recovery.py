"""A publish or withdrawal stopped at any step is completed by running it again.

The stop is made by failing the next step for real (the catalogue swap, the folder move), as a
crash there would leave things; the release helper's SIGKILL tests cover the whole command."""

import polars as pl
import pytest

from tests.integration.demo_catalogue import APPROVAL, CONTRACTS
from transforms.release import catalogue

FIRST, SECOND = "20260101T000000Z-aaaaaa", "20260201T000000Z-bbbbbb"


class Crash(Exception):
    pass


def _stage(root, release_id, people):
    frame = pl.DataFrame({"area": ["a"], "people": [people]})
    catalogue.stage_release(root, release_id, {"cohort_by_area": frame}, {})


def _latest(root) -> list[tuple]:
    path = root / "published" / catalogue.CATALOGUE_FILE
    return catalogue.query_catalogue(
        path, "SELECT release_id, people FROM latest.cohort_by_area"
    ).rows()


def _crash(*_args, **_kwargs):
    raise Crash


def test_publish_stopped_before_the_catalogue_swap_is_completed_by_a_rerun(tmp_path, monkeypatch):
    _stage(tmp_path, FIRST, 10)
    catalogue.publish_release(tmp_path, FIRST, APPROVAL, CONTRACTS)
    _stage(tmp_path, SECOND, 20)
    with monkeypatch.context() as patch:
        patch.setattr(catalogue, "rebuild_catalogue", _crash)
        with pytest.raises(Crash):
            catalogue.publish_release(tmp_path, SECOND, APPROVAL, CONTRACTS)
    # The files are in place, but analysts still see the previous release, whole.
    assert catalogue.release_dir(tmp_path, SECOND).is_dir()
    assert _latest(tmp_path) == [(FIRST, 10)]
    catalogue.publish_release(tmp_path, SECOND, APPROVAL, CONTRACTS)
    assert _latest(tmp_path) == [(SECOND, 20)]


def test_withdrawal_stopped_at_any_step_is_completed_by_a_rerun(tmp_path, monkeypatch):
    _stage(tmp_path, FIRST, 10)
    catalogue.publish_release(tmp_path, FIRST, APPROVAL, CONTRACTS)
    _stage(tmp_path, SECOND, 20)
    catalogue.publish_release(tmp_path, SECOND, APPROVAL, CONTRACTS)

    # Stopped after the decision is written, before the catalogue swap: nothing has changed yet
    # for analysts.
    with monkeypatch.context() as patch:
        patch.setattr(catalogue, "rebuild_catalogue", _crash)
        with pytest.raises(Crash):
            catalogue.withdraw_release(tmp_path, SECOND, "A. Officer", "wrong policy")
    assert _latest(tmp_path) == [(SECOND, 20)]

    # Stopped after the swap, before the files move: the catalogue already no longer shows it.
    with monkeypatch.context() as patch:
        patch.setattr(catalogue.os, "replace", _fail_folder_moves(catalogue.os.replace))
        with pytest.raises(Crash):
            catalogue.withdraw_release(tmp_path, SECOND, "A. Officer", "wrong policy")
    assert _latest(tmp_path) == [(FIRST, 10)]
    assert catalogue.release_dir(tmp_path, SECOND).is_dir()

    catalogue.withdraw_release(tmp_path, SECOND, "A. Officer", "wrong policy")
    assert _latest(tmp_path) == [(FIRST, 10)]
    assert not catalogue.release_dir(tmp_path, SECOND).exists()
    assert catalogue.withdrawn_dir(tmp_path, SECOND).is_dir()
    path = tmp_path / "published" / catalogue.CATALOGUE_FILE
    assert catalogue.query_catalogue(
        path, "SELECT withdrawn_by, withdrawal_reason FROM releases WHERE status = 'withdrawn'"
    ).rows() == [("A. Officer", "wrong policy")]


def _fail_folder_moves(replace):
    """os.replace that still swaps catalogue files but fails when a release folder moves."""

    def patched(source, target):
        if "withdrawn" in str(target):
            raise Crash
        return replace(source, target)

    return patched
