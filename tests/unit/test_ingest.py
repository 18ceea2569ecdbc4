"""Ingest: reading formats, conforming headers, typing cells, formulas, fingerprints."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import polars as pl
import pytest

from schemas.contract import load_contracts
from schemas.errors import DeliveryRejected
from transforms.intake import ingest

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = load_contracts(REPO / "data_contracts")
ASC = CONTRACTS["adult_social_care"]
ASC_HEADER = [c.physical_name for c in ASC.columns]


def test_fingerprint_is_sha256_of_the_bytes(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"abc")
    assert ingest.fingerprint_file(path) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    path.write_bytes(b"abd")
    assert ingest.fingerprint_file(path) != (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_extract_date_comes_from_the_name_else_the_mtime(tmp_path):
    named = tmp_path / "housing_20261030.ndjson"
    named.write_text("{}")
    assert ingest.extract_date_of(named) == dt.date(2026, 10, 30)
    unnamed = tmp_path / "housing_latest.ndjson"
    unnamed.write_text("{}")
    stamp = dt.datetime(2026, 3, 4, 12).timestamp()
    os.utime(unnamed, (stamp, stamp))
    assert ingest.extract_date_of(unnamed) == dt.date(2026, 3, 4)
    impossible = tmp_path / "x_20261399.csv"
    impossible.write_text("")
    os.utime(impossible, (stamp, stamp))
    assert ingest.extract_date_of(impossible) == dt.date(2026, 3, 4)


def test_headers_map_by_physical_name_alias_and_loose_spelling():
    header = ["Client ID", "NHS No", "forename", " Surname ", "DOB", "Gender", "Postcode",
              "Primary Support Reason", "Service Type", "Start Date", "Notes"]
    conformance = ingest.conform_header(header, ASC, "f.csv")
    assert conformance.mapping["NHS No"] == "nhs_number"
    assert conformance.renamed == {
        "NHS No": "nhs_number", "forename": "forename", " Surname ": "surname",
        "DOB": "date_of_birth",
    }
    assert conformance.dropped == ("Notes",)
    assert conformance.missing_optional == ("ethnicity",)


def test_a_missing_required_column_rejects_naming_it_and_the_count():
    header = [h for h in ASC_HEADER if h not in ("Surname", "Postcode")]
    with pytest.raises(DeliveryRejected) as caught:
        ingest.conform_header(header, ASC, "f.csv")
    message = str(caught.value)
    assert message.startswith("f.csv: missing_column: ")
    assert "'Surname' (surname)" in message and "'Postcode' (postcode)" in message
    assert "(2 column(s))" in message


def test_a_headerless_file_never_quotes_its_first_row():
    first_row = ["ASC1", "Alice", "Alice", "Smith"]
    with pytest.raises(DeliveryRejected) as caught:
        ingest.conform_header(first_row, ASC, "f.csv")
    assert "Alice" not in str(caught.value)


def test_nhs_mod11():
    values = pl.Series(["943 476 5919", "9434765918", "123", None, "401-023-2137", "4010232138"])
    assert ingest.nhs_mod11_valid(values).to_list() == [True, False, None, None, True, False]


def _frame(**columns) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    base = {c.name: [None] * n for c in ASC.columns}
    base.update(columns)
    return pl.DataFrame(
        {"row_number": list(range(1, n + 1)), **base},
        schema={"row_number": pl.Int64, **{c.name: pl.String for c in ASC.columns}},
    )


def test_coercion_types_cells_and_reports_the_ones_it_cannot():
    frame = _frame(date_of_birth=["01/02/1990", "31/02/1990", "  ", None],
                   forename=[" Ann ", "", "Bo", None])
    typed, bad = ingest.coerce_types(frame, ASC)
    assert typed["date_of_birth"].to_list() == [dt.date(1990, 2, 1), None, None, None]
    assert typed["forename"].to_list() == ["Ann", None, "Bo", None]
    assert bad.rows() == [(2, "date_of_birth")]


def test_integers_booleans_and_numbers_from_text():
    housing = CONTRACTS["housing"]
    frame = pl.DataFrame(
        {"row_number": [1, 2, 3], "household_size": ["3", "2.0", "two"],
         "in_rent_arrears": ["yes", "FALSE", "maybe"]}
    )
    for c in housing.columns:
        if c.name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(c.name))
    typed, bad = ingest.coerce_types(frame, housing)
    assert typed["household_size"].to_list() == [3, 2, None]
    assert typed["in_rent_arrears"].to_list() == [True, False, None]
    assert sorted(bad.rows()) == [(3, "household_size"), (3, "in_rent_arrears")]


def test_formula_cells_are_found_and_neutralised():
    frame = _frame(forename=["=1+1", "Ann", "@SUM(A1)", "-Bo"], surname=["ok", "+x", None, "y"])
    cells = ingest.formula_cells(frame, ASC)
    assert sorted(cells.rows()) == [(1, "forename"), (2, "surname"), (3, "forename"),
                                    (4, "forename")]
    safe = ingest.neutralise_formulas(frame, cells)
    assert safe["forename"].to_list() == ["'=1+1", "Ann", "'@SUM(A1)", "'-Bo"]
    assert safe["surname"].to_list() == ["ok", "'+x", None, "y"]


def test_value_maps_recode_after_validation():
    typed = _frame(sex=["Female", "Male", None])
    assert ingest.apply_value_maps(typed, ASC)["sex"].to_list() == ["F", "M", None]


def test_csv_reads_in_chunks_with_file_row_numbers(tmp_path):
    path = tmp_path / "asc_20261030.csv"
    rows = "\n".join(f"ASC{i},,A,B,01/01/1990,Female,,ZZ1 1AA,Social Support,Day care,"
                     "01/01/2020" for i in range(25))
    path.write_text(",".join(ASC_HEADER) + "\n" + rows + "\n", encoding="utf-8")
    extract = ingest.open_extract(path, ASC, chunk_rows=10)
    batches = list(extract.batches)
    assert extract.header == ASC_HEADER
    assert sum(b.height for b in batches) == 25
    assert pl.concat(batches)["row_number"].to_list() == list(range(1, 26))


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (b"", "unreadable"),
        ("Client ID,Forename\nASC1,Zo\xe9\n".encode("latin-1"), "encoding"),
        (b"Client ID,Forename\nASC1,Ann\nASC2", "truncated"),
    ],
)
def test_unreadable_csv_is_rejected_without_the_parser_message(tmp_path, data, rule):
    path = tmp_path / "asc_20261030.csv"
    path.write_bytes(data)
    with pytest.raises(DeliveryRejected) as caught:
        extract = ingest.open_extract(path, ASC)
        list(extract.batches)
    assert str(caught.value).startswith(f"{path.name}: {rule}: ")
    assert "Zo" not in str(caught.value)


def test_json_objects_in_a_text_column_are_type_failures(tmp_path):
    import json

    housing = CONTRACTS["housing"].model_copy(update={"format": "json"})
    record = {"tenancy_ref": "T1", "uprn": "1", "first_name": {"given": "Ann"},
              "last_name": "Smith", "birth_date": "1990-01-01", "postcode": "ZZ1 1AA",
              "tenure": "Council", "household_size": 1, "rent_arrears": False}
    path = tmp_path / "housing_20261030.json"
    path.write_text(json.dumps([record, {**record, "tenancy_ref": "T2", "first_name": "Bo"}]))
    extract = ingest.open_extract(path, housing)
    conformance = ingest.conform_header(extract.header, housing, path.name)
    frame = ingest.conform(next(extract.batches), conformance, housing)
    typed, bad = ingest.coerce_types(frame, housing)
    assert bad.rows() == [(1, "forename")]
    assert typed["forename"].to_list() == [None, "Bo"]


def test_a_reader_that_stops_early_rejects_the_delivery_instead_of_passing_part_of_it():
    """Polars' streaming reader can end without an error when its engine fails; the
    independent row count must catch it."""
    import polars as pl
    import pytest

    from schemas.errors import DeliveryRejected
    from transforms.intake.common import ROW_NUMBER, guarded

    first_half = pl.DataFrame({ROW_NUMBER: [1, 2], "a": ["x", "y"]})
    batches = guarded(iter([first_half]), "x.csv", on_error=None, expected_rows=4)
    with pytest.raises(DeliveryRejected, match=r"x.csv: truncated: .*after 2 of 4 rows"):
        list(batches)
    whole = guarded(iter([first_half]), "x.csv", on_error=None, expected_rows=2)
    assert sum(b.height for b in whole) == 2


# --- opening a landing file safely -------------------------------------------------------------


def test_printable_escapes_control_characters_and_is_idempotent():
    from transforms.intake.names import printable

    hostile = "a\nb\x1b[2Jc\u202ed\x07.csv"
    shown = printable(hostile)
    assert shown == "a\\nb\\x1b[2Jc\\u202ed\\x07.csv"
    assert shown.isprintable() and printable(shown) == shown
    assert printable("Zoë [1] *.csv") == "Zoë [1] *.csv"


def test_a_pipe_a_directory_and_a_link_out_of_landing_are_refused_without_blocking(tmp_path):
    from transforms.intake.source import open_source

    landing = tmp_path / "landing"
    landing.mkdir()
    os.mkfifo(landing / "pipe.csv")  # opening it for reading would block without O_NONBLOCK
    (landing / "dir.csv").mkdir()
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    (landing / "link.csv").symlink_to(outside)
    (landing / "dangling.csv").symlink_to(tmp_path / "gone.csv")
    cases = {"pipe.csv": "not_a_file", "dir.csv": "not_a_file", "link.csv": "outside_landing",
             "dangling.csv": "not_a_file"}
    for name, rule in cases.items():
        with pytest.raises(DeliveryRejected) as caught:
            open_source(landing / name, landing=landing)
        assert caught.value.rule == rule, name


def test_the_bytes_fingerprinted_are_the_bytes_read_even_if_the_file_is_replaced(tmp_path):
    from transforms.intake.source import open_source

    path = tmp_path / "asc_20261030.csv"
    row = "ASC{},,A,B,01/01/1990,Female,,ZZ1 1AA,Social Support,Day care,01/01/2020"
    path.write_text(",".join(ASC_HEADER) + "\n" + "\n".join(row.format(i) for i in range(3))
                    + "\n")
    with open_source(path) as source:
        first = source.fingerprint
        swapped = tmp_path / "swap.csv"
        swapped.write_text(",".join(ASC_HEADER) + "\n" + row.format(9) + "\n")
        os.replace(swapped, path)  # a new file under the same name, between hash and read
        rows = pl.concat(list(ingest.open_extract(source, ASC).batches))
        assert rows.height == 3 and rows["Client ID"].to_list() == ["ASC0", "ASC1", "ASC2"]
    assert ingest.fingerprint_file(path) != first


def test_line_lengths_are_measured_across_block_ends(tmp_path):
    from transforms.intake.source import open_source

    path = tmp_path / "a.csv"
    path.write_bytes(b"h\n" + b"x" * 1024 + b"\n" + b"y" * 1025 + b"\n" + b"z" * 5000 + b"\n")
    with open_source(path, max_line_bytes=1024) as source:
        assert source.long_line == 3
    with open_source(path, max_line_bytes=8192) as source:
        assert source.long_line is None
    path.write_bytes(b"h\r" + b"x" * 3000 + b"\r")
    with open_source(path, max_line_bytes=1024) as source:
        assert source.eol == b"\r" and source.long_line == 2


def test_utf16_is_named_with_or_without_its_byte_order_mark():
    from transforms.intake.readers.text import wide_encoding

    text = "Client ID,Forename\nASC1,Ann\n"
    assert wide_encoding(text.encode("utf-16"))[0] == "UTF-16 (little-endian)"
    assert wide_encoding(text.encode("utf-16-be"))[1] == "utf-16-be"
    assert wide_encoding(text.encode("utf-8")) is None
    assert wide_encoding("Zoë,Renée\n".encode("cp1252")) is None


# --- row rules declared in the contracts ---------------------------------------------------------


def test_ni_numbers_follow_hmrcs_prefix_rules():
    values = pl.Series(["AB123456C", "ab 12 34 56 c", "DA123456A", "AD123456A", "AO123456A",
                        "GB123456A", "nk123456a", "TN123456A", "ZZ123456A", "QQ123456C",
                        "ZX000001A", "12", None])
    assert ingest.ni_prefix_valid(values).to_list() == [
        True, True, False, False, False, False, False, False, False, False, True, None, None
    ]


def test_dates_of_birth_outside_the_declared_range_are_implausible():
    dob = CONTRACTS["adult_social_care"].column("date_of_birth")
    values = pl.Series([dt.date(1899, 12, 31), dt.date(1900, 1, 1), dt.date(2026, 10, 30),
                        dt.date(2026, 10, 31), None]).cast(pl.Date)
    far = pl.Series([2_000_000_000], dtype=pl.Int32).cast(pl.Date)
    found = ingest.plausible_dates(pl.concat([values, far]), dob, dt.date(2026, 10, 30))
    assert found.to_list() == [False, True, True, False, None, False]


def test_a_column_and_its_alias_together_reject_naming_both():
    header = [*ASC_HEADER, "DOB"]
    with pytest.raises(DeliveryRejected) as caught:
        ingest.conform_header(header, ASC, "f.csv")
    assert str(caught.value) == (
        "f.csv: alias_collision: 'Date of Birth' and 'DOB' both map to date_of_birth "
        "(1 column(s))"
    )


def test_json_lines_say_which_key_repeats_or_nests():
    from transforms.intake.readers.json import top_level_findings

    assert top_level_findings('{"a": 1, "b": {"a": 2, "a": 3}, "a": 4, "c": [1]}') == [
        ("duplicate_key", "a"), ("nested", "b"), ("nested", "c")
    ]
    assert top_level_findings('{"a": "{not nested}", "b": "[x]"}') == []
    assert top_level_findings("[1, 2]") is None


def test_a_workbook_that_aborts_its_reader_ends_only_the_child(tmp_path):
    """A range that lies small while a cell sits in the sheet's last position passes the limit
    check; calamine then aborts (SIGABRT) in the child process, and only there."""
    import re
    import zipfile

    source = REPO / "tests/fixtures/deliveries/xlsx_used_range_to_last_cell_20261030.xlsx"
    lying = tmp_path / "children_20261030.xlsx"
    with zipfile.ZipFile(source) as book, zipfile.ZipFile(lying, "w") as out:
        for item in book.infolist():
            data = book.read(item.filename)
            if item.filename.startswith("xl/worksheets/"):
                data = re.sub(rb'<dimension ref="[^"]+"/>', b'<dimension ref="A1:K41"/>', data)
            out.writestr(item, data)
    with pytest.raises(DeliveryRejected) as caught:
        ingest.open_extract(lying, CONTRACTS["childrens_services"])
    assert caught.value.rule == "reader_crashed"
    assert "signal SIGABRT" in str(caught.value)


CT = CONTRACTS["council_tax"]  # windows-1252, ";"-separated
CT_HEADER = ";".join(c.physical_name for c in CT.columns)
BLOCK = 1 << 20  # the transcoder's block


def _ct_bytes(cells: list[str], rows: int, encoding: str) -> bytes:
    lines = [CT_HEADER] + [";".join([cells[i % len(cells)]] * len(CT.columns)) for i in range(rows)]
    return ("\n".join(lines) + "\n").encode(encoding)


def test_a_windows_1252_extract_is_read_through_an_unnamed_utf8_copy(tmp_path, monkeypatch):
    """Three 1 MiB blocks of Windows-1252 (0x92 is a right quote there) read as the text they
    hold, without the whole file in memory, and the UTF-8 copy leaves no file behind."""
    import tempfile

    spool_dir = tmp_path / "tmp"
    spool_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool_dir))
    cells = ["Zoë", "Siân", "Ægir", "O’Brien", "£12"]
    path = tmp_path / "council_tax_20261030.csv"
    path.write_bytes(_ct_bytes(cells, 60_000, "cp1252"))
    assert path.stat().st_size > 2 * BLOCK
    extract = ingest.open_extract(path, CT, chunk_rows=25_000)
    assert list(spool_dir.iterdir()) == []
    frame = pl.concat(list(extract.batches))
    first = CT.columns[0].physical_name
    assert frame[first].to_list() == [cells[i % len(cells)] for i in range(60_000)]
    assert frame["row_number"].to_list() == list(range(1, 60_001))


def test_utf8_where_windows_1252_is_declared_is_named_even_across_a_block_end(tmp_path):
    """A two-byte UTF-8 character cut by the block end is still UTF-8; 'Á' (C3 81) holds a byte
    Windows-1252 lacks, and the rejection still names UTF-8, the encoding the file is in."""
    head = (CT_HEADER + "\n").encode()
    row = ";".join(["x"] * len(CT.columns))
    filler = (row + "\n").encode() * ((BLOCK - len(head)) // (len(row) + 1) - 1)
    pad = b"a" * (BLOCK - 1 - len(head) - len(filler))
    data = head + filler + pad + "é;Á".encode() + b";x" * (len(CT.columns) - 2) + b"\n"
    assert data[BLOCK - 1 : BLOCK + 1] == "é".encode()
    path = tmp_path / "council_tax_20261030.csv"
    path.write_bytes(data)
    with pytest.raises(DeliveryRejected) as caught:
        ingest.open_extract(path, CT)
    assert str(caught.value) == (
        f"{path.name}: encoding: file is UTF-8 but the contract declares {CT.encoding}"
    )


def test_a_byte_windows_1252_lacks_rejects_without_quoting_the_text(tmp_path):
    path = tmp_path / "council_tax_20261030.csv"
    path.write_bytes(_ct_bytes(["Zoe"], 10, "ascii").replace(b"Zoe", b"Zo\x81", 1))
    with pytest.raises(DeliveryRejected) as caught:
        ingest.open_extract(path, CT)
    assert str(caught.value) == f"{path.name}: encoding: file is not valid {CT.encoding}"


def _gzip(contract, **limits):
    values = contract.limits.model_dump() | limits
    return contract.model_copy(update={
        "compression": "gzip", "limits": type(contract.limits).model_validate(values),
    })


def test_a_gzip_extract_unpacks_to_the_limit_and_not_a_byte_more(tmp_path):
    """maxDecompressedBytes at the unpacked size reads the file; one byte less rejects it."""
    import gzip

    text = _ct_bytes(["Zoë", "£12"], 2_000, "cp1252")
    path = tmp_path / "council_tax_20261030.csv"
    path.write_bytes(gzip.compress(text, mtime=0))
    frame = pl.concat(list(ingest.open_extract(path, _gzip(CT, max_decompressed_bytes=len(text)),
                                               chunk_rows=700).batches))
    assert frame.height == 2_000
    assert frame[CT.columns[0].physical_name].to_list()[:2] == ["Zoë", "£12"]
    with pytest.raises(DeliveryRejected) as caught:
        ingest.open_extract(path, _gzip(CT, max_decompressed_bytes=len(text) - 1))
    assert str(caught.value) == (
        f"{path.name}: resource_limit: unpacks to more than the contract's {len(text) - 1} "
        "bytes (maxDecompressedBytes)"
    )


@pytest.mark.parametrize(("fmt", "name"), [
    ("csv", "asc_20261030.csv"), ("ndjson", "housing_20261030.ndjson"),
])
def test_a_damaged_gzip_stream_or_a_long_unpacked_line_rejects(tmp_path, fmt, name):
    """A stream cut short is `truncated`; a line longer than maxLineBytes once unpacked is
    `resource_limit`, as it would be in a plain file (gzip hides it from the file's own)."""
    import gzip

    contract = ASC if fmt == "csv" else CONTRACTS["housing"]
    if fmt == "csv":
        text = (",".join(ASC_HEADER) + "\n" + "ASC1," + "x" * 5_000 + "\n").encode()
    else:
        text = ('{"a": "' + "x" * 5_000 + '"}\n').encode()
    packed = gzip.compress(text, mtime=0)
    path = tmp_path / name
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DeliveryRejected) as caught:
        ingest.open_extract(path, _gzip(contract))
    assert str(caught.value) == f"{name}: truncated: the gzip stream is damaged or cut short"
    path.write_bytes(packed)
    with pytest.raises(DeliveryRejected) as caught:
        ingest.open_extract(path, _gzip(contract, max_line_bytes=2_048))
    assert str(caught.value).startswith(f"{name}: resource_limit: line ")
    assert "longer than 2048 bytes (maxLineBytes)" in str(caught.value)
