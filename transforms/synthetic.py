"""The seeded synthetic council: a resident population and one extract per department.

`generate_council` builds a population of residents living in households at addresses on the
shipped synthetic geography (UPRN -> postcode -> LSOA -> ward), then writes one extract per
department for an overlapping subset of them, in the layouts and file formats the departments'
systems really export (see `data_contracts/*.odcs.yaml`). It keeps the ground truth of which
resident each extract row belongs to, for linkage tests.

Three independent random streams per department keep the output easy to reason about:
- selection: who appears, and their non-identifying fields (support reason, band, ...);
- format: how the department's system writes identifiers (spacing, case, missing values), always on;
- noise: realistic identifier errors on top (nicknames, typos, day-month swaps, a previous
  address, a missing NHS/NI number), at rate `noise`. Every uniform is drawn whatever the rate,
  so the same records are selected and formatted at any rate, and the records changed at a low
  rate are a subset of those changed at a higher one.

Faker is imported here and nowhere else (DESIGN.md, layers): it builds small vocabularies of names
and streets once per seed; NumPy and Polars do the volume. Nothing here prints or logs an
identifier value; log lines carry counts only.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import xlsxwriter
from faker import Faker

from schemas.errors import UserError
from transforms.geography import load_geography

log = logging.getLogger(__name__)

DEFAULT_NOISE = 0.02
DEFAULT_EXTRACT_DATE = dt.date(2026, 10, 31)
MAX_RESIDENTS = 20_000_000

DEPARTMENTS = ("adult_social_care", "childrens_services", "housing", "council_tax", "benefits")
EXTENSIONS = {
    "adult_social_care": "csv",
    "childrens_services": "xlsx",
    "housing": "ndjson",
    "council_tax": "csv",
    "benefits": "parquet",
}
CHILDRENS_SHEET = "Children"
COUNCIL_TAX_ENCODING = "cp1252"  # Windows-1252, as the contract's customProperties say

# The export layout of each department's system: canonical name -> raw column name, in file
# order. These are the contracts' `name` -> `physicalName`; tests hold them to the contracts.
LAYOUTS: dict[str, dict[str, str]] = {
    "adult_social_care": {
        "record_id": "Client ID",
        "nhs_number": "NHS Number",
        "forename": "Forename",
        "surname": "Surname",
        "date_of_birth": "Date of Birth",
        "sex": "Gender",
        "ethnicity": "Ethnicity",
        "postcode": "Postcode",
        "support_reason": "Primary Support Reason",
        "service_type": "Service Type",
        "support_start_date": "Start Date",
    },
    "childrens_services": {
        "record_id": "ChildID",
        "nhs_number": "NHSNumber",
        "forename": "FirstName",
        "surname": "LastName",
        "date_of_birth": "DOB",
        "sex": "Gender",
        "ethnicity": "Ethnicity",
        "postcode": "Postcode",
        "uprn": "UPRN",
        "care_status": "CareStatus",
        "referral_date": "ReferralDate",
    },
    "housing": {
        "record_id": "tenancy_ref",
        "uprn": "uprn",
        "ni_number": "ni_number",
        "forename": "first_name",
        "surname": "last_name",
        "date_of_birth": "birth_date",
        "postcode": "postcode",
        "tenure": "tenure",
        "household_size": "household_size",
        "in_rent_arrears": "rent_arrears",
    },
    "council_tax": {
        "record_id": "Account Ref",
        "forename": "Forename",
        "surname": "Surname",
        "date_of_birth": "DOB",
        "ni_number": "NI Number",
        "postcode": "Postcode",
        "uprn": "UPRN",
        "band": "Band",
        "single_person_discount": "Single Person Discount",
    },
    "benefits": {
        "record_id": "claim_id",
        "ni_number": "nino",
        "forename": "forename",
        "surname": "surname",
        "date_of_birth": "date_of_birth",
        "sex": "sex",
        "postcode": "postcode",
        "uprn": "uprn",
        "benefit_type": "benefit_type",
        "weekly_amount": "weekly_amount",
    },
}
# Fields a noise step may change; everything else in an extract is identical at any noise rate.
IDENTIFIER_FIELDS = (
    "nhs_number",
    "ni_number",
    "forename",
    "surname",
    "date_of_birth",
    "postcode",
    "uprn",
)

# fmt: off
# Mid-2021-like age structure of an English borough: (first age, last age, share %).
AGE_BANDS = (
    (0, 4, 5.4), (5, 9, 5.9), (10, 14, 6.0), (15, 19, 5.7), (20, 24, 6.0), (25, 29, 6.6),
    (30, 34, 6.9), (35, 39, 6.7), (40, 44, 6.3), (45, 49, 6.3), (50, 54, 6.9), (55, 59, 6.8),
    (60, 64, 6.0), (65, 69, 5.1), (70, 74, 5.0), (75, 79, 3.7), (80, 84, 2.4), (85, 89, 1.4),
    (90, 99, 0.8),
)
MEAN_HOUSEHOLD_SIZE = 2.36  # Census 2021, England
# ONS 2021 19-category ethnic group, codes as in data_contracts/hierarchies/ethnicity.csv;
# shares (%) close to England's 2021 Census.
ETHNICITY_WEIGHTS = {
    "A1": 3.1, "A2": 2.7, "A3": 1.1, "A4": 0.7, "A5": 1.6,
    "B1": 2.5, "B2": 1.0, "B3": 0.5,
    "M1": 0.9, "M2": 0.4, "M3": 0.8, "M4": 0.7,
    "W1": 73.5, "W2": 0.9, "W3": 0.1, "W4": 0.2, "W5": 6.2,
    "O1": 0.6, "O2": 1.6,
}
# Names Windows-1252 can encode but ASCII cannot, and names with apostrophes, hyphens and
# spaces, so the council tax export and every normaliser meet them.
EXTRA_FORENAMES_F = ("Zoë", "Chloé", "Renée", "Siân", "Anaïs", "Gráinne", "Éabha", "Noémie")
EXTRA_FORENAMES_M = ("Seán", "Noël", "José", "André", "Dónal", "Ciarán", "Rónán", "Jérôme")
EXTRA_SURNAMES = (
    "O'Brien", "O'Neill", "D'Souza", "Brontë", "Núñez", "Gómez", "Müller", "Smith-Jones",
    "Lloyd-Davies", "MacDonald", "Ó Súilleabháin",
)
EXTRA_NAME_SHARE = 0.015
# Faker's en_GB street suffixes include American ones ("Prairie", "Tunnel"); these are British.
STREET_SUFFIXES = (
    "Road", "Street", "Lane", "Avenue", "Close", "Drive", "Gardens", "Way", "Crescent", "Grove",
    "Place", "Terrace", "Court", "Mews", "Rise", "Walk",
)
NICKNAMES = {
    "William": "Bill", "Robert": "Bob", "Richard": "Rick", "James": "Jim", "Thomas": "Tom",
    "Michael": "Mike", "Christopher": "Chris", "Daniel": "Dan", "Matthew": "Matt",
    "Anthony": "Tony", "Joseph": "Joe", "Samuel": "Sam", "Benjamin": "Ben", "Alexander": "Alex",
    "Edward": "Ed", "Nicholas": "Nick", "Stephen": "Steve", "Steven": "Steve", "Andrew": "Andy",
    "David": "Dave", "Peter": "Pete", "Timothy": "Tim", "Philip": "Phil", "Kenneth": "Ken",
    "Ronald": "Ron", "Jonathan": "Jon", "Joshua": "Josh", "Frederick": "Fred", "Gregory": "Greg",
    "Elizabeth": "Liz", "Margaret": "Maggie", "Katherine": "Kate", "Catherine": "Cathy",
    "Jennifer": "Jenny", "Rebecca": "Becky", "Victoria": "Vicky", "Samantha": "Sam",
    "Deborah": "Debbie", "Susan": "Sue", "Patricia": "Pat", "Jacqueline": "Jackie",
    "Charlotte": "Lottie", "Eleanor": "Ellie", "Amanda": "Mandy", "Christine": "Chris",
    "Alexandra": "Alex", "Josephine": "Jo", "Joanne": "Jo", "Abigail": "Abbie", "Nicola": "Nicky",
    "Kimberley": "Kim", "Stephanie": "Steph", "Jessica": "Jess", "Natalie": "Nat",
}
# National Insurance prefixes: first letter not D F I Q U V, second not D F I O Q U V, and a few
# pairs never allocated (HMRC NIM39110).
_NI_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
_NI_SECOND = "ABCEGHJKLMNPRSTWXYZ"
_NI_NEVER = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}
NI_PREFIXES = tuple(a + b for a in _NI_FIRST for b in _NI_SECOND if a + b not in _NI_NEVER)
COUNCIL_TAX_BANDS = ("A", "B", "C", "D", "E", "F", "G", "H")
COUNCIL_TAX_BAND_WEIGHTS = (0.19, 0.20, 0.22, 0.16, 0.11, 0.06, 0.05, 0.01)
SUPPORT_REASONS = (
    "Physical Support",
    "Sensory Support",
    "Support with Memory and Cognition",
    "Learning Disability Support",
    "Mental Health Support",
    "Social Support",
)
SUPPORT_WEIGHTS_UNDER_65 = (0.30, 0.03, 0.03, 0.35, 0.25, 0.04)
SUPPORT_WEIGHTS_65_PLUS = (0.62, 0.05, 0.20, 0.03, 0.06, 0.04)
SERVICE_TYPES = (
    "Home care",
    "Residential care",
    "Nursing care",
    "Day care",
    "Direct payment",
    "Reablement",
)
SERVICE_WEIGHTS = (0.40, 0.18, 0.08, 0.07, 0.20, 0.07)
CARE_STATUSES = ("Child in Need", "Child Protection Plan", "Looked After Child")
CARE_STATUS_WEIGHTS = (0.66, 0.14, 0.20)
TENURES = ("Council", "Housing association", "Temporary accommodation", "Private rented")
TENURE_WEIGHTS = (0.45, 0.30, 0.10, 0.15)
BENEFIT_TYPES = (
    "Housing Benefit",
    "Council Tax Reduction",
    "Discretionary Housing Payment",
    "Local Welfare Assistance",
)
BENEFIT_TAKE_UP = (0.50, 0.80, 0.05, 0.04)  # share of claimants holding each claim
BENEFIT_WEEKLY_MEAN_SD = ((110.0, 35.0), (22.0, 8.0), (30.0, 12.0), (60.0, 30.0))

# fmt: on
# Target shares of the eligible population in each extract (see module docstring of the issue).
BENEFITS_SHARE_OF_ADULTS = 0.135
HOUSING_SHARE_OF_HOUSEHOLDS = 0.20
ASC_SHARE_OF_ADULTS = 0.025
CHILDREN_SHARE_OF_UNDER_18S = 0.035


@dataclass(frozen=True)
class GenerationSummary:
    """What `generate_council` wrote: counts and paths only, never a value."""

    residents: int
    rows: dict[str, int]
    files: list[Path]
    seconds: float


def generate_council(
    root: Path,
    residents: int,
    seed: int,
    noise: float = DEFAULT_NOISE,
    extract_date: dt.date = DEFAULT_EXTRACT_DATE,
) -> GenerationSummary:
    """Write a synthetic council under `root`: `landing/<department>/<department>_<YYYYMMDD>.<ext>`
    for every department, and the ground truth under `synthetic_truth/`."""
    started = time.perf_counter()
    _check_arguments(residents, seed, noise)
    root = Path(root)
    people, households = build_population(residents, seed, extract_date)

    files: list[Path] = []
    rows: dict[str, int] = {}
    truths: list[pl.DataFrame] = []
    stamp = extract_date.strftime("%Y%m%d")
    for department in DEPARTMENTS:
        records = _SELECTORS[department](
            people, households, _rng(seed, "select", department), extract_date
        )
        records = _assign_record_ids(records, department, _rng(seed, "ids", department))
        noisy = apply_noise(
            records,
            households,
            noise,
            _rng(seed, "noise", department),
            fields=_noisy_fields(department),
            required=_REQUIRED.get(department, frozenset()),
        )
        extract = _FORMATTERS[department](noisy, _rng(seed, "format", department))
        extract = extract.select(LAYOUTS[department].keys()).rename(LAYOUTS[department])
        path = root / "landing" / department / f"{department}_{stamp}.{EXTENSIONS[department]}"
        _write_atomically(
            path, lambda target, d=department, e=extract: _WRITERS[d](e, target, extract_date)
        )
        files.append(path)
        rows[department] = extract.height
        truths.append(_truth(records, noisy, department))
        log.info("synthetic %s: %d rows", department, extract.height)

    truth_dir = root / "synthetic_truth"
    truth = pl.concat(truths)
    population = people.join(households, on="household_id", how="left", maintain_order="left").sort(
        "resident_id"
    )
    for name, frame in (("truth.parquet", truth), ("residents.parquet", population)):
        path = truth_dir / name
        _write_atomically(path, lambda target, f=frame: f.write_parquet(target))
        files.append(path)
    seconds = time.perf_counter() - started
    log.info(
        "synthetic council: %d residents, %d extract rows in %.2f s",
        residents,
        sum(rows.values()),
        seconds,
    )
    return GenerationSummary(residents=residents, rows=rows, files=files, seconds=seconds)


def _check_arguments(residents: int, seed: int, noise: float) -> None:
    problems = []
    if isinstance(residents, bool) or not isinstance(residents, int):
        problems.append("residents must be a whole number")
    elif not 1 <= residents <= MAX_RESIDENTS:
        problems.append(f"residents must be between 1 and {MAX_RESIDENTS:,}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        problems.append("seed must be a whole number, 0 or more")
    if not isinstance(noise, int | float) or not 0.0 <= float(noise) <= 0.5:
        problems.append("noise must be a rate between 0 and 0.5")
    if problems:
        raise UserError("; ".join(problems))


def _rng(seed: int, *stream: str) -> np.random.Generator:
    """An independent generator per (seed, stream), stable across runs and Python versions."""
    keys = tuple(zlib.crc32(part.encode()) for part in stream)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=keys))


# --------------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class Vocabulary:
    """Names and streets with their sampling weights; built once per seed."""

    forenames_f: pl.Series
    forenames_f_weights: np.ndarray
    forenames_m: pl.Series
    forenames_m_weights: np.ndarray
    surnames: pl.Series
    surnames_weights: np.ndarray
    streets: pl.Series


def _vocabularies(seed: int, n_streets: int) -> Vocabulary:
    fake = Faker("en_GB")
    fake.seed_instance(seed)
    female = _ranked(fake.first_name_female, 2_000)
    male = _ranked(fake.first_name_male, 2_000)
    surnames = _ranked(fake.last_name, 4_000)
    streets: dict[str, None] = {}  # distinct, so no two postcodes share a street
    while len(streets) < n_streets:
        streets[f"{fake.last_name()} {fake.random_element(STREET_SUFFIXES)}"] = None
    return Vocabulary(
        *_with_extras(female, EXTRA_FORENAMES_F),
        *_with_extras(male, EXTRA_FORENAMES_M),
        *_with_extras(surnames, EXTRA_SURNAMES),
        streets=pl.Series("street", list(streets), pl.String),
    )


def _ranked(draw: Callable[[], str], draws: int) -> list[str]:
    """Distinct values in order of first appearance; the order (seeded) becomes the rank."""
    return list(dict.fromkeys(draw() for _ in range(draws)))


def _with_extras(names: list[str], extras: tuple[str, ...]) -> tuple[pl.Series, np.ndarray]:
    # Zipf-like weights: the commonest name is about 1.5-2.5% of people, as in England.
    weights = 1.0 / (np.arange(len(names)) + 5.0) ** 0.6
    weights = weights / weights.sum() * (1.0 - EXTRA_NAME_SHARE)
    extra_weights = np.full(len(extras), EXTRA_NAME_SHARE / len(extras))
    return (
        pl.Series("name", [*names, *extras], pl.String),
        np.concatenate([weights, extra_weights]),
    )


# --------------------------------------------------------------------------------- population


def build_population(
    residents: int,
    seed: int,
    extract_date: dt.date = DEFAULT_EXTRACT_DATE,
    geography: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """People (one row per resident) and households (one row per occupied address, with its
    postcode, LSOA, ward and council tax band)."""
    geography = load_geography() if geography is None else geography
    vocabulary = _vocabularies(seed, geography.height)
    rng = _rng(seed, "population")
    n = residents
    band = rng.choice(len(AGE_BANDS), size=n, p=_normalised([b[2] for b in AGE_BANDS]))
    first_age = np.array([b[0] for b in AGE_BANDS])[band]
    span = np.array([b[1] - b[0] + 1 for b in AGE_BANDS])[band]
    age_years = first_age + rng.random(n) * span  # exact age in years, continuous
    if not (age_years >= 18.5).any():
        age_years[0] = 40.0  # every household needs an adult
    extract_day = np.datetime64(extract_date, "D")
    dob = extract_day - np.floor(age_years * 365.2425).astype("timedelta64[D]")
    age = _whole_years(dob, extract_date)

    household, head_of = _households(rng, age_years, age)
    n_households = head_of.size
    heads = np.zeros(n, dtype=bool)
    heads[head_of] = True

    female = rng.random(n) < 0.51
    forename_f = _draw(rng, vocabulary.forenames_f, vocabulary.forenames_f_weights, n)
    forename_m = _draw(rng, vocabulary.forenames_m, vocabulary.forenames_m_weights, n)
    own_surname = _draw(rng, vocabulary.surnames, vocabulary.surnames_weights, n)
    # Most people share the household reference person's surname and ethnic group.
    shares_surname = heads | (rng.random(n) < 0.8)
    surname_index = np.where(shares_surname, head_of[household], np.arange(n))
    codes = np.array(list(ETHNICITY_WEIGHTS))
    own_ethnicity = rng.choice(len(codes), size=n, p=_normalised(ETHNICITY_WEIGHTS.values()))
    shares_ethnicity = heads | (rng.random(n) < 0.85)
    ethnicity = codes[own_ethnicity[np.where(shares_ethnicity, head_of[household], np.arange(n))]]

    nhs = synthetic_nhs_numbers(rng, n)
    ni = synthetic_ni_numbers(rng, n)
    has_ni = age >= 16

    people = pl.DataFrame(
        {
            "resident_id": np.arange(1, n + 1, dtype=np.int64),
            "household_id": household.astype(np.int64),
            "is_household_reference": heads,
            "forename": pl.select(
                pl.when(pl.lit(pl.Series(female))).then(forename_f).otherwise(forename_m)
            ).to_series(),
            "surname": own_surname.gather(surname_index),
            "sex": np.where(female, "F", "M"),
            "date_of_birth": pl.Series(dob).cast(pl.Date),
            "age": age.astype(np.int64),
            "ethnicity": ethnicity,
            "nhs_number": nhs,
            "ni_number": ni,
        }
    ).with_columns(
        pl.when(pl.Series(has_ni)).then(pl.col("ni_number")).otherwise(None).alias("ni_number")
    )
    households = _addresses(rng, n_households, geography, vocabulary, people)
    return people, households


def _households(
    rng: np.random.Generator, age_years: np.ndarray, age: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Everyone's household, built around a reference adult, and each household's reference
    person (by household id)."""
    n = age.size
    adults = np.flatnonzero(age >= 18)
    n_households = max(1, min(adults.size, round(n / MEAN_HOUSEHOLD_SIZE)))
    anchors = rng.choice(adults, size=n_households, replace=False)
    anchors = anchors[np.argsort(age_years[anchors], kind="stable")]
    anchor_age = age_years[anchors]
    household = np.full(n, -1, dtype=np.int64)
    household[anchors] = np.arange(n_households)
    others = np.flatnonzero(household < 0)
    own = age_years[others]
    # Partners are of a similar age; children, and half the young adults, live with a parent.
    with_parent = (age[others] < 18) | ((age[others] < 25) & (rng.random(others.size) < 0.5))
    target = np.where(
        with_parent,
        own + rng.uniform(22.0, 40.0, others.size),
        own + rng.normal(0.0, 4.0, others.size),
    )
    position = np.searchsorted(anchor_age, target) + rng.integers(-2, 3, others.size)
    household[others] = np.clip(position, 0, n_households - 1)
    # Household ids in no meaningful order.
    relabel = rng.permutation(n_households)
    head_of = np.empty(n_households, dtype=np.int64)
    head_of[relabel] = anchors
    return relabel[household], head_of


