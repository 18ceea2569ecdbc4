"""Key custody: the key never shows itself, sources resolve in order, bad keys stop the run."""

import hashlib
import hmac
import os
import pickle
from pathlib import Path

import pytest

from flows import key_source
from flows.key_source import resolve_key
from schemas.errors import KeyCustodyError
from transforms.identity.keys import (
    MIN_KEY_BYTES,
    PseudonymisationKey,
    check_key_file,
    generate_key,
    parse_key_text,
    read_key_file,
    write_key_file,
)

SECRET = bytes(range(32))


@pytest.fixture
def no_block(monkeypatch, demo_home):
    """No Prefect Secret block, no env key, an empty config directory."""
    monkeypatch.setenv(key_source.SKIP_BLOCK_ENV_VAR, "1")
    monkeypatch.delenv("COHORTSHARE_KEY_FILE", raising=False)
    return demo_home


def test_key_id_is_a_one_way_fingerprint_and_never_the_key():
    key = PseudonymisationKey(SECRET, source="test")
    expected = hmac.new(SECRET, b"cohortshare key id", hashlib.sha256).hexdigest()[:16]
    assert key.key_id == "k-" + expected
    for shown in (repr(key), str(key), f"{key}"):
        assert SECRET.hex() not in shown and key.key_id in shown


def test_key_refuses_to_be_pickled():
    with pytest.raises(TypeError):
        pickle.dumps(PseudonymisationKey(SECRET))


@pytest.mark.parametrize("length", [0, 16, MIN_KEY_BYTES - 1])
def test_short_keys_are_refused(length):
    with pytest.raises(KeyCustodyError, match="too short"):
        PseudonymisationKey(b"x" * length)


def test_subkeys_differ_per_purpose_and_name():
    key = PseudonymisationKey(SECRET)
    subkeys = {key.subkey(p, n) for p in ("linkage", "household") for n in ("nhs_number", "uprn")}
    assert len(subkeys) == 4


def test_parse_accepts_hex_and_base64_and_rejects_noise():
    import base64

    assert parse_key_text(SECRET.hex(), "t") == PseudonymisationKey(SECRET)
    assert parse_key_text(base64.b64encode(SECRET).decode(), "t") == PseudonymisationKey(SECRET)
    with pytest.raises(KeyCustodyError) as caught:
        parse_key_text("not a key at all !!", "t")
    assert "not a key" not in str(caught.value)


def test_key_file_round_trip_is_owner_only(tmp_path):
    path = tmp_path / "k" / "pseudonymisation.key"
    key = generate_key()
    write_key_file(path, key)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert read_key_file(path) == key
    with pytest.raises(KeyCustodyError, match="already exists"):
        write_key_file(path, generate_key())


def test_group_readable_key_file_is_refused_without_showing_the_key(tmp_path):
    path = tmp_path / "pseudonymisation.key"
    write_key_file(path, PseudonymisationKey(SECRET))
    os.chmod(path, 0o640)
    with pytest.raises(KeyCustodyError, match="chmod 600") as caught:
        read_key_file(path)
    assert SECRET.hex() not in str(caught.value)


def test_key_file_inside_the_project_is_refused():
    from transforms.identity.keys import project_root

    with pytest.raises(KeyCustodyError):
        write_key_file(project_root() / "oops.key", generate_key())
    with pytest.raises(KeyCustodyError):
        check_key_file(project_root() / "pyproject.toml")


def test_missing_key_stops_the_run_with_instructions(no_block):
    with pytest.raises(KeyCustodyError) as caught:
        resolve_key()
    message = str(caught.value)
    assert "cohortshare key init" in message and "COHORTSHARE_KEY" in message
    assert "\n" not in message


def test_environment_key_is_used_and_short_one_refused(no_block, monkeypatch):
    monkeypatch.setenv("COHORTSHARE_KEY", SECRET.hex())
    assert resolve_key() == PseudonymisationKey(SECRET)
    monkeypatch.setenv("COHORTSHARE_KEY", SECRET[:16].hex())
    with pytest.raises(KeyCustodyError, match="too short") as caught:
        resolve_key()
    assert SECRET[:16].hex() not in str(caught.value)


def test_key_file_is_the_last_resort(no_block, monkeypatch, tmp_path):
    path = tmp_path / "custom.key"
    write_key_file(path, PseudonymisationKey(SECRET))
    monkeypatch.setenv("COHORTSHARE_KEY_FILE", str(path))
    assert resolve_key().key_id == PseudonymisationKey(SECRET).key_id


def test_prefect_block_wins_over_environment(no_block, monkeypatch):
    other = bytes(reversed(SECRET))
    monkeypatch.setenv("COHORTSHARE_KEY", SECRET.hex())
    monkeypatch.setattr(
        key_source, "_from_prefect_block", lambda name: parse_key_text(other.hex(), "block")
    )
    assert resolve_key() == PseudonymisationKey(other)


def test_demo_key_is_created_once_outside_the_project_and_labelled(no_block):
    first = resolve_key(demo=True)
    second = resolve_key(demo=True)
    assert first.key_id.startswith("demo-") and first == second
    path = no_block / ".config" / "cohortshare" / "demo.key"
    assert path.is_file() and os.stat(path).st_mode & 0o777 == 0o600
    with pytest.raises(KeyCustodyError):
        resolve_key()  # demo keys are never used outside demo mode


# --- `cohortshare key ...` ---------------------------------------------------------------------


