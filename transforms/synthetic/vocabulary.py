"""Names, streets and ethnic groups residents are drawn from: the only module that imports Faker.

Faker is confined here (docs/architecture.md, Layers): it builds small vocabularies once per
seed, and NumPy and Polars do the volume elsewhere. `faker_per_row_residents`, the slow obvious
way the benchmark compares against, lives here for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
from faker import Faker

from schemas.identifiers import NO_CHECK_DIGIT, nhs_check_digit
from transforms.synthetic.identifiers import NI_PREFIXES

# fmt: off
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
# fmt: on


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


def build_vocabulary(seed: int, n_streets: int) -> Vocabulary:
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
        check = nhs_check_digit(int("".join(map(str, body))))
        if check != NO_CHECK_DIGIT:
            return "".join(map(str, body)) + str(check)
