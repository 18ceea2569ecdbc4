"""Pseudonymisation: tokens match a reference HMAC, differ per key and purpose, and nothing
identifiable leaves the function."""

import hashlib
import hmac
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from schemas.contract import load_contracts
from transforms.identity.geography import load_geography
from transforms.identity.keys import PseudonymisationKey
from transforms.identity.link import load_linkage_rules
from transforms.identity.pseudonymise import SEPARATOR, hmac_sha256_hex, pseudonymise

REPO = Path(__file__).resolve().parents[2]
EXTRACT = date(2025, 1, 31)
KEY = PseudonymisationKey(b"A" * 32, source="test")
OTHER_KEY = PseudonymisationKey(b"B" * 32, source="test")

# Sentinels: unusual enough that finding them anywhere is a leak, valid enough to be tokenised.
NHS = "943 476 5919"
NINO = "JX 98 76 54 D"
FORENAME, SURNAME = "Xanthippe", "Quillfeather-Vantablack"
UPRN = "9988776655"


@pytest.fixture(scope="module")
def contracts():
    return load_contracts(REPO / "data_contracts")


@pytest.fixture(scope="module")
def geography():
    return load_geography()


@pytest.fixture(scope="module")
def rules():
    return load_linkage_rules(REPO / "data_contracts" / "linkage.yaml")


def _reference(key: PseudonymisationKey, purpose: str, name: str, *parts: str) -> str:
    message = SEPARATOR.join(parts).encode()
    return hmac.new(key.subkey(purpose, name), message, hashlib.sha256).hexdigest()


def asc_frame(postcode: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "record_id": ["ASC-000001", "ASC-000002"],
            "nhs_number": [NHS, "943 476 5910"],  # second fails its check digit
            "forename": [FORENAME, "Bob"],
            "surname": [SURNAME, "Smith"],
            "date_of_birth": [date(1950, 3, 2), date(1980, 1, 31)],
            "sex": ["Female", "Male"],
            "ethnicity": ["A1", None],
            "postcode": [postcode.replace(" ", "").lower(), "ZZ99 9ZZ"],
            "support_reason": ["Physical Support", "Social Support"],
            "service_type": ["Home care", "Day care"],
            "support_start_date": [date(2020, 1, 1), date(2021, 1, 1)],
            "row_number": [2, 3],
        }
    )


def housing_frame(postcode: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "record_id": ["TEN-1"],
            "uprn": ["00" + UPRN],
            "ni_number": [NINO.lower()],
            "forename": [FORENAME.upper()],
            "surname": [SURNAME.upper().replace("-", " ")],
            "date_of_birth": [date(1950, 3, 2)],
            "postcode": [postcode],
            "tenure": ["Council"],
            "household_size": [2],
            "in_rent_arrears": [True],
            "row_number": [7],
        }
    )


@pytest.fixture(scope="module")
def postcode(geography):
    return geography["postcode"][0]


@pytest.fixture(scope="module")
def asc(contracts, geography, rules, postcode):
    return pseudonymise(asc_frame(postcode), contracts["adult_social_care"], KEY, geography,
                        EXTRACT, rules)


def test_token_frame_has_exactly_the_promised_columns(asc, rules, contracts):
    tokens, _ = asc
    expected = (
        ["department", "row_number"]
        + rules.token_columns()
        + ["age", "lsoa", "sex", "ethnicity", "support_reason", "service_type",
           "support_start_date"]
    )
    assert tokens.columns == expected
    assert tokens.schema["row_number"] == pl.Int64 and tokens.schema["age"] == pl.Int16
    assert tokens["row_number"].to_list() == [2, 3]


def test_tokens_match_the_standard_library_hmac(asc, postcode):
    tokens, _ = asc
    row = tokens.row(0, named=True)
    assert row["tok_nhs_number"] == _reference(KEY, "linkage", "nhs_number", "9434765919")
    sector = postcode[:-2]
    assert row["tok_name_dob_sector"] == _reference(
        KEY, "linkage", "name_dob_sector", "quillfeather vantablack", "x", "1950-03-02", sector
    )
    assert row["tok_household"] is None  # adult social care has no UPRN


