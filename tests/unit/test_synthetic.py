"""The seeded synthetic council: formats, contracts, identifiers, ground truth, determinism."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from pathlib import Path

import polars as pl
import pytest
import yaml

from schemas.errors import UserError
from schemas.identifiers import nhs_number_valid
from transforms.identity.geography import load_geography
from transforms.synthetic import (
    DEPARTMENTS,
    EXTENSIONS,
    IDENTIFIER_FIELDS,
    LAYOUTS,
    NI_PREFIXES,
    generate_council,
)

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "data_contracts"
RESIDENTS = 2_000
SEED = 11
STAMP = "20261031"


def contract(department: str) -> dict:
    return yaml.safe_load((CONTRACTS / f"{department}.odcs.yaml").read_text())


def contract_columns(department: str) -> list[dict]:
    return contract(department)["schema"][0]["properties"]


def custom(entries: list[dict] | None) -> dict:
    return {entry["property"]: entry["value"] for entry in entries or []}


def extract_path(root: Path, department: str) -> Path:
    return root / "landing" / department / f"{department}_{STAMP}.{EXTENSIONS[department]}"


def read_extract(root: Path, department: str) -> pl.DataFrame:
    """Read an extract the way its contract describes it, every column as text."""
    path = extract_path(root, department)
    properties = custom(contract(department).get("customProperties"))
    file_format = properties["format"]
    if file_format == "csv":
        text = path.read_bytes().decode(properties["encoding"])
        return pl.read_csv(text.encode(), separator=properties["delimiter"], infer_schema=False)
    if file_format == "xlsx":
        return pl.read_excel(path, sheet_name=properties["sheet"], infer_schema_length=0)
    if file_format == "ndjson":
        return pl.read_ndjson(path).cast(pl.String)
    if file_format == "parquet":
        return pl.read_parquet(path).cast(pl.String)
    raise AssertionError(f"unexpected format {file_format}")


def nhs_is_valid(number: str) -> bool:
    if not re.fullmatch(r"9\d{9}", number):
        return False
    return bool(nhs_number_valid(int(number)))


def digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def council(tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("council")
    return root, generate_council(root, RESIDENTS, SEED)


@pytest.fixture(scope="module")
def residents(council) -> pl.DataFrame:
    return pl.read_parquet(council[0] / "synthetic_truth" / "residents.parquet")


@pytest.fixture(scope="module")
def truth(council) -> pl.DataFrame:
    return pl.read_parquet(council[0] / "synthetic_truth" / "truth.parquet")


@pytest.fixture(scope="module")
def extracts(council) -> dict[str, pl.DataFrame]:
    return {department: read_extract(council[0], department) for department in DEPARTMENTS}


# ------------------------------------------------------------------------------- contracts


@pytest.mark.parametrize("department", DEPARTMENTS)
def test_layout_is_the_contracts_names_in_order(department):
    columns = contract_columns(department)
    assert list(LAYOUTS[department]) == [c["name"] for c in columns]
    assert list(LAYOUTS[department].values()) == [c["physicalName"] for c in columns]


@pytest.mark.parametrize("department", DEPARTMENTS)
def test_extract_has_the_contracts_raw_columns(extracts, department):
    assert extracts[department].columns == [c["physicalName"] for c in contract_columns(department)]
    assert extracts[department].height > 0


@pytest.mark.parametrize("department", DEPARTMENTS)
def test_extract_meets_its_contract(extracts, department):
    frame = extracts[department]
    for column in contract_columns(department):
        values = frame.get_column(column["physicalName"])
        present = values.drop_nulls()
        where = f"{department}.{column['physicalName']}"
        if column.get("required"):
            assert values.null_count() == 0, where
        if column.get("unique"):
            assert values.n_unique() == frame.height, where
        options = column.get("logicalTypeOptions", {})
        if "pattern" in options:
            assert present.str.contains(options["pattern"]).all(), where
        if "format" in options:
            assert present.str.to_date(options["format"], strict=False).null_count() == 0, where
        if "minimum" in options:
            assert present.cast(pl.Float64).min() >= options["minimum"], where
            assert present.cast(pl.Float64).max() <= options["maximum"], where
        for rule in column.get("quality", []):
            if rule.get("metric") == "invalidValues":
                allowed = rule["arguments"]["validValues"]
                assert present.is_in(allowed).all(), where


def test_formats_are_what_the_systems_export(council):
    root = council[0]
    council_tax = extract_path(root, "council_tax").read_bytes()
    assert council_tax.split(b"\r\n")[0].count(b";") == len(LAYOUTS["council_tax"]) - 1
    assert b"\r\n" in council_tax
    # Windows-1252, with names that need it: not valid UTF-8, round-trips through cp1252.
    assert any(byte >= 0x80 for byte in council_tax)
    with pytest.raises(UnicodeDecodeError):
        council_tax.decode("utf-8")
    assert council_tax.decode("cp1252").encode("cp1252") == council_tax
    asc = extract_path(root, "adult_social_care").read_text(encoding="utf-8")
    assert asc.splitlines()[0].startswith("Client ID,NHS Number,")
    assert extract_path(root, "childrens_services").read_bytes()[:2] == b"PK"  # a zip: XLSX
    assert extract_path(root, "benefits").read_bytes()[:4] == b"PAR1"
    first = extract_path(root, "housing").read_text().splitlines()[0]
    assert first.startswith("{") and first.endswith("}")


def test_identifier_formatting_differs_by_department(extracts):
    asc_nhs = extracts["adult_social_care"].get_column("NHS Number").drop_nulls()
    assert asc_nhs.str.contains(r"^\d{3} \d{3} \d{4}$").mean() > 0.7
    children = extracts["childrens_services"]
    assert children.get_column("NHSNumber").drop_nulls().str.contains(r"^\d{10}$").all()
    assert children.get_column("NHSNumber").null_count() > 0  # often missing
    assert (
        children.get_column("FirstName") == children.get_column("FirstName").str.to_uppercase()
    ).all()
    assert not children.get_column("Postcode").str.contains(" ").any()
    housing_ni = extracts["housing"].get_column("ni_number").drop_nulls()
    assert housing_ni.str.contains("[a-z]").any() and housing_ni.str.contains(" ").any()
    assert extracts["housing"].get_column("postcode").str.contains("[a-z]").any()
    assert extracts["benefits"].get_column("nino").str.contains(r"^[A-Z]{2}\d{6}[A-D]$").all()
    assert extracts["adult_social_care"].get_column("Gender").is_in(["Female", "Male"]).all()


def test_benefits_dates_are_parquet_dates(council):
    schema = pl.read_parquet_schema(extract_path(council[0], "benefits"))
    assert schema["date_of_birth"] == pl.Date
    assert schema["weekly_amount"] == pl.Float64


# ----------------------------------------------------------------------------- identifiers


def test_nhs_numbers_are_synthetic_and_valid(residents, extracts):
    assert residents.get_column("nhs_number").n_unique() == residents.height
    assert all(nhs_is_valid(n) for n in residents.get_column("nhs_number"))
    for department, column in (
        ("adult_social_care", "NHS Number"),
        ("childrens_services", "NHSNumber"),
    ):
        written = extracts[department].get_column(column).drop_nulls()
        assert all(nhs_is_valid(digits(n)) for n in written), department


def test_ni_numbers_have_a_valid_format(residents):
    ni = residents.get_column("ni_number")
    assert ni.drop_nulls().str.contains(r"^[A-Z]{2}\d{6}[A-D]$").all()
    assert ni.drop_nulls().str.slice(0, 2).is_in(list(NI_PREFIXES)).all()
    assert ni.drop_nulls().n_unique() == ni.drop_nulls().len()
    # Only people of 16 and over have been issued one.
    assert residents.filter(pl.col("ni_number").is_null()).get_column("age").max() < 16


def test_population_uses_the_shipped_codes(residents):
    ethnicity = pl.read_csv(
        CONTRACTS / "hierarchies" / "ethnicity.csv",
        separator=";",
        has_header=False,
        new_columns=["code", "group", "top"],
    )
    ethnicity = ethnicity.get_column("code")
    assert residents.get_column("ethnicity").is_in(ethnicity.to_list()).all()
    assert set(residents.get_column("sex")) == {"F", "M"}
    geography = load_geography()
    assert residents.get_column("postcode").is_in(geography.get_column("postcode").to_list()).all()
    assert residents.get_column("uprn").str.contains(r"^\d{12}$").all()
    # One address per household; every household has one reference person.
    per_household = residents.group_by("household_id").agg(
        pl.col("uprn").n_unique(), pl.col("is_household_reference").sum()
    )
    assert (per_household.get_column("uprn") == 1).all()
    assert (per_household.get_column("is_household_reference") == 1).all()
    assert residents.unique("household_id").get_column("uprn").is_unique().all()


def test_age_structure_is_plausible(residents):
    under_18 = (residents.get_column("age") < 18).mean()
    over_65 = (residents.get_column("age") >= 65).mean()
    assert 0.15 < under_18 < 0.28 and 0.12 < over_65 < 0.25


# ---------------------------------------------------------------------------- ground truth


def test_every_extract_row_has_exactly_one_resident(extracts, truth, residents):
    assert truth.columns[:3] == ["department", "record_id", "resident_id"]
    assert truth.select("department", "record_id").is_unique().all()
    assert (
        truth.get_column("resident_id").is_in(residents.get_column("resident_id").to_list()).all()
    )
    for department in DEPARTMENTS:
        ids = extracts[department].get_column(LAYOUTS[department]["record_id"])
        expected = truth.filter(pl.col("department") == department).get_column("record_id")
        assert sorted(ids.to_list()) == sorted(expected.to_list()), department


def test_departments_overlap_realistically(truth, residents):
    households = residents.get_column("household_id").n_unique()
    adults = (residents.get_column("age") >= 18).sum()
    count = dict(truth.group_by("department").agg(pl.col("resident_id").n_unique()).iter_rows())
    assert count["council_tax"] == households
    assert 0.16 < count["housing"] / households < 0.24
    assert 0.10 < count["benefits"] / adults < 0.18
    assert 0.01 < count["adult_social_care"] / adults < 0.04
    people = truth.unique(["department", "resident_id"]).group_by("resident_id").len()
    assert (people.get_column("len") >= 2).sum() > 0.05 * households
    asc = truth.filter(pl.col("department") == "adult_social_care").join(
        residents, on="resident_id"
    )
    assert (asc.get_column("age") >= 65).mean() > 0.5  # skewed to older people


def test_summary_reports_counts_and_paths(council, extracts):
    root, summary = council
    assert summary.residents == RESIDENTS
    assert summary.rows == {d: extracts[d].height for d in DEPARTMENTS}
    assert all(path.is_file() for path in summary.files)
    assert {path.name for path in summary.files} >= {"truth.parquet", "residents.parquet"}
    assert not list(root.rglob("*.tmp"))


# ----------------------------------------------------------------------- determinism, noise


def test_same_seed_gives_byte_identical_files(tmp_path):
    generate_council(tmp_path / "a", 300, 5)
    generate_council(tmp_path / "b", 300, 5)
    generate_council(tmp_path / "c", 300, 6)
    assert file_hashes(tmp_path / "a") == file_hashes(tmp_path / "b")
    assert file_hashes(tmp_path / "a") != file_hashes(tmp_path / "c")


def test_noise_changes_identifiers_only(tmp_path, council, extracts, truth):
    clean_root = tmp_path / "clean"
    generate_council(clean_root, RESIDENTS, SEED, noise=0.0)
    clean_truth = pl.read_parquet(clean_root / "synthetic_truth" / "truth.parquet")
    assert (clean_truth.get_column("noise") == "").all()
    assert (truth.get_column("noise") != "").sum() > 0
    changed_somewhere = set()
    for department in DEPARTMENTS:
        clean = read_extract(clean_root, department)
        noisy = extracts[department]
        assert clean.height == noisy.height
        for canonical, raw in LAYOUTS[department].items():
            same = clean.get_column(raw).equals(noisy.get_column(raw))
            if canonical in IDENTIFIER_FIELDS:
                changed_somewhere |= set() if same else {canonical}
            else:
                assert same, f"{department}.{raw} changed with noise"
    assert {"forename", "surname", "postcode", "date_of_birth"} <= changed_somewhere
    assert clean_truth.drop("noise").equals(truth.drop("noise"))


def test_without_noise_identifiers_match_the_population(tmp_path, residents):
    root = tmp_path / "clean"
    generate_council(root, RESIDENTS, SEED, noise=0.0)
    truth = pl.read_parquet(root / "synthetic_truth" / "truth.parquet")
    benefits = (
        read_extract(root, "benefits")
        .join(
            truth.filter(pl.col("department") == "benefits"),
            left_on="claim_id",
            right_on="record_id",
        )
        .join(residents, on="resident_id", suffix="_true")
    )
    assert (benefits.get_column("nino") == benefits.get_column("ni_number")).all()
    assert (benefits.get_column("surname") == benefits.get_column("surname_true")).all()
    assert (benefits.get_column("postcode") == benefits.get_column("postcode_true")).all()
    children = (
        read_extract(root, "childrens_services")
        .join(truth, left_on="ChildID", right_on="record_id")
        .join(residents, on="resident_id")
    )
    assert (
        children.get_column("LastName") == children.get_column("surname").str.to_uppercase()
    ).all()
    assert (
        children.get_column("DOB") == children.get_column("date_of_birth").cast(pl.String)
    ).all()


# ------------------------------------------------------------------------- errors, privacy


@pytest.mark.parametrize(
    "arguments",
    [{"residents": 0}, {"residents": -5}, {"seed": -1}, {"noise": 0.9}, {"noise": -0.1}],
)
def test_bad_arguments_are_user_errors(tmp_path, arguments):
    call = {"root": tmp_path, "residents": 10, "seed": 1} | arguments
    with pytest.raises(UserError):
        generate_council(**call)
    assert not (tmp_path / "landing").exists()


def test_logs_carry_no_identifier_values(tmp_path, caplog):
    with caplog.at_level(logging.DEBUG, logger="transforms.synthetic"):
        generate_council(tmp_path, 200, 3)
    residents = pl.read_parquet(tmp_path / "synthetic_truth" / "residents.parquet")
    words = set(re.findall(r"[\w']+", caplog.text))
    for column in ("nhs_number", "ni_number", "surname", "uprn", "postcode"):
        assert not words & set(residents.get_column(column).drop_nulls()), column
    assert caplog.records  # it does log: counts only


def test_a_tiny_council_still_writes_every_extract(tmp_path):
    summary = generate_council(tmp_path, 1, 0, extract_date=dt.date(2025, 4, 1))
    # every extract, the opt-out register, and three ground-truth files
    assert len(summary.files) == len(DEPARTMENTS) + 4
    assert all(path.is_file() and "20250401" in path.name for path in summary.files[:5])


# ------------------------------------------------------------------------------- geography


def test_geography_is_fictional_and_complete():
    geography = load_geography()
    assert geography.get_column("postcode").str.contains(r"^ZZ[1-8] \d[A-Z]{2}$").all()
    assert geography.get_column("postcode").is_unique().all()
    assert (
        geography.get_column("postcode").str.slice(0, 5) == geography.get_column("postcode_sector")
    ).all()
    assert geography.get_column("lsoa_code").str.starts_with("E01999").all()
    assert geography.get_column("ward_code").str.starts_with("E05999").all()
    assert geography.get_column("ward_code").n_unique() == 16
    per_lsoa = geography.group_by("lsoa_code").agg(pl.len(), pl.col("ward_code").n_unique())
    assert per_lsoa.get_column("len").is_between(10, 15).all()
    assert (per_lsoa.get_column("ward_code") == 1).all()


def test_lsoa_hierarchy_covers_the_geography():
    hierarchy = pl.read_csv(
        CONTRACTS / "hierarchies" / "lsoa.csv",
        separator=";",
        has_header=False,
        new_columns=["lsoa", "ward", "top"],
    )
    lookup = load_geography().select("lsoa_code", "ward_code").unique().sort("lsoa_code")
    assert hierarchy.select("lsoa", "ward").sort("lsoa").rows() == lookup.rows()
    assert (hierarchy.get_column("top") == "*").all()


def test_invalid_rows_break_only_the_postcode_and_leave_the_rest_byte_identical(tmp_path):
    from transforms.synthetic.extracts import UNKNOWN_POSTCODE

    generate_council(tmp_path / "clean", 2000, 3, invalid=0.0)
    generate_council(tmp_path / "broken", 2000, 3, invalid=0.05)
    clean = tmp_path / "clean" / "landing" / "benefits"
    broken = tmp_path / "broken" / "landing" / "benefits"
    [a] = clean.glob("*.parquet")
    [b] = broken.glob("*.parquet")
    before, after = pl.read_parquet(a), pl.read_parquet(b)
    changed = before["postcode"] != after["postcode"]
    assert 0 < changed.sum() < 0.2 * before.height
    assert set(after.filter(changed)["postcode"]) == {UNKNOWN_POSTCODE}
    assert before.drop("postcode").equals(after.drop("postcode"))
    # Other files and the ground truth do not move.
    for name in ("synthetic_truth/truth.parquet", "synthetic_truth/residents.parquet"):
        assert (tmp_path / "clean" / name).read_bytes() == (tmp_path / "broken" / name).read_bytes()
