"""The resident population: people in households at addresses on the synthetic geography.

`build_population` is the one source every department's extract is drawn from, so the same
person can turn up in several extracts; household structure, ages, names and areas are
plausible for an English borough so that linkage and disclosure control meet realistic data.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from transforms.identity.geography import load_geography
from transforms.synthetic.identifiers import synthetic_nhs_numbers, synthetic_ni_numbers
from transforms.synthetic.streams import normalised, random_stream
from transforms.synthetic.vocabulary import ETHNICITY_WEIGHTS, Vocabulary, build_vocabulary

DEFAULT_EXTRACT_DATE = dt.date(2026, 10, 31)

# fmt: off
# Mid-2021-like age structure of an English borough: (first age, last age, share %).
AGE_BANDS = (
    (0, 4, 5.4), (5, 9, 5.9), (10, 14, 6.0), (15, 19, 5.7), (20, 24, 6.0), (25, 29, 6.6),
    (30, 34, 6.9), (35, 39, 6.7), (40, 44, 6.3), (45, 49, 6.3), (50, 54, 6.9), (55, 59, 6.8),
    (60, 64, 6.0), (65, 69, 5.1), (70, 74, 5.0), (75, 79, 3.7), (80, 84, 2.4), (85, 89, 1.4),
    (90, 99, 0.8),
)
MEAN_HOUSEHOLD_SIZE = 2.36  # Census 2021, England
COUNCIL_TAX_BANDS = ("A", "B", "C", "D", "E", "F", "G", "H")
COUNCIL_TAX_BAND_WEIGHTS = (0.19, 0.20, 0.22, 0.16, 0.11, 0.06, 0.05, 0.01)
# fmt: on


def build_population(
    residents: int,
    seed: int,
    extract_date: dt.date = DEFAULT_EXTRACT_DATE,
    geography: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """People (one row per resident) and households (one row per occupied address, with its
    postcode, LSOA, ward and council tax band)."""
    geography = load_geography() if geography is None else geography
    vocabulary = build_vocabulary(seed, geography.height)
    rng = random_stream(seed, "population")
    n = residents
    band = rng.choice(len(AGE_BANDS), size=n, p=normalised([b[2] for b in AGE_BANDS]))
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
    own_ethnicity = rng.choice(len(codes), size=n, p=normalised(ETHNICITY_WEIGHTS.values()))
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


def _draw(rng: np.random.Generator, values: pl.Series, weights: np.ndarray, n: int) -> pl.Series:
    return values.gather(rng.choice(values.len(), size=n, p=weights))