def test_invalid_nhs_number_is_not_tokenised_and_is_counted(asc):
    tokens, counts = asc
    assert tokens["tok_nhs_number"].to_list()[1] is None
    assert counts.to_dict()["identifiers_invalid"] == {"nhs_number_invalid_check_digit": 1}
    assert counts.tokens["tok_nhs_number"] == 1
    assert counts.key_id == KEY.key_id and counts.rows == 2


def test_derived_quasi_identifiers(asc, geography, postcode):
    tokens, counts = asc
    lsoa = geography.filter(pl.col("postcode") == postcode)["lsoa_code"][0]
    assert tokens["age"].to_list() == [74, 45]
    assert tokens["lsoa"].to_list() == [lsoa, None]
    assert tokens["sex"].to_list() == ["F", "M"]
    assert tokens["ethnicity"].to_list() == ["A1", None]
    assert counts.postcodes_not_in_geography == 1


def test_same_person_same_tokens_across_departments(asc, contracts, geography, rules, postcode):
    housing, _ = pseudonymise(housing_frame(postcode), contracts["housing"], KEY, geography,
                              EXTRACT, rules)
    a, h = asc[0].row(0, named=True), housing.row(0, named=True)
    for column in ("tok_name_dob_sector", "tok_name_dob", "tok_forename_dob_postcode"):
        assert a[column] == h[column] is not None
    assert h["tok_household"] == _reference(KEY, "household", "household", UPRN)
    assert h["tok_ni_number"] == _reference(KEY, "linkage", "ni_number", "JX987654D")
    assert h["sex"] is None and h["ethnicity"] is None and h["lsoa"] is not None


def test_tokens_differ_across_keys_and_purposes(asc, contracts, geography, rules, postcode):
    other, _ = pseudonymise(asc_frame(postcode), contracts["adult_social_care"], OTHER_KEY,
                            geography, EXTRACT, rules)
    assert other["tok_nhs_number"][0] != asc[0]["tok_nhs_number"][0]
    messages = pl.Series(["100023336956"])
    linkage = hmac_sha256_hex(messages, KEY.subkey("linkage", "uprn"))[0]
    household = hmac_sha256_hex(messages, KEY.subkey("household", "uprn"))[0]
    assert linkage != household


def test_value_map_applies_to_kept_columns(contracts, geography, rules, postcode):
    frame = pl.DataFrame(
        {
            "record_id": ["CT1", "CT2"], "forename": ["Ann", "Ben"], "surname": ["Lee", "Ray"],
            "date_of_birth": [None, date(1990, 1, 1)], "ni_number": [None, "AB123456C"],
            "postcode": [postcode, postcode], "uprn": ["1", "2"], "band": ["A", "B"],
            "single_person_discount": ["Y", "N"], "row_number": [1, 2],
        },
        schema_overrides={"date_of_birth": pl.Date},
    )
    tokens, counts = pseudonymise(frame, contracts["council_tax"], KEY, geography, EXTRACT, rules)
    assert tokens["single_person_discount"].to_list() == ["true", "false"]
    assert tokens["age"].to_list() == [None, 35]
    assert tokens["tok_name_dob"].to_list()[0] is None
    assert counts.identifiers_present["date_of_birth"] == 1


def test_no_identifier_value_leaves_pseudonymisation(asc, contracts, geography, rules, postcode):
    housing, hcounts = pseudonymise(housing_frame(postcode), contracts["housing"], KEY,
                                    geography, EXTRACT, rules)
    tokens, counts = asc
    text = " ".join(
        [str(frame.rows()) for frame in (tokens, housing)]
        + [str(c.to_dict()) for c in (counts, hcounts)]
        + [repr(KEY)]
    ).lower()
    sentinels = [NHS, "9434765919", NINO, "JX987654D", FORENAME, SURNAME, "quillfeather",
                 "xanthippe", UPRN, "1950-03-02", "asc-000001", postcode,
                 KEY.export_text()]
    for sentinel in sentinels:
        assert sentinel.lower() not in text, "identifier or key leaked"


def test_missing_row_number_is_refused_without_values(contracts, geography, rules, postcode):
    with pytest.raises(ValueError) as caught:
        pseudonymise(asc_frame(postcode).drop("row_number"), contracts["adult_social_care"],
                     KEY, geography, EXTRACT, rules)
    assert FORENAME not in str(caught.value)


