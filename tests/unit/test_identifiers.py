"""The NHS number check digit, defined once (schemas/identifiers.py), gives the same answer for
a Python int, a NumPy array and a Polars expression, and agrees with the NHS Data Dictionary's
worked examples and with a digit-by-digit reading of the rule written here."""

from __future__ import annotations

import numpy as np
import polars as pl

from schemas.identifiers import NO_CHECK_DIGIT, nhs_check_digit, nhs_number_valid


def _by_the_book(stem: int) -> int:
    total = sum(int(d) * w for d, w in zip(f"{stem:09d}", range(10, 1, -1), strict=True))
    check = 11 - total % 11
    return 0 if check == 11 else check


def test_known_numbers():
    assert nhs_check_digit(943476591) == 9  # 943 476 5919, the Data Dictionary's example
    assert nhs_number_valid(9434765919) and not nhs_number_valid(9434765918)
    assert nhs_check_digit(401023213) == 7
    # Stem 000000006: weighted sum 12, remainder 1, check 11 - 1 = 10: no valid number.
    assert nhs_check_digit(6) == NO_CHECK_DIGIT
    assert not any(nhs_number_valid(60 + d) for d in range(10))


def test_int_numpy_and_polars_agree_with_the_rule():
    stems = np.random.default_rng(5).integers(0, 1_000_000_000, 5_000)
    expected = np.array([_by_the_book(int(s)) for s in stems])
    assert [nhs_check_digit(int(s)) for s in stems[:200]] == expected[:200].tolist()
    assert np.array_equal(nhs_check_digit(stems), expected)
    frame = pl.DataFrame({"stem": stems})
    checks = frame.select(nhs_check_digit(pl.col("stem"))).to_series().to_numpy()
    assert np.array_equal(checks, expected)
    assert 0 in expected and NO_CHECK_DIGIT in expected  # both edge cases were exercised
