"""What makes an NHS number valid: its modulus-11 check digit, defined once for the project.

NHS Data Dictionary, "NHS Number": ten digits; the first nine are weighted 10 down to 2 and
summed, the check digit is 11 minus the remainder of the sum divided by 11 (11 becomes 0), and a
stem whose check digit would be 10 belongs to no valid number.

Written with arithmetic operators only, so one definition serves a Python int (test fixtures), a
NumPy array (the synthetic generator) and a Polars expression (validation and normalisation).
"""

from __future__ import annotations

from typing import TypeVar

NHS_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
NO_CHECK_DIGIT = 10
"""What `nhs_check_digit` returns for a stem that no valid NHS number has."""

Number = TypeVar("Number")


def nhs_check_digit(stem: Number) -> Number:
    """The check digit of the nine-digit stem(s) `stem` (an integer, array or expression);
    NO_CHECK_DIGIT (10) where the stem can have none."""
    total = sum(((stem // 10 ** (8 - i)) % 10) * w for i, w in enumerate(NHS_WEIGHTS))
    return (11 - total % 11) % 11


def nhs_number_valid(number: Number) -> Number:
    """Whether ten-digit NHS number(s), given as integers, carry a valid check digit (null
    stays null for Polars)."""
    check = nhs_check_digit(number // 10)
    return (check != NO_CHECK_DIGIT) & (check == number % 10)
