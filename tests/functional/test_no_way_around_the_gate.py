"""The two ways around the gate the issue found are closed: analysts' SQL cannot read files
outside the published folder, and the demo never auto-approves extracts it did not generate."""

from pathlib import Path

from flows.approval import decide
from tests.release.staged import stage

RELEASE = "20260101T000000Z-aaaaaa"


def cli(root: Path, capsys, *args: str) -> tuple[int, str, str]:
    from flows.cli import main

    capsys.readouterr()
    code = main([*args, "--root", str(root)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_query_cannot_read_a_landing_file(tmp_path, capsys, monkeypatch):
    stage(tmp_path, RELEASE)
    monkeypatch.setenv("LOGNAME", "officer")
    decide(tmp_path, RELEASE, name="A", role="IG", decision="approve")
    extract = tmp_path / "landing" / "housing" / "housing_20261127.csv"
    extract.parent.mkdir(parents=True)
    extract.write_text("nhs_number,surname\n9434765919,Example\n")

    code, out, _ = cli(tmp_path, capsys, "query", "SELECT sum(people) AS n FROM cohort_by_area")
    assert code == 0 and "27" in out  # the catalogue itself still answers
    for sql in (
        f"SELECT * FROM read_csv('{extract}')",
        "SELECT * FROM read_csv('landing/housing/housing_20261127.csv')",
        f"SELECT * FROM read_text('{extract}')",
    ):
        code, out, err = cli(tmp_path, capsys, "query", sql)
        assert code == 8 and err.startswith("ReleaseError: query failed"), sql
        assert "9434765919" not in out + err
    code, _, err = cli(tmp_path, capsys, "query", "SET enable_external_access = true")
    assert code == 8 and "locked" in err


def test_demo_refuses_a_landing_folder_it_did_not_generate(tmp_path, capsys):
    extract = tmp_path / "landing" / "housing" / "housing_20261127.csv"
    extract.parent.mkdir(parents=True)
    extract.write_text("a real extract\n")
    code, _, err = cli(tmp_path, capsys, "demo")
    assert code == 2 and err.startswith("UserError:") and "did not generate" in err
    assert not (tmp_path / "staging").exists() and not (tmp_path / "published").exists()
