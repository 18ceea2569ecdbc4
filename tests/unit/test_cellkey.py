"""Cell-key perturbation: record keys from the pseudonym, the same noise for the same people in
every table and release, no published count in 1..js, the gate that re-derives every count, the
audit of perturbed cells, and the policy's validation.

Expected values are recomputed here with plain Python (hashlib for pseudonyms, int(..., 16) for
record keys, a walk over the YAML table for the noise), not with the code under test.
"""

import hashlib
from pathlib import Path

import polars as pl
import pytest
import yaml

from schemas.cohorts import CohortDefinitions, load_cohorts
from schemas.errors import ConfigError, DisclosureError
from schemas.policy import DisclosurePolicy, load_policy, load_ptable
from tests.integration.demo_catalogue import population as demo_population
from tests.unit.test_differencing import table
from transforms.disclosure.cellkey import perturb_release, record_key
from transforms.disclosure.hierarchy import load_hierarchies
from transforms.release import gates
from transforms.release.differencing import Auditor, PreviousRelease, audit_release

CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"
PTABLE = load_ptable(CONTRACTS / "ptable.yaml")
RAW = yaml.safe_load((CONTRACTS / "ptable.yaml").read_text())
POLICY = DisclosurePolicy(
    name="cell-key", k=10, max_suppression=0.05, small_number_rule="nhs_england",
    quasi_identifiers=("age",), method="cell_key", ptable="ptable.yaml", perturbation=PTABLE,
)  # fmt: skip
BY_WARD_SEX = table("cohort_by_ward_sex", "ward", "sex")
BY_WARD_AGE = table("cohort_by_ward_age", "ward", "age")
BY_WARD = table("cohort_by_ward", "ward")


def pseudonym(n: int) -> str:
    """A person key shaped as the pipeline's: 'p-' and 24 hex digits of SHA-256."""
    return "p-" + hashlib.sha256(f"resident {n}".encode()).hexdigest()[:24]


def people(*groups: tuple[int, dict], start: int = 0) -> pl.DataFrame:
    rows = [values for n, values in groups for _ in range(n)]
    return pl.DataFrame(rows).with_columns(
        person_key=pl.Series([pseudonym(start + i) for i in range(len(rows))]),
        household_key=pl.lit(None, dtype=pl.String),
    )


def expected_value(keys: list[str]) -> int:
    """True count plus the table's noise for the cell key, from the YAML by hand."""
    true = len(keys)
    cell_key = sum(int(k[-2:], 16) for k in keys) % 256
    rows = RAW["rows"]
    row = rows[min(true, len(rows) - 1)]
    first = 0
    for published in sorted(row["to"]):
        if first <= cell_key < first + row["to"][published]:
            return true + published - row["count"]
        first += row["to"][published]
    raise AssertionError("cell key not covered by the table")


def members(population: pl.DataFrame, **values) -> list[str]:
    frame = population
    for column, value in values.items():
        frame = frame.filter(pl.col(column) == value)
    return frame["person_key"].to_list()


def value(frame: pl.DataFrame, **cell) -> int:
    for column, v in cell.items():
        frame = frame.filter(pl.col(column) == v)
    assert frame.height == 1
    return frame["people"].item()


# Ward W1: 5 men aged 30, so (W1, M) and (W1, 30) hold the same people. W2 and W3 larger.
FIRST = people(
    (5, {"ward": "W1", "sex": "M", "age": "30"}),
    (23, {"ward": "W2", "sex": "F", "age": "40"}),
    (17, {"ward": "W2", "sex": "M", "age": "50"}),
    (40, {"ward": "W3", "sex": "F", "age": "30"}),
)
# A month on: the same residents, and newcomers in W2 and W3 only.
SECOND = pl.concat([
    FIRST,
    people((6, {"ward": "W2", "sex": "F", "age": "40"}),
           (9, {"ward": "W3", "sex": "M", "age": "60"}), start=1000),
])  # fmt: skip
BOTH = CohortDefinitions(tables=(BY_WARD_SEX, BY_WARD_AGE, BY_WARD))


