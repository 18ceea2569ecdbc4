"""The data-root lock: one holder at a time, released by the kernel however the holder ends."""

import subprocess
import sys
import time

import pytest

from schemas.errors import BusyError
from transforms.root_lock import root_lock

HOLD = """
import sys, time
from transforms.root_lock import root_lock
with root_lock(sys.argv[1], "test run"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_holder_is_refused_naming_the_first_then_admitted_after_a_kill(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BusyError, match="test run"):
            with root_lock(tmp_path, "approve"):
                pass
    finally:
        holder.kill()  # SIGKILL: no cleanup code runs, the kernel drops the lock
        holder.wait()
    started = time.monotonic()
    with root_lock(tmp_path, "approve", wait_seconds=5):
        assert time.monotonic() - started < 5


def test_waiting_holder_gets_the_lock_when_it_is_released(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD.replace("60", "1"), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with root_lock(tmp_path, "approve", wait_seconds=10):
        assert holder.wait(timeout=5) == 0
