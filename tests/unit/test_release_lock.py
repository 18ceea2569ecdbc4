"""Staging, decisions and key rotation share the data root's one lock: while another operation
holds it, each refuses with a clear one-line message (after its wait) instead of interleaving."""

from pathlib import Path

import pytest

from schemas.errors import BusyError
from transforms.root_lock import root_lock

REPO = Path(__file__).resolve().parents[2]


def test_a_decision_refuses_while_a_run_holds_the_lock(tmp_path):
    from flows.approval import decide, withdraw

    with root_lock(tmp_path, "release build"):
        with pytest.raises(BusyError, match="release build.*approve r1 not started"):
            decide(tmp_path, "r1", name="A", role="IG", decision="approve", lock_wait=0)
        with pytest.raises(BusyError, match="withdraw r1 not started"):
            withdraw(tmp_path, "r1", name="A", role="IG", reason="x", lock_wait=0)


def test_key_rotation_refuses_while_a_decision_holds_the_lock(tmp_path, monkeypatch):
    import flows.keys_command as keys

    monkeypatch.setattr(keys, "ROTATION_LOCK_WAIT_SECONDS", 0)
    with root_lock(tmp_path, "approve r1"):
        with pytest.raises(BusyError, match="approve r1.*key rotation not started"):
            keys.rotate_key(tmp_path, REPO / "data_contracts", demo=True)