def test_record_key_is_the_pseudonyms_last_byte_and_stable():
    keys = [pseudonym(n) for n in range(1500)]
    got = pl.DataFrame({"k": keys}).select(record_key(pl.col("k")))["k"].to_list()
    assert got == [int(k[-2:], 16) for k in keys]
    assert set(got) <= set(range(256))
    # The same resident in a later population carries the same key.
    again = SECOND.select(record_key(pl.col("person_key")))["person_key"].to_list()
    assert again[: FIRST.height] == got_for(FIRST)


def got_for(population: pl.DataFrame) -> list[int]:
    return [int(k[-2:], 16) for k in population["person_key"]]


def test_same_people_same_noise_in_two_tables_and_two_releases():
    first = perturb_release(FIRST, BOTH, POLICY, {})
    second = perturb_release(SECOND, BOTH, POLICY, {})
    w1 = expected_value(members(FIRST, ward="W1"))
    for release in (first, second):
        assert value(release.tables["cohort_by_ward_sex"], ward="W1", sex="M") == w1
        assert value(release.tables["cohort_by_ward_age"], ward="W1", age="30") == w1
        assert value(release.tables["cohort_by_ward"], ward="W1") == w1
    # Every published count is true + the noise for its cell key, recomputed by hand.
    for frame in second.tables.values():
        dims = [c for c in frame.columns if c not in ("people", "withheld")]
        for row in frame.iter_rows(named=True):
            keys = members(SECOND, **{d: row[d] for d in dims})
            assert row["people"] == expected_value(keys)


def test_no_published_count_is_small_and_noise_stays_within_d():
    # Cells of every size 1..30, several times over with different people.
    groups = [(n, {"ward": f"W{n}-{r}", "sex": "F", "age": "1"}) for n in range(1, 31)
              for r in range(4)]  # fmt: skip
    population = people(*groups)
    release = perturb_release(population, CohortDefinitions(tables=(BY_WARD,)), POLICY, {})
    frame = release.tables["cohort_by_ward"]
    truth = population.group_by("ward").len()
    joined = frame.join(truth, on="ward")
    assert not joined.filter(pl.col("people").is_between(1, PTABLE.small_counts)).height
    assert (joined["people"] - joined["len"]).abs().max() <= PTABLE.max_noise
    assert not frame["withheld"].any()


def _stage(tmp_path: Path, tables: dict[str, pl.DataFrame]) -> dict[str, Path]:
    paths = {}
    for name, frame in tables.items():
        paths[name] = tmp_path / f"{name}.parquet"
        frame.write_parquet(paths[name])
    return paths


def test_gate_re_derives_every_count_and_fails_on_one_changed(tmp_path):
    release = perturb_release(SECOND, BOTH, POLICY, {})
    staged = _stage(tmp_path, release.tables)
    result = gates.check_perturbation(staged, SECOND, BOTH, POLICY, {})
    assert result == {"cells_checked": 13, "cells_differing": 0}  # 5 + 5 + 3 cells
    # One published count off by one: the gate names the table and how many, never a value.
    broken = release.tables["cohort_by_ward_age"].with_columns(
        pl.when(pl.col("ward") == "W2").then(pl.col("people") + 1).otherwise(pl.col("people"))
        .alias("people")
    )  # fmt: skip
    staged = _stage(tmp_path, {**release.tables, "cohort_by_ward_age": broken})
    with pytest.raises(DisclosureError, match=r"2 published count\(s\).*cohort_by_ward_age: 2"):
        gates.check_perturbation(staged, SECOND, BOTH, POLICY, {})


