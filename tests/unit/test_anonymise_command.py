"""`cohortshare anonymise` as a plain function: arguments in, one JSON object out."""

import argparse
import json
from pathlib import Path

import polars as pl
import pytest

from flows.anonymise_command import add_parser
from schemas.errors import ConfigError, HierarchyError


def parse(argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["anonymise", *argv])


@pytest.fixture
def files(tmp_path):
    pl.DataFrame({"age": ["21", "22", "23", "31", "32", "33"], "sex": list("FFFMMM")}).write_csv(
        tmp_path / "in.csv", separator=";"
    )
    folder = tmp_path / "h"
    folder.mkdir()
    (folder / "age.csv").write_text("".join(f"{a};{a // 10 * 10}s;*\n" for a in range(20, 40)))
    (folder / "sex.csv").write_text("F;*\nM;*\n")
    return tmp_path


def test_json_output_and_parquet(files, capsys):
    args = parse(
        [
            str(files / "in.csv"),
            "--hierarchies",
            str(files / "h"),
            "--qi",
            "age,sex",
            "--k",
            "3",
            "--max-suppression",
            "0%",
            "--sep",
            ";",
            "--output",
            str(files / "out.parquet"),
            "--json",
        ]
    )
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["levels"] == {"age": 1, "sex": 0}
    assert summary["suppressed"] == 0 and summary["k_achieved"] == 3
    assert {"loss", "seconds"} <= set(summary)
    assert pl.read_parquet(files / "out.parquet")["age"].to_list() == ["20s"] * 3 + ["30s"] * 3


def test_user_errors_are_schemas_errors(files):
    args = parse(
        [
            str(files / "missing.csv"),
            "--hierarchies",
            str(files / "h"),
            "--qi",
            "age",
            "--k",
            "2",
            "--max-suppression",
            "0.01",
        ]
    )
    with pytest.raises(ConfigError):
        args.func(args)
    args = parse(
        [
            str(files / "in.csv"),
            "--hierarchies",
            str(files / "h"),
            "--qi",
            "postcode",
            "--k",
            "2",
            "--max-suppression",
            "0.01",
            "--sep",
            ";",
        ]
    )
    with pytest.raises(HierarchyError):
        args.func(args)


def test_suppression_share_accepts_percent():
    assert parse(
        ["x.csv", "--hierarchies", "h", "--qi", "a", "--k", "2", "--max-suppression", "1%"]
    ).max_suppression == pytest.approx(0.01)
    with pytest.raises(SystemExit):
        parse(["x.csv", "--hierarchies", "h", "--qi", "a", "--k", "2", "--max-suppression", "2"])


def test_help_mentions_the_command():
    assert Path(__file__).name.startswith("test_anonymise")


def test_parquet_input_is_streamed_to_the_output(files, capsys):
    pl.read_csv(files / "in.csv", separator=";", infer_schema=False).write_parquet(
        files / "in.parquet"
    )
    args = parse(
        [
            str(files / "in.parquet"),
            "--hierarchies",
            str(files / "h"),
            "--qi",
            "age,sex",
            "--k",
            "3",
            "--max-suppression",
            "0",
            "--output",
            str(files / "out.parquet"),
            "--json",
        ]
    )
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["output_rows"] == 6
    assert pl.read_parquet(files / "out.parquet")["age"].to_list() == ["20s"] * 3 + ["30s"] * 3
    assert "output" in summary["phases"]
