"""The flow really calls every gate: a run under a policy with l-diversity, its stdout, stderr
and logs captured whole, then the staging task fed a table that breaks a gate."""

import json
import logging
import os
import shutil
import sys
import tempfile
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from flows.settings import Settings
from schemas.errors import ConfigError, DisclosureError
from tests.leaks import find_leaks, landing_identifiers
from transforms.release import catalogue
from transforms.synthetic import MARKER

REPO = Path(__file__).resolve().parents[2]
RESIDENTS = 2000


class _Everything(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def run(prefect_harness, tmp_path_factory):
    """One staged release (no approval) under an l-diverse policy; what the run wrote to fds 1
    and 2 and to every logger, as text."""
    from flows.share_cohorts import share_cohorts
    from transforms.synthetic import generate_council

    base = tmp_path_factory.mktemp("wiring")
    root, contracts = base / "council", base / "data_contracts"
    shutil.copytree(REPO / "data_contracts", contracts)
    policy = contracts / "disclosure_policy.yaml"
    # Ethnicity becomes the sensitive attribute: every class of (age, sex, area) must hold at
    # least two ethnic groups.
    text = policy.read_text().replace("[age, sex, ethnicity, lsoa]", "[age, sex, lsoa]")
    policy.write_text(text + "l_diversity: 2\nsensitive: ethnicity\n")
    generate_council(root, RESIDENTS, seed=21, extract_date=date.today(), invalid=0.01)
    handler = _Everything()
    logging.getLogger().addHandler(handler)
    captured = tempfile.TemporaryFile(mode="w+b")
    saved = [os.dup(1), os.dup(2)]
    sys.stdout.flush(), sys.stderr.flush()
    os.dup2(captured.fileno(), 1), os.dup2(captured.fileno(), 2)
    with pytest.MonkeyPatch.context() as mp:
        # Python-level writes too: pytest's own capture replaces sys.stdout and sys.stderr.
        stream = open(captured.fileno(), "w", closefd=False, buffering=1)  # noqa: SIM115
        mp.setattr(sys, "stdout", stream)
        mp.setattr(sys, "stderr", stream)
        home = base / "home"
        home.mkdir()
        mp.setenv("HOME", str(home))
        mp.setenv("XDG_CONFIG_HOME", str(home / ".config"))
        mp.delenv("COHORTSHARE_KEY", raising=False)
        try:
            release = share_cohorts(
                root=str(root), contracts=str(contracts), demo=True, wait_for_decision=False
            )
        finally:
            stream.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            logging.getLogger().removeHandler(handler)
    captured.seek(0)
    output = captured.read().decode("utf-8", "replace") + "\n".join(handler.lines)
    return root, contracts, release, output


def test_the_run_printed_and_logged_no_landing_value(run, tmp_path):
    root, contracts, _, output = run
    assert "received" in output  # the capture really saw the run's log lines
    values = landing_identifiers(root, contracts)
    assert len(values) > RESIDENTS / 2
    (tmp_path / "output.txt").write_text(output)
    assert find_leaks(values, [tmp_path]) == []


def test_the_run_checked_l_diversity_and_staged_a_sealed_release(run):
    root, _, release, _ = run
    report = json.loads((root / "reports" / release / "anonymisation_report.json").read_text())
    assert report["policy"]["l_diversity"] == 2
    assert report["checks"]["population_classes_below_l"] == 0
    assert report["checks"]["rows_checked"] > 0
    assert report["accounting"]["balanced"] is True
    assert report["status"] == "awaiting approval"
    assert {o["path"] for o in report["outputs"]} == {
        p.name for p in catalogue.staging_dir(root, release).iterdir()
    }
    assert report["built_by"]["os_user"]
    assert not catalogue.release_dir(root, release).exists()


def test_staging_runs_the_gates_on_what_it_tabulated(run, monkeypatch):
    """A tabulation bug that publishes a small count is stopped by the staging task's gate."""
    import flows.share_cohorts as wiring

    root, contracts, _, _ = run
    def publishing_first_cell(real, value):
        """`real`, with the first cell of its first table shown (not withheld) as `value`."""

        def corrupted(*args, **kwargs):
            protected = real(*args, **kwargs)
            name, frame = next(iter(protected.tables.items()))
            first = pl.int_range(pl.len()) == 0
            unit = next(c for c in ("people", "households") if c in frame.columns)
            protected.tables[name] = frame.with_columns(
                pl.when(first).then(value(pl.col(unit))).otherwise(pl.col(unit)).alias(unit),
                pl.when(first).then(False).otherwise(pl.col("withheld")).alias("withheld"),
            )
            return protected

        return corrupted

    publishes_a_three = publishing_first_cell(wiring.protect_release, lambda _: pl.lit(3))
    # Under cell-key perturbation a 3 may be a real published count: add one instead.
    publishes_one_more = publishing_first_cell(
        wiring.perturb_release, lambda count: count.fill_null(3) + 1
    )

    monkeypatch.setattr(wiring, "protect_release", publishes_a_three)
    monkeypatch.setattr(wiring, "perturb_release", publishes_one_more)
    settings = Settings(root=root, contracts=contracts, demo=True)
    # The independent audit recounts the cell and refuses it before anything is staged; under
    # cell-key perturbation (where a 3 may be published) the gate that re-derives every
    # perturbed count does.
    with pytest.raises(
        DisclosureError, match="can be derived from what is published|disagree|perturbation table"
    ):
        wiring.stage_candidate.fn(settings, "20990101T000000Z-broken", {"release_id": "x"})


def test_demo_approval_outside_demo_mode_is_refused(prefect_harness, tmp_path):
    from flows.share_cohorts import share_cohorts

    with pytest.raises(ConfigError, match="only in demo mode"):
        share_cohorts(root=str(tmp_path), demo=False, demo_approval=True)
    assert not (tmp_path / "staging").exists()


def test_demo_approval_refuses_extracts_the_generator_did_not_write(run, prefect_harness, tmp_path):
    from flows.share_cohorts import share_cohorts

    root, contracts, _, _ = run
    landing = tmp_path / "landing"
    shutil.copytree(root / "landing", landing)
    shutil.copy(root / MARKER, tmp_path / MARKER)  # the generator's signature, beside landing/
    [extract] = (landing / "housing").iterdir()
    extract.write_bytes(extract.read_bytes() + b"\n")  # a file the generator did not write
    with pytest.raises(ConfigError, match="1 file.* the synthetic generator did not write"):
        share_cohorts(root=str(tmp_path), contracts=str(contracts), demo=True, demo_approval=True)
    assert not (tmp_path / "staging").exists()