def test_gate_reads_every_units_record_key(tmp_path):
    # Counts right but noise drawn for other cell keys: the gate recomputes each cell's key
    # from its units' pseudonyms, so a release perturbed with the wrong keys fails it.
    release = perturb_release(SECOND, BOTH, POLICY, {})
    staged = _stage(tmp_path, release.tables)
    shifted = SECOND.with_columns(
        person_key=pl.col("person_key").str.slice(0, 25)
        + pl.col("person_key").str.slice(25).str.replace_many(
            list("0123456789abcdef"), list("123456789abcdef0")
        )
    )
    with pytest.raises(DisclosureError, match=r"published count\(s\) are not the true count"):
        gates.check_perturbation(staged, shifted, BOTH, POLICY, {})


def test_release_gate_refuses_a_published_one_or_two(tmp_path):
    release = perturb_release(SECOND, BOTH, POLICY, {})
    population = tmp_path / "population.parquet"
    SECOND.with_columns(age=pl.lit("30")).write_parquet(population)
    small = release.tables["cohort_by_ward"].with_columns(people=pl.lit(2, pl.Int64))
    staged = _stage(tmp_path, {**release.tables, "cohort_by_ward": small})
    lenient = POLICY.model_copy(update={"k": 2})  # only the count check can fail
    with pytest.raises(DisclosureError, match="cohort_by_ward.parquet: 3 published row"):
        gates.check_release(staged, population, BOTH, lenient)


def test_audit_passes_perturbed_tables_and_across_two_releases():
    first = perturb_release(FIRST, BOTH, POLICY, {})
    assert audit_release(FIRST, BOTH, {}, first.tables, POLICY).failures == []
    previous = PreviousRelease(FIRST, first.tables, perturbation=PTABLE)
    second = perturb_release(SECOND, BOTH, POLICY, {})
    result = audit_release(SECOND, BOTH, {}, second.tables, POLICY, previous)
    assert result.failures == [] and result.primary_cells >= 2


def test_audit_finds_a_small_cell_given_away_by_an_unperturbed_margin():
    # W1 holds 3 women and nobody else. Perturbed alone, (W1, F) is safe; with the ward total
    # published exactly beside it, it is pinned to that total.
    population = people(
        (3, {"ward": "W1", "sex": "F", "age": "30"}),
        (40, {"ward": "W2", "sex": "F", "age": "30"}),
        (40, {"ward": "W2", "sex": "M", "age": "30"}),
    )
    two = CohortDefinitions(tables=(BY_WARD_SEX, BY_WARD))
    release = perturb_release(population, two, POLICY, {})
    assert audit_release(population, two, {}, release.tables, POLICY).failures == []
    exact_margin = (
        population.group_by("ward")
        .len()
        .rename({"len": "people"})
        .with_columns(pl.col("people").cast(pl.Int64), withheld=pl.lit(False))
    )
    tables = {**release.tables, "cohort_by_ward": exact_margin}
    result = audit_release(
        population, two, {}, tables, POLICY, perturbed_tables={"cohort_by_ward_sex"}
    )
    exposed = {(f.table, tuple(f.cell.items()), f.kind) for f in result.failures}
    assert ("cohort_by_ward_sex", (("ward", "W1"), ("sex", "F")), "interval") in exposed


