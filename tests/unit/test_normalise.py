"""Identifier normalisers: every department's spelling of an identifier becomes one text."""

from datetime import date

import polars as pl
import pytest

from transforms.identity import normalise as norm


def _one(expr: pl.Expr, values, dtype=pl.String) -> list:
    return pl.DataFrame({"v": values}, schema={"v": dtype}).select(expr.alias("o"))["o"].to_list()


def test_nhs_number_spaces_dashes_and_check_digit():
    values = ["943 476 5919", "943-476-5919", " 9434765919 ", "9434765910", "94347659", None, ""]
    assert _one(norm.nhs_number("v"), values) == ["9434765919"] * 3 + [None] * 4
    reasons = _one(norm.invalid_reason("nhs_number", "v"), values)
    assert reasons == [None] * 3 + ["invalid_check_digit", "invalid_format", None, None]


def test_nhs_number_with_check_remainder_ten_is_invalid():
    # Stem 000000006: weighted sum 6 * 2 = 12, remainder 1, check 11 - 1 = 10: never issued.
    assert _one(norm.nhs_number("v"), ["0000000060", "0000000061"]) == [None, None]


def test_ni_number_format():
    values = ["ab 12 34 56 c", "AB123456C", "AB123456", "BG123456A", "DA123456A", "QQ123456E"]
    assert _one(norm.ni_number("v"), values) == ["AB123456C", "AB123456C", None, None, None, None]


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Zoë", "zoe"),
        ("  ZOE ", "zoe"),
        ("O'Brien", "obrien"),
        ("O’Brien", "obrien"),
        ("Smith-Jones", "smith jones"),
        ("Smith  Jones", "smith jones"),
        ("STRAẞE", "strasse"),
        ("Straße", "strasse"),
        ("Søren", "soren"),
        ("ﬁona", "fiona"),
        ("Anne–Marie", "anne marie"),
        ("---", None),
        ("", None),
    ],
)
def test_names(raw, canonical):
    assert _one(norm.name("v"), [raw]) == [canonical]


def test_dates_of_birth_from_every_format_to_iso():
    texts = ["2001-05-06", "06/05/2001", "06-05-2001", "20010506", "2001/05/06", "6.5.2001"]
    assert _one(norm.date_of_birth("v"), texts) == ["2001-05-06"] * 6
    assert _one(norm.date_of_birth("v", pl.Date), [date(2001, 5, 6)], pl.Date) == ["2001-05-06"]
    extract = date(2025, 1, 31)
    assert _one(norm.date_of_birth("v", None, extract), ["2026-01-01", "1700-01-01"]) == [None] * 2
    reasons = _one(norm.invalid_reason("date_of_birth", "v", None, extract), ["2026-01-01", "x1"])
    assert reasons == ["implausible", "invalid_format"]


def test_postcodes_uprns_emails_phones():
    raw = ["zz11ab", " ZZ1 1AB", "ZZ11 1AB", "Z1 1AB", "ZZ1", "1ZZ 1AB"]
    assert _one(norm.postcode("v"), raw) == ["ZZ1 1AB", "ZZ1 1AB", "ZZ11 1AB", "Z1 1AB", None, None]
    sector = pl.DataFrame({"v": ["ZZ1 1AB", "Z1A 2BC"]}).select(norm.postcode_sector(pl.col("v")))
    assert sector.to_series().to_list() == ["ZZ1 1", "Z1A 2"]
    assert _one(norm.uprn("v"), ["000123", "123", "12a", "0000", "1234567890123"]) == [
        "123", "123", None, None, None
    ]
    assert _one(norm.email("v"), [" Ann.Lee@Example.ORG ", "nope", "a@b"]) == [
        "ann.lee@example.org", None, None
    ]
    phones = ["+44 (0)20 7946 0000", "020 7946 0000", "07700 900123", "123"]
    assert _one(norm.phone("v"), phones) == ["02079460000", "02079460000", "07700900123", None]