def _addresses(
    rng: np.random.Generator,
    n_households: int,
    geography: pl.DataFrame,
    vocabulary: Vocabulary,
    people: pl.DataFrame,
) -> pl.DataFrame:
    """One address per household: UPRN, house number and street, postcode and its areas."""
    postcodes = geography.with_row_index("postcode_index")
    lsoas = geography.select("lsoa_code", "ward_code").unique("lsoa_code", maintain_order=True)
    wards = lsoas.select("ward_code").unique(maintain_order=True)
    # A deprivation score per LSOA in [0, 1], clustered by ward: poorer areas hold more
    # benefit claimants, tenants, children known to social care and lower council tax bands.
    deprivation = (
        lsoas.with_columns(base=rng.beta(2.0, 2.0, lsoas.height))
        .join(
            wards.with_columns(effect=rng.normal(0.0, 0.15, wards.height)),
            on="ward_code",
            maintain_order="left",
        )
        .select("lsoa_code", deprivation=(pl.col("base") + pl.col("effect")).clip(0.0, 1.0))
    )
    postcode_index = rng.integers(0, geography.height, n_households)
    uprn = 990_000_000_000 + rng.choice(1_000_000_000, size=n_households, replace=False)
    u_band = rng.random(n_households)
    sizes = people.group_by("household_id").agg(
        pl.len().alias("household_size"), (pl.col("age") >= 18).sum().alias("adults")
    )
    return (
        pl.DataFrame(
            {
                "household_id": np.arange(n_households, dtype=np.int64),
                "uprn": uprn.astype(np.int64),
                "postcode_index": postcode_index.astype(np.uint32),
                "u_band": u_band,
                # One street per postcode unit (the vocabulary has one distinct street each).
                "street": vocabulary.streets.gather(postcode_index),
            }
        )
        .join(postcodes, on="postcode_index", how="left", maintain_order="left")
        .join(deprivation, on="lsoa_code", how="left", maintain_order="left")
        .join(sizes, on="household_id", how="left", maintain_order="left")
        .with_columns(
            pl.col("uprn").cast(pl.String),
            (
                (pl.int_range(pl.len()).over("postcode") + 1).cast(pl.String)
                + " "
                + pl.col("street")
            ).alias("address_line"),
            _band_expression().alias("band"),
        )
        .drop("postcode_index", "u_band", "street")
    )


