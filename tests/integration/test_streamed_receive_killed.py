"""A delivery killed while its tokens stream to disk leaves no token file a run could link, and
receiving it again completes it, with nothing of the killed run left behind.

A child process receives a 120,000-row extract in 10,000-row chunks, writing tokens chunk by
chunk the way the flow does (`token_file`); it is sent SIGKILL as soon as its partial token file
holds a row group. The same command is then run to the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[2]
ROWS, CHUNK_ROWS = 120_000, 10_000
RECEIVE = f"""
import functools, sys
from datetime import date
from pathlib import Path
sys.path.insert(0, {str(REPO)!r})
from schemas.contract import load_contracts
from transforms.identity import load_geography, load_linkage_rules, token_file
from transforms.identity.keys import PseudonymisationKey
from transforms.intake import receive_delivery

root, path = Path(sys.argv[1]), Path(sys.argv[2])
contract = load_contracts(Path({str(REPO / "data_contracts")!r}))["adult_social_care"]
tokens_to = functools.partial(
    token_file, root, contract=contract, key=PseudonymisationKey(b"K" * 32, source="test"),
    geography=load_geography(),
    rules=load_linkage_rules(Path({str(REPO / "data_contracts" / "linkage.yaml")!r})),
    file_name=path.name,
)
received = receive_delivery(path, contract, root, date(2026, 11, 1), chunk_rows={CHUNK_ROWS},
                            accepted_to=tokens_to)
print(received.outcome.rows_accepted)
"""


def _extract(path: Path) -> None:
    numbers = range(1, ROWS + 1)
    pl.DataFrame({
        "Client ID": [f"C{n}" for n in numbers],
        "NHS Number": ["943 476 5919"] * ROWS,
        "Forename": ["Ann"] * ROWS,
        "Surname": [f"Smith{n}" for n in numbers],
        "Date of Birth": ["30/05/1941"] * ROWS,
        "Gender": ["Female"] * ROWS,
        "Ethnicity": ["A1"] * ROWS,
        "Postcode": ["ZZ1 2GU"] * ROWS,
        "Primary Support Reason": ["Physical Support"] * ROWS,
        "Service Type": ["Home care"] * ROWS,
        "Start Date": ["29/11/2022"] * ROWS,
    }).write_csv(path)


def _receive(root: Path, path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RECEIVE, str(root), str(path)], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_a_receive_killed_mid_stream_leaves_nothing_to_link_and_a_rerun_completes(tmp_path):
    path = tmp_path / "adult_social_care_20261031.csv"
    _extract(path)
    root = tmp_path / "root"
    tokens = root / "secure" / "pseudonymised" / "adult_social_care"

    child = _receive(root, path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        partial = list(tokens.glob(".*.tmp")) if tokens.is_dir() else []
        if partial and partial[0].stat().st_size > 1 << 16:  # a row group is on disk
            os.kill(child.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, "the receive ended before it could be killed"
    left = _files(tokens)
    assert left and all(name.startswith(".") and name.endswith(".tmp") for name in left)

    rerun = _receive(root, path)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    assert int(out.split()[-1]) == ROWS
    [written] = _files(tokens)  # the killed run's partial tokens are gone
    assert written.endswith(".parquet") and not written.startswith(".")
    assert pl.read_parquet(tokens / written)["row_number"].to_list() == list(range(1, ROWS + 1))
