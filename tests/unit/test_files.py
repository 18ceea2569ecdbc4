"""The one atomic file writer (transforms/files.py) and the append-only delivery registry:
whole files or none, and concurrent writers (threads and processes) never collide."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from schemas.delivery import DeliveryOutcome
from transforms.files import (
    read_metadata,
    write_atomically,
    write_bytes_atomically,
    write_parquet,
)
from transforms.intake.registry import DeliveryRegistry

REPO = Path(__file__).resolve().parents[2]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_two_threads_writing_one_parquet_file_never_collide(tmp_path):
    target = tmp_path / "table.parquet"
    frames = [pl.DataFrame({"writer": [w] * 20_000, "i": range(20_000)}) for w in (0, 1)]
    start = threading.Barrier(3)
    errors: list[BaseException] = []
    seen: set[int] = set()
    stop = threading.Event()

    def writer(w: int) -> None:
        start.wait()
        try:
            for _ in range(25):
                write_parquet(frames[w], target, {"writer": w})
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    def reader() -> None:
        start.wait()
        while not stop.is_set():
            if target.exists():
                frame = pl.read_parquet(target)  # never half a file
                assert frame.equals(frames[frame["writer"][0]])
                seen.add(frame["writer"][0])

    threads = [threading.Thread(target=writer, args=(w,)) for w in (0, 1)]
    watcher = threading.Thread(target=reader)
    for t in [*threads, watcher]:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert errors == []
    final = pl.read_parquet(target)
    assert final.equals(frames[read_metadata(target)["writer"]])
    assert seen  # the reader did read while the writers wrote
    assert _leftovers(tmp_path) == []


_PROCESS_WRITER = """
import sys
from pathlib import Path
from transforms.files import write_bytes_atomically
target, payload = Path(sys.argv[1]), sys.argv[2].encode() * 400_000
print("ready", flush=True)
sys.stdin.readline()  # both start writing together
for _ in range(60):
    write_bytes_atomically(target, payload)
"""


def test_two_processes_writing_one_file_never_collide(tmp_path):
    target = tmp_path / "one.bin"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS_WRITER, str(target), letter],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        for letter in "ab"
    ]
    assert [w.stdout.readline() for w in writers] == ["ready\n", "ready\n"]
    for w in writers:
        w.stdin.write("go\n")
        w.stdin.flush()
    outcomes = [(w.wait(timeout=120), w.stderr.read()) for w in writers]
    assert outcomes == [(0, ""), (0, "")]
    assert target.read_bytes() in (b"a" * 400_000, b"b" * 400_000)
    assert _leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write_bytes_atomically(tmp_path / "report.json", b"old")

    def half_then_fail(temporary: Path) -> None:
        temporary.write_bytes(b"ne")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_requested_mode_applies_from_the_first_byte(tmp_path):
    seen = []
    target = write_atomically(
        tmp_path / "secret", lambda t: seen.append(t.stat().st_mode & 0o777), mode=0o600
    )
    assert seen == [0o600] and target.stat().st_mode & 0o777 == 0o600


def _outcome(i: int) -> DeliveryOutcome:
    return DeliveryOutcome(
        delivery_id=f"{i:064x}", department="housing", file_name=f"housing_{i}.ndjson",
        contract_id="urn:test", contract_version="1.0.0", extract_date=date(2026, 10, 30),
        status="accepted", rows_received=i, rows_accepted=i, rows_quarantined=0,
    )


_PROCESS_RECORDER = """
import sys
from datetime import date
from pathlib import Path
from schemas.delivery import DeliveryOutcome
from transforms.intake.registry import DeliveryRegistry
registry, first = DeliveryRegistry(Path(sys.argv[1])), int(sys.argv[2])
for i in range(first, first + 100):
    registry.record(DeliveryOutcome(
        delivery_id=f"{i:064x}", department="housing", file_name=f"housing_{i}.ndjson",
        contract_id="urn:test", contract_version="1.0.0", extract_date=date(2026, 10, 30),
        status="accepted", rows_received=i, rows_accepted=i, rows_quarantined=0))
"""


def test_registry_appends_from_threads_and_processes_lose_nothing(tmp_path):
    registry = DeliveryRegistry(tmp_path)
    processes = [
        subprocess.Popen([sys.executable, "-c", _PROCESS_RECORDER, str(tmp_path), str(first)],
                         cwd=REPO)
        for first in (1000, 2000)
    ]
    threads = [
        threading.Thread(target=lambda f=first: [registry.record(_outcome(i))
                                                 for i in range(f, f + 100)])
        for first in (0, 100)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=120) for p in processes] == [0, 0]
    ids = sorted(int(o.delivery_id, 16) for o in registry.all())
    assert ids == [*range(200), *range(1000, 1100), *range(2000, 2100)]
    assert sorted(p.name for p in (tmp_path / "audit").iterdir()) == ["deliveries.jsonl"]


def test_registry_ignores_a_torn_last_line_and_the_next_append_cuts_it(tmp_path):
    registry = DeliveryRegistry(tmp_path)
    registry.record(_outcome(1))
    whole = registry.path.read_bytes()
    # A writer died mid-line: the delivery was never recorded, so it must count as unseen.
    registry.path.write_bytes(whole + _outcome(2).model_dump_json().encode()[:40])
    assert [o.rows_received for o in registry.all()] == [1]
    assert not registry.is_processed(_outcome(2).delivery_id)
    registry.record(_outcome(3))
    assert [o.rows_received for o in registry.all()] == [1, 3]
    assert registry.path.read_bytes().count(b"\n") == 2