def _band_expression() -> pl.Expr:
    """Council tax band from a uniform draw, shifted towards lower bands in deprived areas."""
    shifted = pl.col("u_band").pow(0.4 + 1.2 * pl.col("deprivation"))
    cumulative = np.cumsum(COUNCIL_TAX_BAND_WEIGHTS)
    expression = pl.lit(COUNCIL_TAX_BANDS[-1])
    for band, upper in reversed(list(zip(COUNCIL_TAX_BANDS[:-1], cumulative[:-1], strict=True))):
        expression = pl.when(shifted < upper).then(pl.lit(band)).otherwise(expression)
    return expression


def _whole_years(dob: np.ndarray, on: dt.date) -> np.ndarray:
    """Completed years of age on a date."""
    years = dob.astype("datetime64[Y]").astype(np.int64) + 1970
    birthday_to_come = _month_day_key(dob) > on.month * 100 + on.day
    return on.year - years - birthday_to_come


def _month_day_key(days: np.ndarray) -> np.ndarray:
    months = days.astype("datetime64[M]")
    month = months.astype(np.int64) % 12 + 1
    day = (days - months).astype(np.int64) + 1
    return month * 100 + day


def _normalised(weights) -> np.ndarray:
    array = np.asarray(list(weights), dtype=float)
    return array / array.sum()


