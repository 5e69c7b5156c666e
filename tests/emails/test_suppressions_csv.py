"""The one CSV parser behind every address import (blacklist and suppressions)."""

from __future__ import annotations

import io

import pytest

from emails.csv_addresses import CsvFileError, csv_lines, parse_addresses


def rejected(parsed) -> list[tuple[int, str, str]]:
    return [(row.line, row.value, row.reason) for row in parsed.rejected]


def test_one_address_per_line_without_a_header():
    parsed = parse_addresses(b"a@example.com\r\nB@Example.COM\r\n")

    assert [(row.line, row.address) for row in parsed.rows] == [
        (1, "a@example.com"),
        (2, "b@example.com"),
    ]
    assert parsed.rejected == []


def test_a_header_names_the_address_and_reason_columns():
    parsed = parse_addresses(
        "Name,E-Mail Address,Reason\nAmy,amy@example.com,moved\nBo,bo@example.com\n"
    )

    assert [(row.address, row.reason) for row in parsed.rows] == [
        ("amy@example.com", "moved"),
        ("bo@example.com", None),
    ]


def test_a_first_row_that_names_no_address_column_is_data():
    parsed = parse_addresses("Addresses\na@example.com\n")

    assert [row.address for row in parsed.rows] == ["a@example.com"]
    assert rejected(parsed) == [(1, "Addresses", "not a valid email address")]


def test_mixed_case_duplicates_are_rejected_with_the_first_line():
    parsed = parse_addresses("a@example.com\nother@example.com\nA@EXAMPLE.com\n")

    assert [row.address for row in parsed.rows] == ["a@example.com", "other@example.com"]
    assert rejected(parsed) == [(3, "a@example.com", "duplicate of line 1")]


@pytest.mark.parametrize(
    "value",
    [
        "not-an-address",
        "a@localhost",
        "Amy <amy@example.com>",
        "a b@example.com",
        "josé@example.com",
        "a@example.com;b@example.com",
    ],
)
def test_malformed_addresses_are_rejected(value):
    parsed = parse_addresses(f'"{value}"\n'.encode())

    assert parsed.rows == []
    assert rejected(parsed) == [(1, value, "not a valid email address")]


def test_blank_lines_are_skipped_but_lines_keep_their_numbers():
    parsed = parse_addresses(b"\n\na@example.com\n , \nnope\n")

    assert [row.line for row in parsed.rows] == [3]
    assert rejected(parsed) == [(5, "nope", "not a valid email address")]


def test_a_utf8_byte_order_mark_is_ignored():
    parsed = parse_addresses("\ufeffaddress\na@example.com\n".encode())

    assert [row.address for row in parsed.rows] == ["a@example.com"]


def test_a_file_object_is_read():
    parsed = parse_addresses(io.BytesIO(b"a@example.com\n"))

    assert [row.address for row in parsed.rows] == ["a@example.com"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfea\x00", "not UTF-8"),
        (b"", "no addresses"),
        (b"\n \n", "no addresses"),
        (b"a@example.com\n" * 4, "more than 3 rows"),
    ],
)
def test_a_file_that_cannot_be_read_as_a_whole_is_refused(content, message):
    with pytest.raises(CsvFileError, match=message):
        parse_addresses(content, max_rows=3)


def test_a_file_over_the_size_limit_is_refused():
    with pytest.raises(CsvFileError, match="larger than"):
        parse_addresses(io.BytesIO(b"a@example.com\n" * 100_000), max_bytes=1024 * 1024)


def test_a_long_rejected_value_is_shortened_in_the_report():
    parsed = parse_addresses(("x" * 5000 + "\n").encode())

    assert len(parsed.rejected[0].value) == 100


def test_written_cells_never_start_a_formula_and_read_back_unchanged():
    lines = "".join(
        csv_lines(["address", "reason"], [["a@example.com", "=1+1"], ["b@example.com", "-"]])
    )

    assert lines == "address,reason\r\na@example.com,'=1+1\r\nb@example.com,'-\r\n"
    parsed = parse_addresses(lines)
    assert [(row.address, row.reason) for row in parsed.rows] == [
        ("a@example.com", "=1+1"),
        ("b@example.com", "-"),
    ]