def _cli(argv):
    import argparse

    from flows import keys_command

    parser = argparse.ArgumentParser()
    keys_command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_key_init_then_id_prints_only_the_key_id(no_block, capsys):
    assert _cli(["key", "init"]) == 0
    out = capsys.readouterr()
    path = no_block / ".config" / "cohortshare" / "pseudonymisation.key"
    key = read_key_file(path)
    assert key.key_id in out.out and key.export_text() not in out.out + out.err
    assert _cli(["key", "id"]) == 0
    assert capsys.readouterr().out.startswith(key.key_id)
    with pytest.raises(KeyCustodyError, match="already exists"):
        _cli(["key", "init"])


@pytest.fixture(scope="module")
def council(tmp_path_factory):
    """A small synthetic council, every delivery pseudonymised into secure/ with key OLD."""
    from transforms.synthetic import generate_council

    root = tmp_path_factory.mktemp("council")
    generate_council(root, 600, seed=5)
    return root


def _process_all(root, key):
    from pathlib import Path

    from schemas.contract import load_contracts
    from transforms.identity.geography import load_geography
    from transforms.identity.pseudonymise import pseudonymise
    from transforms.identity.secure import write_tokens
    from transforms.intake.ingest import extract_date_of
    from transforms.intake.validate import inspect_delivery

    contracts = load_contracts(Path(__file__).resolve().parents[2] / "data_contracts")
    for department, contract in contracts.items():
        for path in sorted((root / "landing" / department).glob(contract.file_pattern)):
            received, _ = inspect_delivery(path, contract, extract_date_of(path))
            tokens, counts = pseudonymise(received.frame, contract, key, load_geography(),
                                          received.outcome.extract_date)
            write_tokens(root, received.outcome, tokens, key.key_id, counts.to_dict())


def test_rotation_retokenises_the_secure_zone_and_records_only_key_ids(
    no_block, council, tmp_path, monkeypatch
):
    import shutil

    import polars as pl

    from flows.keys_command import rotate_key
    from transforms.identity.secure import read_metadata, tokens_dir
    from transforms.release import audit

    root = tmp_path / "root"
    shutil.copytree(council, root)
    old = PseudonymisationKey(SECRET)
    path = tmp_path / "cfg" / "pseudonymisation.key"
    write_key_file(path, old)
    monkeypatch.setenv("COHORTSHARE_KEY_FILE", str(path))
    _process_all(root, old)
    (root / "secure" / "linked").mkdir(parents=True)
    (root / "secure" / "linked" / "population.parquet").write_bytes(b"stale")
    files = sorted(tokens_dir(root).glob("*/*.parquet"))
    before = {p: pl.read_parquet(p) for p in files}

    contracts = Path(__file__).resolve().parents[2] / "data_contracts"
    new = PseudonymisationKey(bytes(reversed(SECRET)))
    summary = rotate_key(root, contracts, new_key=new)

    # five departments and the opt-out register, whose tokens must match theirs
    assert summary.deliveries_retokenised == len(files) == 6
    assert summary.derived_files_removed == 1
    assert read_key_file(path) == new  # the old key is gone from its store
    for p in files:
        assert read_metadata(p)["key_id"] == new.key_id
        after = pl.read_parquet(p)
        untokened = [c for c in after.columns if not c.startswith("tok_")]
        assert after.select(untokened).equals(before[p].select(untokened))
        assert not set(after["tok_name_dob"].drop_nulls()) & set(before[p]["tok_name_dob"])
    # Re-made with the new key, the zone equals a fresh pseudonymisation with it.
    fresh = tmp_path / "fresh"
    shutil.copytree(council, fresh)
    _process_all(fresh, new)
    for p in files:
        twin = tokens_dir(fresh) / p.relative_to(tokens_dir(root))
        assert pl.read_parquet(p).equals(pl.read_parquet(twin))
    event = audit.read_events(root)[-1]
    assert event["event"] == "key_rotated"
    assert event["old_key_id"] == old.key_id and event["new_key_id"] == new.key_id
    assert SECRET.hex() not in (root / "audit" / "audit.jsonl").read_text()
    # Nothing left to do: resuming finds every delivery on the new key.
    assert rotate_key(root, contracts, resume=True).deliveries_retokenised == 0


def test_rotation_refuses_keys_it_cannot_rewrite_and_orphans(no_block, council, tmp_path,
                                                            monkeypatch):
    import shutil

    from flows.keys_command import rotate_key

    contracts = Path(__file__).resolve().parents[2] / "data_contracts"
    monkeypatch.setenv("COHORTSHARE_KEY", SECRET.hex())
    with pytest.raises(KeyCustodyError, match="environment variable"):
        rotate_key(council, contracts)
    monkeypatch.delenv("COHORTSHARE_KEY")
    root = tmp_path / "root"
    shutil.copytree(council, root)
    key = PseudonymisationKey(SECRET)
    path = tmp_path / "cfg" / "pseudonymisation.key"
    write_key_file(path, key)
    monkeypatch.setenv("COHORTSHARE_KEY_FILE", str(path))
    _process_all(root, key)
    for landing in (root / "landing" / "housing").iterdir():
        landing.unlink()
    with pytest.raises(KeyCustodyError, match="no landing file"):
        rotate_key(root, contracts)
    assert read_key_file(path) == key  # refused before anything changed
    summary = rotate_key(root, contracts, discard_orphans=True)
    # four departments and the opt-out register remain
    assert summary.deliveries_discarded == 1 and summary.deliveries_retokenised == 5