def test_hmac_engines_agree_with_the_standard_library():
    from transforms.identity.pseudonymise import _polars_hash, tokenise_columns

    messages = ["9434765919", "zoë\x1fo'brien", "", "x" * 200, None, "9434765919"]
    subkey = KEY.subkey("linkage", "nhs_number")
    reference = [
        None if m is None else hmac.new(subkey, m.encode(), hashlib.sha256).hexdigest()
        for m in messages
    ]
    frame = pl.DataFrame({"m": messages}, schema={"m": pl.String})
    engines = ["hashlib"] + (["polars-hash"] if _polars_hash is not None else [])
    for engine in engines:
        assert tokenise_columns(frame, {"m": subkey}, engine)["m"].to_list() == reference, engine
    empty = pl.DataFrame({"m": []}, schema={"m": pl.String})
    for engine in engines:
        assert tokenise_columns(empty, {"m": subkey}, engine).height == 0


def test_library_errors_are_reraised_without_values(contracts, geography, rules, postcode):
    from transforms.identity.pseudonymise import PseudonymisationError

    frame = asc_frame(postcode).with_columns(pl.lit(FORENAME).alias("row_number"))
    with pytest.raises(PseudonymisationError) as caught:
        pseudonymise(frame, contracts["adult_social_care"], KEY, geography, EXTRACT, rules)
    assert FORENAME not in str(caught.value) and caught.value.__cause__ is None


def _token_file(tmp_path, contract, geography, rules):
    from transforms.identity.pseudonymise import token_file

    return token_file(tmp_path, "d" * 64, EXTRACT, contract=contract, key=KEY,
                      geography=geography, rules=rules, file_name="asc.csv")


def test_chunks_written_one_at_a_time_are_the_whole_frame(contracts, geography, rules,
                                                          postcode, tmp_path):
    """A delivery pseudonymised and written chunk by chunk as it is accepted (bounded memory)
    gives the same token file and counts as in one piece; a restart (late duplicates) forgets
    what was written before it. A chunk boundary that drops a row fails here."""
    from transforms.identity.secure import read_metadata

    frame = pl.concat([asc_frame(postcode)] * 5).with_columns(
        pl.int_range(2, 12, dtype=pl.Int64).alias("row_number")
    )
    contract = contracts["adult_social_care"]
    whole, whole_counts = pseudonymise(frame, contract, KEY, geography, EXTRACT, rules)
    with _token_file(tmp_path, contract, geography, rules) as tokens:
        tokens.write(frame.head(3))
        tokens.restart()
        for offset in range(0, frame.height, 4):
            tokens.write(frame.slice(offset, 4))
    [path] = (tmp_path / "secure" / "pseudonymised" / "adult_social_care").iterdir()
    assert path.name == f"{EXTRACT:%Y%m%d}_{'d' * 16}.parquet"
    assert pl.read_parquet(path).equals(whole)
    assert read_metadata(path)["pseudonymisation"] == whole_counts.to_dict()
    assert read_metadata(path)["key_id"] == KEY.key_id


def test_a_token_file_whose_delivery_fails_leaves_nothing(contracts, geography, rules,
                                                          postcode, tmp_path):
    """Rows written, then the delivery rejected (the block raises): no file, no temporary."""
    from schemas.errors import DeliveryRejected

    contract = contracts["adult_social_care"]
    with pytest.raises(DeliveryRejected), _token_file(tmp_path, contract, geography, rules) as t:
        t.write(asc_frame(postcode))
        raise DeliveryRejected("asc.csv: rejected (quarantine_limit)")
    folder = tmp_path / "secure" / "pseudonymised" / "adult_social_care"
    assert list(folder.iterdir()) == []


def test_a_chunk_that_fails_pseudonymisation_rejects_its_delivery_by_type(
    contracts, geography, rules, postcode, tmp_path
):
    from schemas.errors import DeliveryRejected

    bad = asc_frame(postcode).with_columns(pl.lit(FORENAME).alias("row_number"))
    contract = contracts["adult_social_care"]
    with pytest.raises(DeliveryRejected) as caught, \
            _token_file(tmp_path, contract, geography, rules) as tokens:
        tokens.write(bad)
    message = str(caught.value)
    assert "asc.csv" in message and "pseudonymisation failed" in message
    assert FORENAME not in message
