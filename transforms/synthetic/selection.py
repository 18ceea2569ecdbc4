"""Who appears in each department's extract, and the service fields only that department holds.

Each selector draws an overlapping subset of the population, weighted the way real caseloads
are (age for adult social care, deprivation for children's services, housing and benefits),
from the department's own selection stream; identifiers are left canonical for later steps.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from transforms.synthetic.streams import normalised

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
# Target shares of the eligible population in each extract (see module docstring of the issue).
BENEFITS_SHARE_OF_ADULTS = 0.135
HOUSING_SHARE_OF_HOUSEHOLDS = 0.20
ASC_SHARE_OF_ADULTS = 0.025
CHILDREN_SHARE_OF_UNDER_18S = 0.035


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
    return np.asarray(values)[rng.choice(len(values), size=n, p=normalised(weights))]


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
    # Arrears follow hardship: likelier in deprived households (who also claim benefits more
    # often, see _select_benefits) and in temporary accommodation.
    deprivation = frame.get_column("deprivation").to_numpy()
    base = np.where(tenure == "Temporary accommodation", 0.20, 0.06)
    arrears = rng.random(frame.height) < base + 0.45 * deprivation**1.5
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


SELECTORS = {
    "adult_social_care": _select_adult_social_care,
    "childrens_services": _select_childrens_services,
    "housing": _select_housing,
    "council_tax": _select_council_tax,
    "benefits": _select_benefits,
}