def _draw(rng: np.random.Generator, values: pl.Series, weights: np.ndarray, n: int) -> pl.Series:
    return values.gather(rng.choice(values.len(), size=n, p=weights))


def synthetic_nhs_numbers(rng: np.random.Generator, n: int) -> pl.Series:
    """Distinct NHS numbers in the never-issued 9000000000-9999999999 range, valid mod 11."""
    weights = np.arange(10, 1, -1)  # first nine digits weighted 10..2
    powers = 10 ** np.arange(8, -1, -1)
    found = np.empty(0, dtype=np.int64)
    while found.size < n:
        body = rng.integers(900_000_000, 1_000_000_000, int((n - found.size) * 1.15) + 16)
        check = (11 - ((body[:, None] // powers) % 10) @ weights % 11) % 11
        valid = check != 10  # such a body has no valid check digit: skip it
        found = _distinct(np.concatenate([found, body[valid] * 10 + check[valid]]))
    return pl.Series("nhs_number", found[:n]).cast(pl.String)


def synthetic_ni_numbers(rng: np.random.Generator, n: int) -> pl.Series:
    """Distinct National Insurance numbers: allowed prefix, six digits, suffix A-D."""
    prefixes = len(NI_PREFIXES)
    found = np.empty(0, dtype=np.int64)
    while found.size < n:
        keys = rng.integers(0, prefixes * 1_000_000 * 4, int((n - found.size) * 1.05) + 16)
        found = _distinct(np.concatenate([found, keys]))
    keys = found[:n]
    prefix = pl.Series(NI_PREFIXES).gather(keys // 4_000_000)
    digits = pl.Series((keys // 4) % 1_000_000).cast(pl.String).str.zfill(6)
    suffix = pl.Series(list("ABCD")).gather(keys % 4)
    return (prefix + digits + suffix).alias("ni_number")


def _distinct(values: np.ndarray) -> np.ndarray:
    """Values with repeats removed, first occurrence kept, order preserved."""
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)]


# -------------------------------------------------------------------------------- selection


def _with_address(people: pl.DataFrame, households: pl.DataFrame) -> pl.DataFrame:
    return people.join(
        households.select(
            "household_id", "uprn", "postcode", "deprivation", "household_size", "adults", "band"
        ),
        on="household_id",
        how="left",
        maintain_order="left",  # selection draws are aligned with people's order
    )


def _pick(rng: np.random.Generator, weights: np.ndarray, share: float) -> np.ndarray:
    """Bernoulli selection with probabilities proportional to `weights`, averaging `share`."""
    if weights.size == 0:
        return np.zeros(0, dtype=bool)
    probability = np.clip(weights / weights.mean() * share, 0.0, 0.95)
    chosen = rng.random(weights.size) < probability
    if not chosen.any():  # a contract needs at least one row; keep the likeliest person
        chosen[int(np.argmax(probability))] = True
    return chosen


def _categorical(rng: np.random.Generator, values: tuple[str, ...], weights, n: int) -> np.ndarray:
    return np.asarray(values)[rng.choice(len(values), size=n, p=_normalised(weights))]


def _days_before(
    rng: np.random.Generator, extract_date: dt.date, mean_days: float, not_before: pl.Series
) -> pl.Series:
    """Dates before the extract date, recent ones likelier, never before `not_before`."""
    back = np.floor(rng.exponential(mean_days, not_before.len())).astype("timedelta64[D]")
    dates = pl.Series(np.datetime64(extract_date, "D") - back).cast(pl.Date)
    return pl.select(pl.max_horizontal(dates, not_before)).to_series()


def _select_adult_social_care(people, households, rng, extract_date):
    frame = _with_address(people, households).filter(pl.col("age") >= 18)
    age = frame.get_column("age").to_numpy()
    weight = np.select([age >= 85, age >= 75, age >= 65], [25.0, 10.0, 3.0], 1.0)
    frame = frame.filter(pl.Series(_pick(rng, weight, ASC_SHARE_OF_ADULTS)))
    older = frame.get_column("age").to_numpy() >= 65
    under = _categorical(rng, SUPPORT_REASONS, SUPPORT_WEIGHTS_UNDER_65, frame.height)
    over = _categorical(rng, SUPPORT_REASONS, SUPPORT_WEIGHTS_65_PLUS, frame.height)
    return frame.with_columns(
        support_reason=pl.Series(np.where(older, over, under), dtype=pl.String),
        service_type=pl.Series(
            _categorical(rng, SERVICE_TYPES, SERVICE_WEIGHTS, frame.height), dtype=pl.String
        ),
        support_start_date=_days_before(
            rng, extract_date, 700.0, frame.get_column("date_of_birth")
        ),
    )


def _select_childrens_services(people, households, rng, extract_date):
    frame = _with_address(people, households).filter(pl.col("age") < 18)
    weight = 0.3 + 2.0 * frame.get_column("deprivation").to_numpy()
    frame = frame.filter(pl.Series(_pick(rng, weight, CHILDREN_SHARE_OF_UNDER_18S)))
    return frame.with_columns(
        care_status=pl.Series(
            _categorical(rng, CARE_STATUSES, CARE_STATUS_WEIGHTS, frame.height), dtype=pl.String
        ),
        referral_date=_days_before(rng, extract_date, 300.0, frame.get_column("date_of_birth")),
    )


def _select_housing(people, households, rng, extract_date):
    frame = _with_address(people, households).filter(pl.col("is_household_reference"))
    weight = 0.15 + 2.0 * frame.get_column("deprivation").to_numpy() ** 1.5
    frame = frame.filter(pl.Series(_pick(rng, weight, HOUSING_SHARE_OF_HOUSEHOLDS)))
    tenure = _categorical(rng, TENURES, TENURE_WEIGHTS, frame.height)
    arrears = rng.random(frame.height) < np.where(tenure == "Temporary accommodation", 0.35, 0.22)
    return frame.with_columns(
        tenure=pl.Series(tenure, dtype=pl.String),
        household_size=pl.col("household_size").clip(1, 15).cast(pl.Int64),
        in_rent_arrears=pl.Series(arrears),
    )


def _select_council_tax(people, households, rng, extract_date):
    # One liable party per occupied household: its reference person.
    frame = _with_address(people, households).filter(pl.col("is_household_reference"))
    discount = (frame.get_column("adults").to_numpy() == 1) & (rng.random(frame.height) < 0.92)
    return frame.with_columns(
        single_person_discount=pl.Series(np.where(discount, "Y", "N"), dtype=pl.String)
    )


def _select_benefits(people, households, rng, extract_date):
    frame = _with_address(people, households).filter(pl.col("age") >= 18)
    age = frame.get_column("age").to_numpy()
    age_factor = np.select([age >= 80, age >= 65, age < 25], [1.6, 1.4, 1.0], 0.9)
    weight = age_factor * (0.2 + 2.0 * frame.get_column("deprivation").to_numpy() ** 1.5)
    frame = frame.filter(pl.Series(_pick(rng, weight, BENEFITS_SHARE_OF_ADULTS)))
    # A claimant may hold several claims (commonly Housing Benefit and Council Tax Reduction).
    holds = rng.random((frame.height, len(BENEFIT_TYPES))) < np.asarray(BENEFIT_TAKE_UP)
    holds[~holds.any(axis=1), 1] = True
    claimant, claim = np.nonzero(holds)
    mean_sd = np.asarray(BENEFIT_WEEKLY_MEAN_SD)[claim]
    amount = np.clip(rng.normal(mean_sd[:, 0], mean_sd[:, 1]), 1.0, 2000.0).round(2)
    return frame.gather(claimant).with_columns(
        benefit_type=pl.Series(np.asarray(BENEFIT_TYPES)[claim], dtype=pl.String),
        weekly_amount=pl.Series(amount, dtype=pl.Float64),
    )


_SELECTORS = {
    "adult_social_care": _select_adult_social_care,
    "childrens_services": _select_childrens_services,
    "housing": _select_housing,
    "council_tax": _select_council_tax,
    "benefits": _select_benefits,
}
# Identifiers a contract requires (`required: true`): noise never blanks them.
_REQUIRED = {"benefits": frozenset({"ni_number"})}
# Record references look different in every system.
_RECORD_ID_STYLE = {  # prefix, first number, digits
    "adult_social_care": ("", 1_000_000, 7),
    "childrens_services": ("CH", 100_000, 6),
    "housing": ("TEN-", 100_000, 6),
    "council_tax": ("", 400_000_000, 9),
    "benefits": ("CLM", 10_000_000, 8),
}


def _assign_record_ids(
    records: pl.DataFrame, department: str, rng: np.random.Generator
) -> pl.DataFrame:
    """Rows in no resident order, with ascending references as a system would export them."""
    prefix, first, digits = _RECORD_ID_STYLE[department]
    order = rng.permutation(records.height)
    numbers = first + np.cumsum(rng.integers(1, 4, records.height))
    ids = pl.Series(numbers).cast(pl.String).str.zfill(digits)
    return records.gather(order).with_columns((pl.lit(prefix) + ids).alias("record_id"))


# ------------------------------------------------------------------------------------ noise


def _noisy_fields(department: str) -> frozenset[str]:
    """The identifiers a department exports; noise touches only these."""
    return frozenset(LAYOUTS[department]) & frozenset(IDENTIFIER_FIELDS)


def apply_noise(
    records: pl.DataFrame,
    households: pl.DataFrame,
    noise: float,
    rng: np.random.Generator,
    fields: frozenset[str] = frozenset(IDENTIFIER_FIELDS),
    required: frozenset[str] = frozenset(),
) -> pl.DataFrame:
    """Realistic identifier errors on canonical values, each at a rate derived from `noise`.

    forename: a nickname where one is common, else a typo (rate noise); surname: a typo
    (noise / 2); date of birth: day and month swapped where both could be a month (noise / 2);
    address: a previous address, another household's postcode and UPRN (noise); NHS and NI
    number: missing (noise each, only where the contract allows it). Only `fields` change;
    the draws are the same whatever the rate and the fields.
    """
    n = records.height
    u = rng.random((7, n))
    position = rng.random((2, n))
    operation = rng.integers(0, 4, (2, n))
    alphabet = pl.Series(list("abcdefghijklmnopqrstuvwxyz"))
    letter = alphabet.gather(rng.integers(0, 26, 2 * n))
    previous = rng.integers(0, households.height, n)
    previous_address = households.select("uprn", "postcode").gather(previous)
    frame = records.with_columns(
        _u0=u[0] < noise,
        _u1=u[1] < noise / 2,
        _u2=u[2] < noise / 2,
        _u3=u[3] < noise,
        _u4=u[4] < noise,
        _u5=u[5] < noise,
        _pos0=position[0],
        _pos1=position[1],
        _op0=operation[0],
        _op1=operation[1],
        _letter0=letter[:n],
        _letter1=letter[n:],
        _previous_uprn=previous_address.get_column("uprn"),
        _previous_postcode=previous_address.get_column("postcode"),
    )
    nickname = pl.col("forename").replace_strict(NICKNAMES, default=None, return_dtype=pl.String)
    day = pl.col("date_of_birth").dt.day()
    month = pl.col("date_of_birth").dt.month()
    swapped = pl.date(pl.col("date_of_birth").dt.year(), day, month)
    columns = [
        pl.when(pl.col("_u0") & nickname.is_not_null())
        .then(nickname)
        .otherwise(
            _typo("forename", pl.col("_u0"), pl.col("_pos0"), pl.col("_op0"), pl.col("_letter0"))
        )
        .alias("forename"),
        _typo("surname", pl.col("_u1"), pl.col("_pos1"), pl.col("_op1"), pl.col("_letter1")).alias(
            "surname"
        ),
        pl.when(pl.col("_u2") & (day <= 12) & (day != month))
        .then(swapped)
        .otherwise(pl.col("date_of_birth"))
        .alias("date_of_birth"),
        pl.when(pl.col("_u3"))
        .then(pl.col("_previous_postcode"))
        .otherwise(pl.col("postcode"))
        .alias("postcode"),
        pl.when(pl.col("_u3"))
        .then(pl.col("_previous_uprn"))
        .otherwise(pl.col("uprn"))
        .alias("uprn"),
    ]
    for name, flag in (("nhs_number", "_u4"), ("ni_number", "_u5")):
        if name not in required:
            columns.append(pl.when(pl.col(flag)).then(None).otherwise(pl.col(name)).alias(name))
    columns = [column for column in columns if column.meta.output_name() in fields]
    return frame.with_columns(columns).drop(pl.selectors.starts_with("_"))


def _typo(
    name: str, flag: pl.Expr, position: pl.Expr, operation: pl.Expr, letter: pl.Expr
) -> pl.Expr:
    """One keying error (substitute, drop, swap or double a letter), never the first letter."""
    text = pl.col(name)
    length = text.str.len_chars()
    at = (position * (length - 1)).floor().cast(pl.Int64) + 1
    swap_at = pl.min_horizontal(at, length - 2)
    substitute = text.str.slice(0, at) + letter + text.str.slice(at + 1)
    drop = text.str.slice(0, at) + text.str.slice(at + 1)
    swap = (
        text.str.slice(0, swap_at)
        + text.str.slice(swap_at + 1, 1)
        + text.str.slice(swap_at, 1)
        + text.str.slice(swap_at + 2)
    )
    double = text.str.slice(0, at + 1) + text.str.slice(at)
    typo = (
        pl.when(operation == 0)
        .then(substitute)
        .when(operation == 1)
        .then(drop)
        .when(operation == 2)
        .then(swap)
        .otherwise(double)
    )
    return pl.when(flag & (length >= 3)).then(typo).otherwise(text)


def _truth(records: pl.DataFrame, noisy: pl.DataFrame, department: str) -> pl.DataFrame:
    """Who each record is, and which identifiers noise changed (empty string: none)."""
    changed = [
        pl.when(pl.col(name).ne_missing(pl.col(f"{name}_noisy"))).then(pl.lit(name))
        for name in IDENTIFIER_FIELDS
        if name in noisy.columns
    ]
    noisy_ids = noisy.select(
        "record_id",
        *[
            pl.col(name).alias(f"{name}_noisy")
            for name in IDENTIFIER_FIELDS
            if name in noisy.columns
        ],
    )
    return (
        records.select(
            "record_id", "resident_id", *[c for c in IDENTIFIER_FIELDS if c in noisy.columns]
        )
        .join(noisy_ids, on="record_id", how="left", maintain_order="left")
        .select(
            pl.lit(department).alias("department"),
            "record_id",
            "resident_id",
            pl.concat_str(changed, separator=",", ignore_nulls=True).alias("noise"),
        )
        .unique("record_id", maintain_order=True)
    )


# ------------------------------------------------------------------------------- formatting


def _choose(rng: np.random.Generator, n: int, weights) -> pl.Series:
    return pl.Series(rng.choice(len(weights), size=n, p=_normalised(weights)), dtype=pl.Int64)


def _sometimes(rng: np.random.Generator, n: int, rate: float | np.ndarray) -> pl.Series:
    """A flag per row, true at `rate` (a number, or one per row)."""
    return pl.Series(rng.random(n) < rate)


def _blank(name: str, missing: pl.Series) -> pl.Expr:
    return pl.when(pl.lit(missing)).then(None).otherwise(pl.col(name)).alias(name)


def _nhs_spaced(separator: str) -> pl.Expr:
    nhs = pl.col("nhs_number")
    return nhs.str.slice(0, 3) + separator + nhs.str.slice(3, 3) + separator + nhs.str.slice(6)


def _ni_spaced() -> pl.Expr:
    ni = pl.col("ni_number")
    return pl.concat_str(
        [
            ni.str.slice(0, 2),
            ni.str.slice(2, 2),
            ni.str.slice(4, 2),
            ni.str.slice(6, 2),
            ni.str.slice(8),
        ],
        separator=" ",
    )


def _dates(*names: str, format: str) -> list[pl.Expr]:
    return [pl.col(name).dt.strftime(format).alias(name) for name in names]


def _format_adult_social_care(frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    n = frame.height
    nhs_style = _choose(rng, n, (0.85, 0.10, 0.05))
    return frame.with_columns(
        pl.when(pl.lit(nhs_style) == 0)
        .then(_nhs_spaced(" "))
        .when(pl.lit(nhs_style) == 1)
        .then(pl.col("nhs_number"))
        .otherwise(_nhs_spaced("-"))
        .alias("nhs_number"),
        pl.when(pl.lit(_sometimes(rng, n, 0.10)))
        .then(pl.col("postcode").str.replace(" ", ""))
        .otherwise(pl.col("postcode"))
        .alias("postcode"),
        pl.col("sex").replace_strict({"F": "Female", "M": "Male"}, return_dtype=pl.String),
        *_dates("date_of_birth", "support_start_date", format="%d/%m/%Y"),
    ).with_columns(
        _blank("nhs_number", _sometimes(rng, n, 0.04)),
        _blank("ethnicity", _sometimes(rng, n, 0.08)),
    )


def _format_childrens_services(frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    n = frame.height
    # NHS numbers are often missing, mostly for recent referrals.
    days_open = (
        (frame.get_column("referral_date").max() - frame.get_column("referral_date"))
        .dt.total_days()
        .to_numpy()
        if n
        else np.zeros(0)
    )
    nhs_missing = _sometimes(rng, n, np.where(days_open < 90, 0.6, 0.15))
    return frame.with_columns(
        pl.col("forename").str.to_uppercase(),
        pl.col("surname").str.to_uppercase(),
        pl.col("postcode").str.replace(" ", ""),
        *_dates("date_of_birth", "referral_date", format="%Y-%m-%d"),
    ).with_columns(
        _blank("nhs_number", nhs_missing),
        _blank("ethnicity", _sometimes(rng, n, 0.05)),
        _blank("uprn", _sometimes(rng, n, 0.20)),
    )


def _format_housing(frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    n = frame.height
    name_case = pl.lit(_choose(rng, n, (0.85, 0.10, 0.05)))
    ni_style = pl.lit(_choose(rng, n, (0.40, 0.30, 0.15, 0.10, 0.05)))
    postcode_style = pl.lit(_choose(rng, n, (0.60, 0.20, 0.15, 0.05)))
    ni, postcode = pl.col("ni_number"), pl.col("postcode")
    return frame.with_columns(
        *[
            pl.when(name_case == 1)
            .then(pl.col(name).str.to_uppercase())
            .when(name_case == 2)
            .then(pl.col(name).str.to_lowercase())
            .otherwise(pl.col(name))
            .alias(name)
            for name in ("forename", "surname")
        ],
        pl.when(ni_style == 1)
        .then(_ni_spaced())
        .when(ni_style == 2)
        .then(ni.str.to_lowercase())
        .when(ni_style == 3)
        .then(_ni_spaced().str.to_lowercase())
        .when(ni_style == 4)
        .then(" " + ni + " ")
        .otherwise(ni)
        .alias("ni_number"),
        pl.when(postcode_style == 1)
        .then(postcode.str.to_lowercase())
        .when(postcode_style == 2)
        .then(postcode.str.replace(" ", ""))
        .when(postcode_style == 3)
        .then(postcode.str.replace(" ", "").str.to_lowercase())
        .otherwise(postcode)
        .alias("postcode"),
        *_dates("date_of_birth", format="%Y-%m-%d"),
    ).with_columns(_blank("ni_number", _sometimes(rng, n, 0.15)))


def _format_council_tax(frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    n = frame.height
    return frame.with_columns(
        _ni_spaced().alias("ni_number"),
        *_dates("date_of_birth", format="%d-%m-%Y"),
    ).with_columns(
        _blank("date_of_birth", _sometimes(rng, n, 0.55)),
        _blank("ni_number", _sometimes(rng, n, 0.60)),
    )


def _format_benefits(frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    return frame.with_columns(_blank("uprn", _sometimes(rng, frame.height, 0.10)))


_FORMATTERS = {
    "adult_social_care": _format_adult_social_care,
    "childrens_services": _format_childrens_services,
    "housing": _format_housing,
    "council_tax": _format_council_tax,
    "benefits": _format_benefits,
}


# ---------------------------------------------------------------------------------- writers


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write beside the target and rename, so a reader never sees half a file. The temporary
    name ends in `.tmp`, which no contract's file pattern matches."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _write_csv(frame: pl.DataFrame, path: Path, extract_date: dt.date) -> None:
    frame.write_csv(path)


def _write_xlsx(frame: pl.DataFrame, path: Path, extract_date: dt.date) -> None:
    workbook = xlsxwriter.Workbook(str(path))
    # A fixed creation time makes the file byte-identical for a seed.
    created = dt.datetime.combine(extract_date, dt.time())
    workbook.set_properties({"created": created, "title": "Children's services open cases"})
    try:
        frame.write_excel(workbook=workbook, worksheet=CHILDRENS_SHEET, autofit=False)
    finally:
        workbook.close()


def _write_ndjson(frame: pl.DataFrame, path: Path, extract_date: dt.date) -> None:
    frame.write_ndjson(path)


def _write_windows_csv(frame: pl.DataFrame, path: Path, extract_date: dt.date) -> None:
    text = frame.write_csv(separator=";", line_terminator="\r\n")
    path.write_bytes(text.encode(COUNCIL_TAX_ENCODING))


def _write_parquet(frame: pl.DataFrame, path: Path, extract_date: dt.date) -> None:
    frame.write_parquet(path)


_WRITERS = {
    "adult_social_care": _write_csv,
    "childrens_services": _write_xlsx,
    "housing": _write_ndjson,
    "council_tax": _write_windows_csv,
    "benefits": _write_parquet,
}


# --------------------------------------------------------------------------------- baseline


def faker_per_row_residents(residents: int, seed: int) -> pl.DataFrame:
    """The obvious way, for the benchmark only: one Faker profile call per resident, NHS and NI
    numbers and ethnicity drawn in Python, rows collected into a frame. It lives here because
    this is the only module allowed to import Faker."""
    fake = Faker("en_GB")
    fake.seed_instance(seed)
    codes, weights = list(ETHNICITY_WEIGHTS), list(ETHNICITY_WEIGHTS.values())
    rows = []
    for resident_id in range(1, residents + 1):
        profile = fake.simple_profile()
        forename, _, surname = profile["name"].rpartition(" ")
        *_, postcode = profile["address"].split("\n")
        rows.append(
            {
                "resident_id": resident_id,
                "forename": forename.split(" ")[-1],
                "surname": surname,
                "sex": profile["sex"],
                "date_of_birth": profile["birthdate"],
                "ethnicity": fake.random.choices(codes, weights)[0],
                "nhs_number": _one_nhs_number(fake.random),
                "ni_number": (
                    fake.random_element(NI_PREFIXES)
                    + fake.numerify("######")
                    + fake.random_element("ABCD")
                ),
                "postcode": postcode,
            }
        )
    return pl.DataFrame(rows)


def _one_nhs_number(random) -> str:
    while True:
        body = [9, *(random.randrange(10) for _ in range(8))]
        check = (11 - sum(d * w for d, w in zip(body, range(10, 1, -1), strict=True)) % 11) % 11
        if check != 10:
            return "".join(map(str, body)) + str(check)
