"""Every row rule still catches its one bad row in a large delivery.

The validation was made faster (issue 10, "Validation throughput"); this checks that nothing was
weakened on the way. A 200,000-row adult social care extract, valid except for one bad value per
rule (two rows for `unique`: both copies of a repeated id break it), is read in 64,000-row
chunks: three large chunks validated a column at a time and a small last one validated with the
whole suite, and a repeated id split across chunks. The quarantine must hold exactly those rows,
under exactly their rule and column.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from schemas.contract import load_contracts
from transforms.intake.validate import NARROW_BATCHES_FROM_ROWS, receive_delivery

REPO = Path(__file__).resolve().parents[2]
CONTRACT = load_contracts(REPO / "data_contracts")["adult_social_care"]
ROWS = 200_000
CHUNK_ROWS = 64_000
TODAY = dt.date(2026, 11, 1)

VALID = {
    "Client ID": None,  # C<row>, unique
    "NHS Number": "943 476 5919",
    "Forename": "Ann",
    "Surname": "Smith",
    "Date of Birth": "30/05/1941",
    "Gender": "Female",
    "Ethnicity": "A1",
    "Postcode": "ZZ1 2GU",
    "Primary Support Reason": "Physical Support",
    "Service Type": "Home care",
    "Start Date": "29/11/2022",
}
# (1-based row, header, bad value, rule, canonical column): one per row rule of the contract.
BROKEN = [
    (10, "Client ID", "", "required", "record_id"),
    (30_000, "NHS Number", "94347659", "pattern", "nhs_number"),
    (40_000, "NHS Number", "943 476 5918", "nhs_mod11", "nhs_number"),
    (50_000, "Forename", "", "required", "forename"),
    (60_000, "Surname", "", "required", "surname"),
    (70_000, "Date of Birth", "31/02/1941", "type", "date_of_birth"),
    (80_000, "Date of Birth", "", "required", "date_of_birth"),
    (90_000, "Date of Birth", "01/01/1850", "plausible_range", "date_of_birth"),
    (100_000, "Gender", "Unknown", "allowed_values", "sex"),
    (105_000, "Gender", "", "required", "sex"),
    (110_000, "Ethnicity", "Z9", "allowed_values", "ethnicity"),
    (120_000, "Postcode", "", "required", "postcode"),
    (125_000, "Postcode", "NOT A POSTCODE", "pattern", "postcode"),
    (130_000, "Primary Support Reason", "Other", "allowed_values", "support_reason"),
    (131_000, "Primary Support Reason", "", "required", "support_reason"),
    (140_000, "Service Type", "Other", "allowed_values", "service_type"),
    (141_000, "Service Type", "", "required", "service_type"),
    (160_000, "Start Date", "", "required", "support_start_date"),
    # In the last, small chunk (validated with the whole suite).
    (195_000, "Start Date", "01/01/1930", "support_not_before_birth", "support_start_date"),
    (199_000, "Client ID", "C20", "unique", "record_id"),  # repeats row 20's id
]


def _extract(path: Path) -> None:
    frame = pl.DataFrame({"row": pl.int_range(1, ROWS + 1, eager=True)}).with_columns(
        pl.lit(value).alias(header) for header, value in VALID.items() if value is not None
    ).with_columns(pl.format("C{}", pl.col("row")).alias("Client ID"))
    for row, header, value, _, _ in BROKEN:
        frame = frame.with_columns(
            pl.when(pl.col("row") == row).then(pl.lit(value)).otherwise(pl.col(header))
            .alias(header)
        )
    frame.select(list(VALID)).write_csv(path)


def test_one_bad_value_per_rule_in_200k_rows_is_quarantined_under_its_rule(tmp_path):
    assert CHUNK_ROWS >= NARROW_BATCHES_FROM_ROWS > ROWS % CHUNK_ROWS  # both ways of running GX
    rules = {rule for _, _, _, rule, _ in BROKEN}
    declared = {"required", "unique", "pattern", "nhs_mod11", "type", "plausible_range",
                "allowed_values", "support_not_before_birth"}
    assert rules == declared, "a row rule of the contract has no broken row here"

    path = tmp_path / "adult_social_care_20261031.csv"
    _extract(path)
    received = receive_delivery(path, CONTRACT, tmp_path, TODAY, chunk_rows=CHUNK_ROWS)
    outcome = received.outcome

    expected = {(row, rule, column) for row, _, _, rule, column in BROKEN}
    expected.add((20, "unique", "record_id"))  # the first copy of the repeated id
    by_rule: dict[str, int] = {}
    by_column: dict[str, int] = {}
    for _, rule, column in expected:
        by_rule[rule] = by_rule.get(rule, 0) + 1
        by_column[f"{rule}:{column}"] = by_column.get(f"{rule}:{column}", 0) + 1
    assert outcome.status == "accepted"
    assert outcome.rows_received == ROWS
    assert outcome.rows_quarantined == len(expected)
    assert outcome.rows_accepted == ROWS - len(expected)
    assert outcome.quarantine_by_rule == dict(sorted(by_rule.items()))
    assert outcome.quarantine_by_column == dict(sorted(by_column.items()))
    quarantined = pl.read_parquet(tmp_path / outcome.quarantine_file)
    assert set(quarantined.select("row_number", "rule", "column").iter_rows()) == expected
    bad_rows = {row for row, _, _ in expected}
    assert not received.frame.filter(pl.col("row_number").is_in(list(bad_rows))).height
