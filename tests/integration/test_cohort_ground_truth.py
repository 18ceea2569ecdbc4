"""Every cohort table's unprotected counts, checked against the synthetic council's ground truth.

The council is generated without identifier noise, run through the pipeline's own intake,
pseudonymisation, linkage and population, and tabulated. Independently, plain Polars counts
the same cells from the generator's truth (which resident each record belongs to, and each
resident's true sex, age, ethnic group and ward), with the indicators written out by hand here
rather than read from indicators.yaml. The two must agree cell for cell, up to the few
residents deterministic linkage splits.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from schemas.cohorts import load_cohorts, load_indicators
from schemas.contract import departments, load_contracts
from schemas.policy import load_policy
from tests.integration.test_linkage_quality import link_council
from transforms.disclosure import load_hierarchies, magnitude
from transforms.disclosure.tabulate import TRUE, true_cells
from transforms.identity import build_population, person_features

CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"
RESIDENTS = 6_000
RECORDS_SEX = {"adult_social_care", "benefits", "childrens_services"}
MEANS_TESTED = {"Housing Benefit", "Council Tax Reduction", "Discretionary Housing Payment"}
CARE = {"Child in Need", "Child Protection Plan", "Looked After Child"}


@pytest.fixture(scope="module")
def council(tmp_path_factory):
    root = tmp_path_factory.mktemp("truth_council")
    linked, with_ids, _, _ = link_council(root, noise=0.0, residents=RESIDENTS, seed=11)
    contracts = load_contracts(CONTRACTS)
    indicators = load_indicators(CONTRACTS / "indicators.yaml")
    features = person_features(departments(contracts), indicators)
    population, _, _ = build_population(linked, features)
    truth = pl.read_parquet(root / "synthetic_truth" / "truth.parquet")
    residents = pl.read_parquet(root / "synthetic_truth" / "residents.parquet")
    records = with_ids.join(truth, on=["department", "record_id"])
    assert records.height == with_ids.height
    return population, _truth_population(records, residents)


def _age_band(age: pl.Expr, width: int) -> pl.Expr:
    low = age // width * width
    return pl.format("{}-{}", low, low + width - 1).fill_null("unknown")


def _truth_population(records: pl.DataFrame, residents: pl.DataFrame) -> pl.DataFrame:
    """One row per resident known to any department, from the generator's truth only."""
    flags = records.group_by("resident_id").agg(
        departments=pl.col("department").unique().sort(),
        rent_arrears=(pl.col("in_rent_arrears") & (pl.col("department") == "housing")).any(),
        receiving_adult_social_care=(pl.col("department") == "adult_social_care").any(),
        child_known_to_social_care=pl.col("care_status").is_in(CARE).any(),
        means_tested_benefit=pl.col("benefit_type").is_in(MEANS_TESTED).any(),
        council_tax_discount=(pl.col("single_person_discount") == "true").any(),
        care_status=pl.col("care_status").drop_nulls().last(),
        in_rent_arrears=pl.col("in_rent_arrears").drop_nulls().any(),
        # A claimant's total weekly award over all their claims, as the extract wrote them.
        weekly_amount=pl.col("weekly_amount").filter(pl.col("department") == "benefits").sum(),
        # Whether any record carries a date of birth (council tax often does not) or an
        # ethnic group: the true value is only knowable then.
        age_recorded=pl.col("age").is_not_null().any(),
        ethnicity_recorded=pl.col("ethnicity").is_not_null().any(),
        # A household is known through a record with its UPRN (optional in some extracts).
        has_uprn=pl.col("tok_household").is_not_null().any(),
    )
    people = flags.join(residents, on="resident_id").with_columns(
        age=pl.when("age_recorded").then(pl.col("age")),
        ethnicity=pl.when("ethnicity_recorded").then(pl.col("ethnicity")),
    ).with_columns(
        indicator_count=pl.sum_horizontal(
            pl.col(c).cast(pl.Int64) for c in (
                "rent_arrears", "receiving_adult_social_care", "child_known_to_social_care",
                "means_tested_benefit", "council_tax_discount")
        ),
        sex=pl.when(pl.col("departments").list.set_intersection(list(RECORDS_SEX)).list.len() > 0)
        .then(pl.col("sex")).otherwise(pl.lit("U")),
    )
    household_departments = (
        people.filter("has_uprn").explode("departments").group_by("household_id")
        .agg(household_departments=pl.col("departments").n_unique())
    )
    return people.join(household_departments, on="household_id", how="left")


