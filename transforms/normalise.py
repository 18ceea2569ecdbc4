"""Identifier normalisers: one canonical form per identifier type, before anything is hashed.

Two departments only produce the same token for a resident if they hash the same bytes, so every
identifier is brought to one canonical text first. Each normaliser is a vectorised Polars
expression that returns the canonical text, or null when the value is missing or not a valid
identifier of its type (an invalid identifier is never used for linkage; `validity` says why, so
the counts can report it). This module sees identifiable values and never logs or raises them.

Canonical forms:
- nhs_number: 10 digits, mod-11 check digit valid (NHS Data Dictionary).
- ni_number: 9 characters, two prefix letters, six digits, suffix A-D (HMRC NIM39110 rules).
- forename, surname: Unicode NFKD, accents removed, case-folded, hyphens and other
  punctuation removed, whitespace collapsed to one space.
- date_of_birth: ISO 8601 `YYYY-MM-DD`, from a Date or from any department's text format.
- postcode: upper case, one space before the inward code ("ZZ1 2AB").
- uprn: digits without leading zeros (1 to 12 digits).
- email: trimmed, lower case, one `@` and a dotted domain.
- phone: UK national format with the leading 0, 10 or 11 digits ("+44 (0)20..." -> "020...").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import polars as pl

IDENTIFIER_TYPES = (
    "nhs_number", "ni_number", "forename", "surname", "date_of_birth", "postcode", "uprn",
    "email", "phone",
)

# Formats the departments' systems are known to use; tried in order for text dates.
DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y%m%d", "%Y/%m/%d")
EARLIEST_BIRTH = date(1890, 1, 1)

_NHS_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
# HMRC: first letter not D, F, I, Q, U, V; second not D, F, I, O, Q, U, V; some pairs unused.
_NI_PATTERN = r"^[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z][0-9]{6}[A-D]$"
_NI_BAD_PREFIXES = ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ")
_POSTCODE_PATTERN = r"^[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}$"
_EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def _text(column: str | pl.Expr) -> pl.Expr:
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.cast(pl.String).str.strip_chars()


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.str.len_bytes() > 0).then(expr)


def nhs_digits(column: str | pl.Expr) -> pl.Expr:
    """The NHS number with spaces and dashes removed (not yet checked)."""
    return _blank_to_null(_text(column).str.replace_all(r"[\s\-]", ""))


def nhs_check_digit_valid(digits: pl.Expr) -> pl.Expr:
    """True when 10 digits carry a valid mod-11 check digit; null when `digits` is null."""
    ten = digits.str.contains(r"^[0-9]{10}$")
    total = pl.sum_horizontal(
        digits.str.slice(i, 1).cast(pl.Int32, strict=False) * weight
        for i, weight in enumerate(_NHS_WEIGHTS)
    )
    check = 11 - (total % 11)
    expected = pl.when(check == 11).then(0).otherwise(check)
    actual = digits.str.slice(9, 1).cast(pl.Int32, strict=False)
    # A remainder giving check 10 means no valid number has those nine digits.
    return ten & (expected != 10) & (expected == actual)


def nhs_number(column: str | pl.Expr) -> pl.Expr:
    digits = nhs_digits(column)
    return pl.when(nhs_check_digit_valid(digits).fill_null(False)).then(digits)


def ni_number(column: str | pl.Expr) -> pl.Expr:
    cleaned = _blank_to_null(_text(column).str.to_uppercase().str.replace_all(r"[\s\-]", ""))
    valid = cleaned.str.contains(_NI_PATTERN) & ~cleaned.str.slice(0, 2).is_in(_NI_BAD_PREFIXES)
    return pl.when(valid.fill_null(False)).then(cleaned)


def name(column: str | pl.Expr) -> pl.Expr:
    folded = (
        _text(column)
        .str.normalize("NFKD")
        .str.replace_all(r"\p{M}", "")
        .str.to_lowercase()
        # Case folding beyond lower case: the letters UK names actually carry.
        .str.replace_all("ß", "ss", literal=True)
        .str.replace_all("ø", "o", literal=True)
        .str.replace_all("æ", "ae", literal=True)
        .str.replace_all("œ", "oe", literal=True)
        .str.replace_all("ł", "l", literal=True)
        .str.replace_all("đ", "d", literal=True)
        .str.replace_all("ı", "i", literal=True)
        # A hyphen separates like a space ("Smith-Jones" = "Smith Jones"); apostrophes and
        # other punctuation join ("O'Brien" = "OBrien", "St. John" = "St John").
        .str.replace_all(r"[\p{Pd}_/]", " ")
        .str.replace_all(r"[^\p{L}\p{N}\s]", "")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )
    return _blank_to_null(folded)


def name_initial(column: str | pl.Expr) -> pl.Expr:
    return name(column).str.slice(0, 1)


def parse_date(column: str | pl.Expr, dtype: pl.DataType | None = None) -> pl.Expr:
    """A Date from a Date/Datetime column, or from text in any known department format."""
    expr = pl.col(column) if isinstance(column, str) else column
    if dtype is not None and dtype == pl.Date:
        return expr
    if dtype is not None and isinstance(dtype, pl.Datetime):
        return expr.dt.date()
    text = _text(expr)
    return pl.coalesce(
        text.str.to_date(fmt, strict=False, exact=True) for fmt in DATE_FORMATS
    )


def date_of_birth_date(
    column: str | pl.Expr, dtype: pl.DataType | None, extract_date: date | None = None
) -> pl.Expr:
    """The birth date as a Date, null when missing, unparseable or implausible."""
    parsed = parse_date(column, dtype)
    latest = extract_date or date.today()
    plausible = (parsed >= pl.lit(EARLIEST_BIRTH)) & (parsed <= pl.lit(latest))
    return pl.when(plausible.fill_null(False)).then(parsed)


def date_of_birth(
    column: str | pl.Expr, dtype: pl.DataType | None = None, extract_date: date | None = None
) -> pl.Expr:
    return date_of_birth_date(column, dtype, extract_date).dt.strftime("%Y-%m-%d")


def postcode(column: str | pl.Expr) -> pl.Expr:
    compact = _blank_to_null(_text(column).str.to_uppercase().str.replace_all(r"\s", ""))
    valid = compact.str.contains(_POSTCODE_PATTERN).fill_null(False)
    spaced = pl.concat_str(
        [compact.str.slice(0, compact.str.len_chars() - 3), compact.str.slice(-3, 3)],
        separator=" ",
    )
    return pl.when(valid).then(spaced)


def postcode_sector(canonical_postcode: pl.Expr) -> pl.Expr:
    """'ZZ1 2AB' -> 'ZZ1 2' (outward code and the first inward character)."""
    return canonical_postcode.str.slice(0, canonical_postcode.str.len_chars() - 2)


def postcode_district(canonical_postcode: pl.Expr) -> pl.Expr:
    return canonical_postcode.str.split(" ").list.first()


def uprn(column: str | pl.Expr) -> pl.Expr:
    digits = _blank_to_null(_text(column).str.replace_all(r"\s", ""))
    valid = digits.str.contains(r"^[0-9]{1,12}$").fill_null(False)
    stripped = digits.str.strip_chars_start("0")
    return pl.when(valid & (stripped.str.len_bytes() > 0)).then(stripped)


def email(column: str | pl.Expr) -> pl.Expr:
    lowered = _blank_to_null(_text(column).str.to_lowercase())
    return pl.when(lowered.str.contains(_EMAIL_PATTERN).fill_null(False)).then(lowered)


def phone(column: str | pl.Expr) -> pl.Expr:
    text = _text(column)
    # "+44 (0)20 ..." carries a redundant trunk 0 in brackets.
    digits = text.str.replace_all(r"\(0\)", "").str.replace_all(r"[^0-9+]", "")
    national = (
        pl.when(digits.str.starts_with("+44"))
        .then(pl.lit("0") + digits.str.slice(3))
        .when(digits.str.starts_with("0044"))
        .then(pl.lit("0") + digits.str.slice(4))
        .otherwise(digits)
    )
    valid = national.str.contains(r"^0[1-9][0-9]{8,9}$").fill_null(False)
    return pl.when(valid).then(national)


NORMALISERS: dict[str, Callable[..., pl.Expr]] = {
    "nhs_number": nhs_number,
    "ni_number": ni_number,
    "forename": name,
    "surname": name,
    "date_of_birth": date_of_birth,
    "postcode": postcode,
    "uprn": uprn,
    "email": email,
    "phone": phone,
}


def normalise(
    identifier_type: str,
    column: str | pl.Expr,
    dtype: pl.DataType | None = None,
    extract_date: date | None = None,
) -> pl.Expr:
    """The canonical-text expression for one identifier column (null when missing/invalid)."""
    if identifier_type == "date_of_birth":
        return date_of_birth(column, dtype, extract_date)
    try:
        return NORMALISERS[identifier_type](column)
    except KeyError:
        raise ValueError(f"no normaliser for identifier type '{identifier_type}'") from None


def present(column: str | pl.Expr) -> pl.Expr:
    """True when a raw value was given at all (not null, not blank)."""
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.is_not_null() & (expr.cast(pl.String).str.strip_chars().str.len_bytes() > 0)


def invalid_reason(
    identifier_type: str,
    column: str,
    dtype: pl.DataType | None = None,
    extract_date: date | None = None,
) -> pl.Expr:
    """A short reason code per row when a present value fails normalisation, else null.

    Reasons are counted, never shown with the value: 'invalid_check_digit' and
    'invalid_format' for NHS numbers, 'invalid_format' or 'implausible' otherwise.
    """
    given = present(column).fill_null(False)
    if identifier_type == "nhs_number":
        digits = nhs_digits(column)
        ten = digits.str.contains(r"^[0-9]{10}$").fill_null(False)
        return (
            pl.when(given & ~ten)
            .then(pl.lit("invalid_format"))
            .when(given & ~nhs_check_digit_valid(digits).fill_null(False))
            .then(pl.lit("invalid_check_digit"))
        )
    if identifier_type == "date_of_birth":
        parsed = parse_date(column, dtype)
        return (
            pl.when(given & parsed.is_null())
            .then(pl.lit("invalid_format"))
            .when(given & date_of_birth_date(column, dtype, extract_date).is_null())
            .then(pl.lit("implausible"))
        )
    normalised = normalise(identifier_type, column, dtype)
    return pl.when(given & normalised.is_null()).then(pl.lit("invalid_format"))
