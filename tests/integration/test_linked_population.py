"""The bounded-memory linkage gives the population the whole-frame linkage gave.

A token-level council of 60,000 residents (tests/integration/linked_council.py: conflicts,
vetoes, typos, records without tokens, an opt-out register) is linked from its files one token
column at a time and built in person partitions. Its population must equal, row for row, the
one main's code built at commit 573b030 from the whole concatenated frame in one piece (the
sha256 below), and the one this code builds that way too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest

from schemas.cohorts import load_indicators
from schemas.contract import departments, load_contracts
from tests.integration.linked_council import EXTRACT_DATE, write_council
from transforms.identity import (
    apply_opt_outs,
    build_population,
    link,
    link_files,
    load_linkage_rules,
    objecting_residents,
    person_features,
)

CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"
RESIDENTS, SEED = 60_000, 5
PURPOSE = "service_planning"
# sha256 of the population (sorted by person key, as NDJSON) that main's link, apply_opt_outs
# and build_population made from this council before linkage read tokens column by column
# (c7cec344...), recomputed when benefits' weekly_amount went from `max` to `sum` of a
# resident's claims: with `max` restored in the contract this code still gives c7cec344....
MAIN_POPULATION_SHA256 = "ecc62491a64c3c44d0f187d647df67f9897339ac203947f1ae6052a799269fb0"


def _digest(population: pl.DataFrame) -> str:
    return hashlib.sha256(population.sort("person_key").write_ndjson().encode()).hexdigest()


@pytest.fixture(scope="module")
def council(tmp_path_factory):
    paths, register = write_council(tmp_path_factory.mktemp("tokens"), RESIDENTS, SEED)
    contracts = departments(load_contracts(CONTRACTS))
    features = person_features(contracts, load_indicators(CONTRACTS / "indicators.yaml"))
    rules = load_linkage_rules(CONTRACTS / "linkage.yaml")
    return paths, pl.read_parquet(register), rules, features


def test_partitioned_population_from_files_is_mains(council):
    paths, register, rules, features = council
    linked, tokens, counts = link_files(paths, rules)
    assert not [c for c in linked.columns if c.startswith("tok_")]  # tokens stay on disk
    # As the flow does: the objecting residents' records left out partition by partition.
    removed, opt_outs = objecting_residents(
        linked, register, rules, PURPOSE, EXTRACT_DATE, tokens
    )
    population, _, built = build_population(linked, features, partitions=3, removed=removed)
    assert built.records == linked.height - opt_outs.records_removed
    # The council exercises what could differ: conflicts refused, objections applied.
    assert counts.conflicts > 100 and opt_outs.residents_removed > 100
    assert population.height > 40_000
    assert _digest(population) == MAIN_POPULATION_SHA256
    # Partitions are ranges of person keys, built in order: the population comes out sorted.
    assert population.get_column("person_key").is_sorted()

    whole, _ = link(pl.concat([pl.read_parquet(p) for p in paths], how="diagonal_relaxed"), rules)
    whole, _ = apply_opt_outs(whole, register, rules, PURPOSE, EXTRACT_DATE)
    in_one_piece, _, _ = build_population(whole, features, partitions=1)
    assert population.equals(in_one_piece)
