"""Synthetic NHS and NI numbers, and the errors real systems make in identifiers.

The numbers can never belong to a real person (NHS numbers from the never-issued 9xxxxxxxxx
range, NI numbers with allocatable prefixes only), and `apply_noise` reproduces the keying and
recording errors that linkage has to survive. Nothing here logs or prints a value.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from schemas.identifiers import NO_CHECK_DIGIT, nhs_check_digit

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
# fmt: on
# National Insurance prefixes: first letter not D F I Q U V, second not D F I O Q U V, and a few
# pairs never allocated (HMRC NIM39110).
_NI_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
_NI_SECOND = "ABCEGHJKLMNPRSTWXYZ"
_NI_NEVER = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}
NI_PREFIXES = tuple(a + b for a in _NI_FIRST for b in _NI_SECOND if a + b not in _NI_NEVER)


def synthetic_nhs_numbers(rng: np.random.Generator, n: int) -> pl.Series:
    """Distinct NHS numbers in the never-issued 9000000000-9999999999 range, valid mod 11."""
    found = np.empty(0, dtype=np.int64)
    while found.size < n:
        body = rng.integers(900_000_000, 1_000_000_000, int((n - found.size) * 1.15) + 16)
        check = nhs_check_digit(body)
        valid = check != NO_CHECK_DIGIT  # such a body has no valid check digit: skip it
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