def _truth_cells(people: pl.DataFrame, table: str) -> pl.DataFrame:
    ward, wards = pl.col("ward_code").alias("ward"), "ward"
    each_dept = people.explode("departments").rename({"departments": "department"})
    indicator_names = ["rent_arrears", "receiving_adult_social_care",
                       "child_known_to_social_care", "means_tested_benefit",
                       "council_tax_discount"]
    yes_no = {True: "yes", False: "no"}
    if table == "cohort_prevention_two_plus_indicators":
        frame = people.filter(pl.col("indicator_count") >= 2).select(
            ward, _age_band(pl.col("age"), 20).alias("age_band"))
    elif table == "cohort_indicator_count_by_ward":
        band = pl.when(pl.col("indicator_count") >= 2).then(pl.lit("2+")).otherwise(
            pl.col("indicator_count").cast(pl.String))
        frame = people.select(ward, band.alias("indicators_held"))
    elif table == "cohort_indicator_by_ward":
        frame = pl.concat([
            people.filter(pl.col(n)).select(pl.lit(n).alias("indicator"), ward)
            for n in indicator_names
        ])
    elif table == "cohort_department_overlap_by_ward":
        pairs = each_dept.select("resident_id", pl.col("department").alias("department_a"),
                                 ward)
        frame = pairs.join(pairs.select("resident_id", pl.col("department_a")
                                        .alias("department_b")), on="resident_id").filter(
            pl.col("department_a") <= pl.col("department_b")).drop("resident_id")
    elif table == "cohort_rent_arrears_by_benefit_by_ward":
        frame = people.filter(pl.col("departments").list.contains("housing")).select(
            pl.col("in_rent_arrears").replace_strict(yes_no),
            pl.col("means_tested_benefit").replace_strict(yes_no), ward)
    elif table == "cohort_childrens_services_by_care_status_age":
        frame = people.filter(pl.col("departments").list.contains("childrens_services")).select(
            "care_status", _age_band(pl.col("age"), 5).alias("age_band"))
    elif table == "cohort_households_by_departments_involved":
        band = pl.when(pl.col("household_departments") >= 3).then(pl.lit("3+")).otherwise(
            pl.col("household_departments").cast(pl.String))
        frame = (people.filter("has_uprn").unique("household_id")
                 .select(ward, band.alias("departments_involved")))
    elif table == "cohort_people_by_department_ward_sex":
        frame = each_dept.select("department", ward, "sex")
    elif table == "cohort_people_by_department_age_sex":
        frame = each_dept.select("department", _age_band(pl.col("age"), 20).alias("age_band"),
                                 "sex")
    elif table == "cohort_people_by_department_ethnic_group":
        groups = {"A": "Asian", "B": "Black", "M": "Mixed", "W": "White", "O": "Other"}
        stated = pl.col("ethnicity").str.slice(0, 1).replace_strict(groups, default="Not stated")
        social_care = pl.col("department").is_in(["adult_social_care", "childrens_services"])
        frame = each_dept.filter(social_care).select("department", stated.alias("ethnic_group"))
    elif table in ("cohort_benefit_award_by_rent_arrears_ward", "cohort_benefit_award_by_ward"):
        claimants = people.filter(
            pl.col("means_tested_benefit") & pl.col("departments").list.contains("housing"))
        arrears = [pl.col("in_rent_arrears").replace_strict(yes_no)]
        if table == "cohort_benefit_award_by_ward":
            arrears = []
        frame = claimants.select(*arrears, ward, "weekly_amount")
    elif table == "cohort_benefit_award_median_by_age_sex":
        frame = people.filter(pl.col("departments").list.contains("benefits")).select(
            _age_band(pl.col("age"), 20).alias("age_band"), "sex", "weekly_amount")
    else:
        raise AssertionError(f"no ground truth written for {table}")
    if "weekly_amount" in frame.columns:
        dims = [c for c in frame.columns if c not in (wards, "weekly_amount")]
        dims += [wards] if wards in frame.columns else []
        return frame.group_by(dims).agg(
            pl.len().cast(pl.Int64).alias("truth"), pl.col("weekly_amount").sum().alias("amount")
        )
    dims = [c for c in frame.columns if c != wards] + ([wards] if wards in frame.columns else [])
    return frame.group_by(dims).agg(pl.len().cast(pl.Int64).alias("truth"))


@pytest.mark.parametrize("table", load_cohorts(CONTRACTS / "cohorts.yaml").tables,
                         ids=lambda t: t.name)
def test_unprotected_counts_match_the_ground_truth(council, table):
    population, truth_people = council
    hierarchies = load_hierarchies(CONTRACTS / "hierarchies")
    ours = true_cells(population, table, hierarchies).filter(pl.col(TRUE) > 0)
    truth = _truth_cells(truth_people, table.name)
    dims = table.dimension_names
    compared = ours.join(truth.select(dims + ["truth"]), on=dims, how="full", coalesce=True)
    compared = compared.with_columns(pl.col(TRUE, "truth").fill_null(0))
    units = int(compared["truth"].sum())
    differ = int((compared[TRUE] - compared["truth"]).abs().sum())
    assert units >= 30, "the council must exercise the table"
    # Deterministic linkage splits a handful of residents (recall 0.999 without noise).
    assert differ <= max(3, units // 500), f"{differ} of {units} units differ"


@pytest.mark.parametrize(
    "table",
    [t for t in load_cohorts(CONTRACTS / "cohorts.yaml").tables
     if t.measure is not None and t.measure.kind == "sum"],
    ids=lambda t: t.name,
)
def test_sums_match_the_ground_truth(council, table):
    """Each cell's sum (before protection, which only withholds) is the true total of its
    residents' weekly awards, up to the few residents linkage splits; published sums are these
    rounded to the pound (tests/unit/test_magnitude.py)."""
    population, truth_people = council
    hierarchies = load_hierarchies(CONTRACTS / "hierarchies")
    policy = load_policy(CONTRACTS / "disclosure_policy.yaml")
    dims = table.dimension_names
    ours = magnitude.cell_statistics(
        magnitude.contributions(population, table, hierarchies), dims, policy.magnitude
    )
    compared = ours.join(_truth_cells(truth_people, table.name), on=dims, how="full",
                         coalesce=True).with_columns(pl.col(magnitude.SUM, "amount").fill_null(0))
    total = float(compared["amount"].sum())
    assert compared.height >= 3 and total > 1000, "the council must exercise the table"
    off = (compared[magnitude.SUM] - compared["amount"]).abs()
    assert float(off.sum()) <= total * 0.002, f"sums differ by {float(off.sum()):.2f}"
