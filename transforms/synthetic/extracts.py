"""How each department's system exports its records: layout, record references and formatting.

The layouts are the contracts' `name` -> `physicalName` (tests hold them to
`data_contracts/*.odcs.yaml`); the formatters reproduce each system's habits (spacing, case,
date formats, missing values) from the department's format stream.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from transforms.synthetic.streams import normalised

DEPARTMENTS = ("adult_social_care", "childrens_services", "housing", "council_tax", "benefits")
EXTENSIONS = {
    "adult_social_care": "csv",
    "childrens_services": "xlsx",
    "housing": "ndjson",
    "council_tax": "csv",
    "benefits": "parquet",
}

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
# Identifiers a contract requires (`required: true`): noise never blanks them.
REQUIRED = {"benefits": frozenset({"ni_number"})}
# Record references look different in every system.
_RECORD_ID_STYLE = {  # prefix, first number, digits
    "adult_social_care": ("", 1_000_000, 7),
    "childrens_services": ("CH", 100_000, 6),
    "housing": ("TEN-", 100_000, 6),
    "council_tax": ("", 400_000_000, 9),
    "benefits": ("CLM", 10_000_000, 8),
}


def assign_record_ids(
    records: pl.DataFrame, department: str, rng: np.random.Generator
) -> pl.DataFrame:
    """Rows in no resident order, with ascending references as a system would export them."""
    prefix, first, digits = _RECORD_ID_STYLE[department]
    order = rng.permutation(records.height)
    numbers = first + np.cumsum(rng.integers(1, 4, records.height))
    ids = pl.Series(numbers).cast(pl.String).str.zfill(digits)
    return records.gather(order).with_columns((pl.lit(prefix) + ids).alias("record_id"))


def _choose(rng: np.random.Generator, n: int, weights) -> pl.Series:
    return pl.Series(rng.choice(len(weights), size=n, p=normalised(weights)), dtype=pl.Int64)


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


FORMATTERS = {
    "adult_social_care": _format_adult_social_care,
    "childrens_services": _format_childrens_services,
    "housing": _format_housing,
    "council_tax": _format_council_tax,
    "benefits": _format_benefits,
}


# Values a case worker really types when the system forces an answer; each breaks a rule of
# the department's contract, so the delivery's quarantine and its accounting have work to do.
UNKNOWN_POSTCODE = "NFA"  # "no fixed abode": not a postcode, fails the postcode pattern


def break_rules(extract: pl.DataFrame, department: str, rate: float, rng) -> pl.DataFrame:
    """Replace the postcode of a share `rate` of rows with a value its contract rejects.

    Drawn from its own random stream, so a council made with rate 0 is byte-identical to one
    made before this option existed.
    """
    column = LAYOUTS[department]["postcode"]
    broken = pl.Series(rng.random(extract.height) < rate)
    return extract.with_columns(
        pl.when(broken).then(pl.lit(UNKNOWN_POSTCODE)).otherwise(pl.col(column)).alias(column)
    )
