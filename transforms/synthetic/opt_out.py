"""The synthetic opt-out register: residents who objected, written as an IG case log exports it.

A share of all residents object. Each objection gives names, date of birth and current postcode,
and often an NHS or NI number, typed as residents and officers type them (spaced or plain NHS
numbers, NI numbers in any case and spacing, names in capitals or lower case, postcodes without
their space), so matching must go through the same normalisers as the departments' extracts.
Most objections cover all sharing; some name one purpose; a few are dated after the extract
date (they take effect later). The ground truth says who objected and whether the objection
applies to a release of the pipeline's purpose on the extract date.

Drawn from its own random streams, so the departments' extracts are the same with or without it.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from transforms.synthetic.streams import normalised

OBJECTION_SHARE = 0.02  # of all residents
LATE_SHARE = 0.05  # objections dated after the extract date
SCOPES = ("all", "service_planning", "research", "commissioning")
SCOPE_WEIGHTS = (0.75, 0.10, 0.10, 0.05)
PIPELINE_PURPOSE = "service_planning"  # data_contracts/transparency.yaml purpose.code
GIVES_NHS_NUMBER = 0.6
GIVES_NI_NUMBER = 0.5
# The register's export layout: canonical name -> raw column (data_contracts/opt_out.odcs.yaml).
LAYOUT = {
    "record_id": "Objection Ref",
    "nhs_number": "NHS Number",
    "ni_number": "NI Number",
    "forename": "First Name",
    "surname": "Last Name",
    "date_of_birth": "Date of Birth",
    "postcode": "Postcode",
    "objection_date": "Objection Date",
    "scope": "Scope",
}


def build_register(
    people: pl.DataFrame, households: pl.DataFrame, rng: np.random.Generator,
    extract_date: dt.date,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(register in its raw layout, ground truth: record_id, resident_id, objection_date, scope,
    applies)."""
    n = people.height
    chosen = rng.random(n) < OBJECTION_SHARE
    objectors = people.filter(pl.Series(chosen)).join(
        households.select("household_id", "postcode"), on="household_id", how="left",
        maintain_order="left",
    )
    m = objectors.height
    order = rng.permutation(m)
    objectors = objectors.gather(order)
    late = rng.random(m) < LATE_SHARE
    back = np.minimum(np.floor(rng.exponential(400.0, m)), 5 * 365).astype(np.int64)
    ahead = rng.integers(1, 29, m)
    offset = np.where(late, ahead, -back).astype("timedelta64[D]")
    dated = pl.Series(np.datetime64(extract_date, "D") + offset).cast(pl.Date)
    scope = np.asarray(SCOPES)[rng.choice(len(SCOPES), size=m, p=normalised(SCOPE_WEIGHTS))]
    styles = rng.integers(0, 4, (4, m))
    gives = rng.random((2, m))
    canonical = objectors.with_columns(
        pl.Series("record_id", [f"OPT-{i:06d}" for i in range(1, m + 1)], dtype=pl.String),
        pl.max_horizontal(dated, pl.col("date_of_birth")).alias("objection_date"),
        pl.Series("scope", scope, dtype=pl.String),
    )
    register = canonical.with_columns(
        _nhs(pl.lit(pl.Series(styles[0])), pl.lit(pl.Series(gives[0] < GIVES_NHS_NUMBER))),
        _ni(pl.lit(pl.Series(styles[1])), pl.lit(pl.Series(gives[1] < GIVES_NI_NUMBER))),
        *[_name_case(c, pl.lit(pl.Series(styles[2]))) for c in ("forename", "surname")],
        _postcode(pl.lit(pl.Series(styles[3]))),
        pl.col("date_of_birth").dt.strftime("%d/%m/%Y"),
        pl.col("objection_date").dt.strftime("%d/%m/%Y"),
    ).select(list(LAYOUT)).rename(LAYOUT)
    truth = canonical.select(
        "record_id",
        "resident_id",
        "objection_date",
        "scope",
        (
            pl.col("scope").is_in(["all", PIPELINE_PURPOSE])
            & (pl.col("objection_date") <= pl.lit(extract_date))
        ).alias("applies"),
    )
    return register, truth


def _nhs(style: pl.Expr, given: pl.Expr) -> pl.Expr:
    nhs = pl.col("nhs_number")
    spaced = nhs.str.slice(0, 3) + " " + nhs.str.slice(3, 3) + " " + nhs.str.slice(6)
    return pl.when(~given).then(None).when(style < 2).then(spaced).otherwise(nhs).alias(
        "nhs_number"
    )


def _ni(style: pl.Expr, given: pl.Expr) -> pl.Expr:
    ni = pl.col("ni_number")
    spaced = pl.concat_str(
        [ni.str.slice(0, 2), ni.str.slice(2, 2), ni.str.slice(4, 2), ni.str.slice(6, 2),
         ni.str.slice(8)],
        separator=" ",
    )
    return (
        pl.when(~given).then(None)
        .when(style == 0).then(spaced)
        .when(style == 1).then(ni.str.to_lowercase())
        .when(style == 2).then(spaced.str.to_lowercase())
        .otherwise(ni)
        .alias("ni_number")
    )


def _name_case(column: str, style: pl.Expr) -> pl.Expr:
    name = pl.col(column)
    return (
        pl.when(style == 0).then(name.str.to_uppercase())
        .when(style == 1).then(name.str.to_lowercase())
        .otherwise(name)
        .alias(column)
    )


def _postcode(style: pl.Expr) -> pl.Expr:
    postcode = pl.col("postcode")
    return (
        pl.when(style == 0).then(postcode.str.replace(" ", ""))
        .when(style == 1).then(postcode.str.to_lowercase())
        .otherwise(postcode)
        .alias("postcode")
    )