def test_demo_shaped_release_passes_gate_and_audit(tmp_path):
    population = demo_population(residents=1500, seed=3).with_columns(
        person_key=pl.Series([pseudonym(n) for n in range(1500)]),
        household_key=pl.col("household_key").map_elements(
            lambda h: "h-" + hashlib.sha256(h.encode()).hexdigest()[:24], return_dtype=pl.String
        ),
    )
    # Three of the council's tables: a margin shared two ways, and a sensitive dimension.
    shipped = load_cohorts(CONTRACTS / "cohorts.yaml")
    chosen = {"cohort_people_by_department_ward_sex", "cohort_department_overlap_by_ward",
              "cohort_rent_arrears_by_benefit_by_ward"}  # fmt: skip
    cohorts = CohortDefinitions(tables=tuple(t for t in shipped.tables if t.name in chosen))
    assert len(cohorts.tables) == 3
    hierarchies = load_hierarchies(CONTRACTS / "hierarchies")
    auditor = Auditor(population, cohorts, hierarchies, POLICY)
    # Perturbation alone: on this sparse population, margins narrow a few small cells.
    bare = perturb_release(population, cohorts, POLICY, hierarchies)
    assert auditor.audit(bare.tables).failures
    # With the audit in the loop, those cells (and their neighbours where needed) are withheld.
    release = perturb_release(
        population, cohorts, POLICY, hierarchies, lambda t: auditor.audit(t).failures
    )
    assert release.rounds >= 2 and release.cells_withheld_for_the_release >= 1
    staged = _stage(tmp_path, release.tables)
    checked = gates.check_perturbation(staged, population, cohorts, POLICY, hierarchies)
    assert checked["cells_checked"] == sum(f.height for f in release.tables.values())
    result = audit_release(population, cohorts, hierarchies, release.tables, POLICY)
    assert result.failures == []


def _policy_folder(tmp_path: Path, extra: str, ptable: str | None = None) -> Path:
    text = (CONTRACTS / "disclosure_policy.yaml").read_text()
    text = "\n".join(
        line for line in text.splitlines() if not line.startswith(("method:", "ptable:"))
    )
    (tmp_path / "disclosure_policy.yaml").write_text(text + "\n" + extra)
    if ptable is not None:
        (tmp_path / "ptable.yaml").write_text(ptable)
    return tmp_path / "disclosure_policy.yaml"


def test_shipped_policy_loads_with_its_table():
    policy = load_policy(CONTRACTS / "disclosure_policy.yaml")
    assert policy.method == "cell_key" and policy.perturbation == PTABLE
    assert PTABLE.max_noise - 1 >= policy.protection_width  # a published 0 is wide enough


@pytest.mark.parametrize(
    ("extra", "ptable", "message"),
    [
        ("method: cell_key\n", None, r"disclosure_policy\.yaml: 1 problem.*cell_key needs"),
        ("method: cell_key\nptable: missing.yaml\n", None,
         r"disclosure_policy\.yaml: ptable: no file missing\.yaml"),
        ("method: perturb\n", None, r"disclosure_policy\.yaml: 1 problem.*method"),
        ("method: cell_key\nptable: ptable.yaml\n",
         (CONTRACTS / "ptable.yaml").read_text().replace("small_counts: 2", "small_counts: 3"),
         r"ptable\.yaml: 1 problem.*rows\.\d+: publishes a count"),
        ("method: cell_key\nptable: ptable.yaml\n",
         (CONTRACTS / "ptable.yaml").read_text().replace("max_noise: 11", "max_noise: lots"),
         r"ptable\.yaml: 1 problem.*max_noise"),
    ],
)  # fmt: skip
def test_policy_errors_name_the_file_and_field(tmp_path, extra, ptable, message):
    with pytest.raises(ConfigError, match=message):
        load_policy(_policy_folder(tmp_path, extra, ptable))


def test_shipped_ptable_is_what_its_command_builds_and_has_its_properties():
    from transforms.disclosure.ptable import build_ptable

    rebuilt = build_ptable(RAW["max_noise"], RAW["variance"], RAW["small_counts"], RAW["name"])
    assert rebuilt["rows"] == RAW["rows"]
    for row in RAW["rows"]:
        keys, i = row["to"], row["count"]
        assert sum(keys.values()) == 256 and min(keys.values()) >= 1
        assert sum(n * (j - i) for j, n in keys.items()) == 0  # zero mean, exactly
        assert all(j == 0 or j > 2 for j in keys) and all(abs(j - i) <= 11 for j in keys)
        if i:  # every allowed value within D keeps a key: a published p may be any of them
            allowed = {j for j in range(max(0, i - 11), i + 12) if j == 0 or j > 2}
            assert set(keys) == allowed
