"""The seeded synthetic council: a resident population and one extract per department.

`generate_council` builds a population of residents living in households at addresses on the
shipped synthetic geography (UPRN -> postcode -> LSOA -> ward), then writes one extract per
department for an overlapping subset of them, in the layouts and file formats the departments'
systems really export (see `data_contracts/*.odcs.yaml`). It keeps the ground truth of which
resident each extract row belongs to, for linkage tests.

The package reads in the order the data is made:
- `vocabulary`: names, streets and ethnic groups (the only module that imports Faker);
- `identifiers`: synthetic NHS and NI numbers, and the noise that corrupts identifiers;
- `population`: residents in households at addresses;
- `selection`: who each department holds, and its service fields;
- `extracts`: each system's layout, record references and formatting;
- `writers`: each system's file format, written atomically;
- `opt_out`: the opt-out register of residents who objected, and who they are;
- `streams`: the seeded random streams that keep those steps independent.

Nothing here prints or logs an identifier value; log lines carry counts only.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from schemas.errors import UserError
from transforms.files import write_atomically
from transforms.synthetic.extracts import (
    DEPARTMENTS,
    EXTENSIONS,
    FORMATTERS,
    LAYOUTS,
    REQUIRED,
    assign_record_ids,
    break_rules,
)
from transforms.synthetic.identifiers import (
    IDENTIFIER_FIELDS,
    NI_PREFIXES,
    NICKNAMES,
    apply_noise,
    synthetic_nhs_numbers,
    synthetic_ni_numbers,
)
from transforms.synthetic.marker import MARKER, foreign_files, write_marker
from transforms.synthetic.opt_out import build_register
from transforms.synthetic.population import (
    AGE_BANDS,
    COUNCIL_TAX_BAND_WEIGHTS,
    COUNCIL_TAX_BANDS,
    DEFAULT_EXTRACT_DATE,
    MEAN_HOUSEHOLD_SIZE,
    build_population,
)
from transforms.synthetic.selection import (
    ASC_SHARE_OF_ADULTS,
    BENEFIT_TAKE_UP,
    BENEFIT_TYPES,
    BENEFIT_WEEKLY_MEAN_SD,
    BENEFITS_SHARE_OF_ADULTS,
    CARE_STATUS_WEIGHTS,
    CARE_STATUSES,
    CHILDREN_SHARE_OF_UNDER_18S,
    HOUSING_SHARE_OF_HOUSEHOLDS,
    SELECTORS,
    SERVICE_TYPES,
    SERVICE_WEIGHTS,
    SUPPORT_REASONS,
    SUPPORT_WEIGHTS_65_PLUS,
    SUPPORT_WEIGHTS_UNDER_65,
    TENURE_WEIGHTS,
    TENURES,
)
from transforms.synthetic.streams import random_stream
from transforms.synthetic.vocabulary import (
    ETHNICITY_WEIGHTS,
    EXTRA_FORENAMES_F,
    EXTRA_FORENAMES_M,
    EXTRA_NAME_SHARE,
    EXTRA_SURNAMES,
    STREET_SUFFIXES,
    Vocabulary,
    faker_per_row_residents,
)
from transforms.synthetic.writers import CHILDRENS_SHEET, COUNCIL_TAX_ENCODING, WRITERS

# Every public name the single-module generator had, so callers import from here as before.
__all__ = [
    "MARKER",
    "foreign_files",
    "write_marker",
    "AGE_BANDS",
    "ASC_SHARE_OF_ADULTS",
    "BENEFITS_SHARE_OF_ADULTS",
    "BENEFIT_TAKE_UP",
    "BENEFIT_TYPES",
    "BENEFIT_WEEKLY_MEAN_SD",
    "CARE_STATUSES",
    "CARE_STATUS_WEIGHTS",
    "CHILDRENS_SHEET",
    "CHILDREN_SHARE_OF_UNDER_18S",
    "COUNCIL_TAX_BANDS",
    "COUNCIL_TAX_BAND_WEIGHTS",
    "COUNCIL_TAX_ENCODING",
    "DEFAULT_EXTRACT_DATE",
    "DEFAULT_NOISE",
    "DEPARTMENTS",
    "ETHNICITY_WEIGHTS",
    "EXTENSIONS",
    "EXTRA_FORENAMES_F",
    "EXTRA_FORENAMES_M",
    "EXTRA_NAME_SHARE",
    "EXTRA_SURNAMES",
    "GenerationSummary",
    "HOUSING_SHARE_OF_HOUSEHOLDS",
    "IDENTIFIER_FIELDS",
    "LAYOUTS",
    "MAX_RESIDENTS",
    "MEAN_HOUSEHOLD_SIZE",
    "NICKNAMES",
    "NI_PREFIXES",
    "SERVICE_TYPES",
    "SERVICE_WEIGHTS",
    "STREET_SUFFIXES",
    "SUPPORT_REASONS",
    "SUPPORT_WEIGHTS_65_PLUS",
    "SUPPORT_WEIGHTS_UNDER_65",
    "TENURES",
    "TENURE_WEIGHTS",
    "Vocabulary",
    "apply_noise",
    "build_population",
    "faker_per_row_residents",
    "generate_council",
    "synthetic_nhs_numbers",
    "synthetic_ni_numbers",
]

log = logging.getLogger(__name__)

DEFAULT_NOISE = 0.02
MAX_RESIDENTS = 20_000_000


@dataclass(frozen=True)
class GenerationSummary:
    """What `generate_council` wrote: counts and paths only, never a value."""

    residents: int
    rows: dict[str, int]
    files: list[Path]
    seconds: float
    objections: int = 0  # rows of the opt-out register


def generate_council(
    root: Path,
    residents: int,
    seed: int,
    noise: float = DEFAULT_NOISE,
    extract_date: dt.date = DEFAULT_EXTRACT_DATE,
    invalid: float = 0.0,
) -> GenerationSummary:
    """Write a synthetic council under `root`: `landing/<department>/<department>_<YYYYMMDD>.<ext>`
    for every department, and the ground truth under `synthetic_truth/`. A share `invalid` of
    each extract's rows breaks its contract (an unusable postcode), for the quarantine to catch.
    The opt-out register goes to `landing/opt_out/`, who objected to `synthetic_truth/`."""
    started = time.perf_counter()
    _check_arguments(residents, seed, noise, invalid)
    root = Path(root)
    people, households = build_population(residents, seed, extract_date)

    files: list[Path] = []
    extracts: list[Path] = []
    rows: dict[str, int] = {}
    truths: list[pl.DataFrame] = []
    stamp = extract_date.strftime("%Y%m%d")
    for department in DEPARTMENTS:
        records = SELECTORS[department](
            people, households, random_stream(seed, "select", department), extract_date
        )
        records = assign_record_ids(records, department, random_stream(seed, "ids", department))
        noisy = apply_noise(
            records,
            households,
            noise,
            random_stream(seed, "noise", department),
            fields=_noisy_fields(department),
            required=REQUIRED.get(department, frozenset()),
        )
        extract = FORMATTERS[department](noisy, random_stream(seed, "format", department))
        extract = extract.select(LAYOUTS[department].keys()).rename(LAYOUTS[department])
        if invalid:
            extract = break_rules(
                extract, department, invalid, random_stream(seed, "invalid", department)
            )
        path = root / "landing" / department / f"{department}_{stamp}.{EXTENSIONS[department]}"
        write_atomically(
            path, lambda target, d=department, e=extract: WRITERS[d](e, target, extract_date)
        )
        files.append(path)
        extracts.append(path)
        rows[department] = extract.height
        truths.append(_truth(records, noisy, department))
        log.info("synthetic %s: %d rows", department, extract.height)

    register, objections = build_register(
        people, households, random_stream(seed, "opt_out"), extract_date
    )
    path = root / "landing" / "opt_out" / f"opt_out_{stamp}.csv"
    write_atomically(path, lambda target: register.write_csv(target))
    files.append(path)
    extracts.append(path)
    log.info("synthetic opt-out register: %d objections", register.height)

    # The demo auto-approves only extracts listed here (transforms/synthetic/marker.py).
    write_marker(root, extracts)
    truth_dir = root / "synthetic_truth"
    truth = pl.concat(truths)
    population = people.join(households, on="household_id", how="left", maintain_order="left").sort(
        "resident_id"
    )
    for name, frame in (
        ("truth.parquet", truth),
        ("residents.parquet", population),
        ("opt_out.parquet", objections),
    ):
        path = truth_dir / name
        write_atomically(path, lambda target, f=frame: f.write_parquet(target))
        files.append(path)
    seconds = time.perf_counter() - started
    log.info(
        "synthetic council: %d residents, %d extract rows in %.2f s",
        residents,
        sum(rows.values()),
        seconds,
    )
    return GenerationSummary(
        residents=residents, rows=rows, files=files, seconds=seconds, objections=register.height
    )


def _check_arguments(residents: int, seed: int, noise: float, invalid: float) -> None:
    problems = []
    if isinstance(residents, bool) or not isinstance(residents, int):
        problems.append("residents must be a whole number")
    elif not 1 <= residents <= MAX_RESIDENTS:
        problems.append(f"residents must be between 1 and {MAX_RESIDENTS:,}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        problems.append("seed must be a whole number, 0 or more")
    if not isinstance(noise, int | float) or not 0.0 <= float(noise) <= 0.5:
        problems.append("noise must be a rate between 0 and 0.5")
    if not isinstance(invalid, int | float) or not 0.0 <= float(invalid) <= 0.5:
        problems.append("invalid must be a rate between 0 and 0.5")
    if problems:
        raise UserError("; ".join(problems))


def _noisy_fields(department: str) -> frozenset[str]:
    """The identifiers a department exports; noise touches only these."""
    return frozenset(LAYOUTS[department]) & frozenset(IDENTIFIER_FIELDS)


def _truth(records: pl.DataFrame, noisy: pl.DataFrame, department: str) -> pl.DataFrame:
    """Who each record is, and which identifiers noise changed (empty string: none)."""
    changed = [
        pl.when(pl.col(name).ne_missing(pl.col(f"{name}_noisy"))).then(pl.lit(name))
        for name in IDENTIFIER_FIELDS
        if name in noisy.columns
    ]
    noisy_ids = noisy.select(
        "record_id",
        *[
            pl.col(name).alias(f"{name}_noisy")
            for name in IDENTIFIER_FIELDS
            if name in noisy.columns
        ],
    )
    return (
        records.select(
            "record_id", "resident_id", *[c for c in IDENTIFIER_FIELDS if c in noisy.columns]
        )
        .join(noisy_ids, on="record_id", how="left", maintain_order="left")
        .select(
            pl.lit(department).alias("department"),
            "record_id",
            "resident_id",
            pl.concat_str(changed, separator=",", ignore_nulls=True).alias("noise"),
        )
        .unique("record_id", maintain_order=True)
    )
