"""Properties of the synthetic council that must hold for any seed, size and noise rate."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.identifiers import nhs_number_valid
from transforms.synthetic import (
    DEPARTMENTS,
    IDENTIFIER_FIELDS,
    NI_PREFIXES,
    NICKNAMES,
    apply_noise,
    build_population,
    generate_council,
    synthetic_nhs_numbers,
    synthetic_ni_numbers,
)

# Every case shares one cached population; the first call pays for building it.
quick = settings(deadline=None, max_examples=25)
seeds = st.integers(min_value=0, max_value=2**32 - 1)
rates = st.floats(min_value=0.0, max_value=0.5, allow_nan=False)


def nhs_check_digit_is_valid(number: str) -> bool:
    return bool(nhs_number_valid(int(number)))


@functools.cache
def population() -> tuple[pl.DataFrame, pl.DataFrame]:
    people, households = build_population(600, seed=4)
    records = people.join(
        households.select("household_id", "uprn", "postcode"), on="household_id"
    ).with_row_index("record_id")
    return records, households


def noisy(rate: float, seed: int, fields=frozenset(IDENTIFIER_FIELDS)) -> pl.DataFrame:
    records, households = population()
    return apply_noise(records, households, rate, np.random.default_rng(seed), fields=fields)


def changed_rows(frame: pl.DataFrame) -> set[int]:
    records, _ = population()
    changed = pl.any_horizontal(
        [pl.col(c).ne_missing(pl.lit(records.get_column(c))) for c in IDENTIFIER_FIELDS]
    )
    return set(frame.filter(changed).get_column("record_id"))


@quick
@given(seed=seeds, n=st.integers(min_value=1, max_value=3_000))
def test_nhs_numbers_are_distinct_valid_and_never_issued(seed, n):
    numbers = synthetic_nhs_numbers(np.random.default_rng(seed), n)
    assert numbers.len() == n and numbers.is_unique().all()
    assert numbers.str.contains(r"^9\d{9}$").all()
    assert all(nhs_check_digit_is_valid(number) for number in numbers)


@quick
@given(seed=seeds, n=st.integers(min_value=1, max_value=3_000))
def test_ni_numbers_are_distinct_and_well_formed(seed, n):
    numbers = synthetic_ni_numbers(np.random.default_rng(seed), n)
    assert numbers.len() == n and numbers.is_unique().all()
    assert numbers.str.contains(r"^[A-Z]{2}\d{6}[A-D]$").all()
    assert numbers.str.slice(0, 2).is_in(list(NI_PREFIXES)).all()
    assert not numbers.str.slice(0, 1).is_in(list("DFIQUV")).any()
    assert not numbers.str.slice(1, 1).is_in(list("DFIOQUV")).any()


@quick
@given(seed=seeds, rate=rates)
def test_noise_changes_identifiers_only(seed, rate):
    records, _ = population()
    result = noisy(rate, seed)
    assert result.columns == records.columns
    others = [c for c in records.columns if c not in IDENTIFIER_FIELDS]
    assert result.select(others).equals(records.select(others))


@quick
@given(seed=seeds, low=rates, high=rates)
def test_more_noise_changes_a_superset_of_records(seed, low, high):
    low, high = sorted((low, high))
    assert changed_rows(noisy(low, seed)) <= changed_rows(noisy(high, seed))


@quick
@given(seed=seeds)
def test_no_noise_changes_nothing(seed):
    records, _ = population()
    assert noisy(0.0, seed).equals(records)


@quick
@given(seed=seeds, rate=rates, fields=st.sets(st.sampled_from(IDENTIFIER_FIELDS)).map(frozenset))
def test_noise_touches_only_the_departments_fields(seed, rate, fields):
    records, _ = population()
    result = noisy(rate, seed, fields)
    untouched = [c for c in IDENTIFIER_FIELDS if c not in fields]
    assert result.select(untouched).equals(records.select(untouched))


@quick
@given(seed=seeds, rate=st.floats(min_value=0.1, max_value=0.5))
def test_noise_looks_like_real_errors(seed, rate):
    records, _ = population()
    result = noisy(rate, seed)
    for before, after in zip(
        records.iter_rows(named=True), result.iter_rows(named=True), strict=True
    ):
        for name in ("forename", "surname"):
            old, new = before[name], after[name]
            if old != new and not (name == "forename" and NICKNAMES.get(old) == new):
                assert new[0] == old[0] and abs(len(new) - len(old)) <= 1, name
                assert re.fullmatch(r"[\w' -]+", new)
        if before["date_of_birth"] != after["date_of_birth"]:
            old, new = before["date_of_birth"], after["date_of_birth"]
            assert (new.year, new.month, new.day) == (old.year, old.day, old.month)
        for name in ("nhs_number", "ni_number"):
            assert after[name] in (before[name], None)
        # A previous address changes the property (UPRN), and sometimes the postcode with it.
        if before["postcode"] != after["postcode"]:
            assert before["uprn"] != after["uprn"]


@settings(max_examples=6, deadline=None)
@given(residents=st.integers(min_value=1, max_value=400), seed=seeds, rate=rates)
def test_any_council_has_a_consistent_ground_truth(residents, seed, rate):
    with TemporaryDirectory() as directory:
        root = Path(directory)
        summary = generate_council(root, residents, seed, noise=rate)
        truth = pl.read_parquet(root / "synthetic_truth" / "truth.parquet")
        people = pl.read_parquet(root / "synthetic_truth" / "residents.parquet")
        assert people.height == residents == summary.residents
        assert truth.select("department", "record_id").is_unique().all()
        assert (
            truth.get_column("resident_id").is_in(people.get_column("resident_id").to_list()).all()
        )
        counts = dict(truth.group_by("department").len().iter_rows())
        assert {d: counts.get(d, 0) for d in DEPARTMENTS} == summary.rows
        # Council tax: exactly one liable party per household.
        assert summary.rows["council_tax"] == people.get_column("household_id").n_unique()
        assert all(path.is_file() for path in summary.files)
