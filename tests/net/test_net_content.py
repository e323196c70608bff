"""The typed table parser and content checks, on real archive bodies and a hand-written fixture.

References are independent: the JSON body of the same query parsed by `json`, and Python's `csv`
module for the raw strings.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from astrobio_cli.net.content import check_body, describe_error_body, parse_delimited
from astrobio_cli.net.errors import ContentError

ARCHIVE = Path(__file__).resolve().parents[1] / "data" / "nasa-exoplanet-archive"


def test_real_csv_matches_the_json_of_the_same_query():
    table = parse_delimited((ARCHIVE / "csv.txt").read_text())
    ref = json.loads((ARCHIVE / "json.json").read_text())
    assert table.names == list(ref[0])
    assert table.num_rows == len(ref) > 100
    for name in table.names:
        col = table.column(name)
        assert col.kind == "string"
        assert col.values == [row[name] for row in ref]


def test_real_tsv_matches_the_json_of_the_same_query():
    table = parse_delimited((ARCHIVE / "tsv.txt").read_text(), delimiter="\t")
    ref = json.loads((ARCHIVE / "json.json").read_text())
    assert table.num_rows == len(ref)
    for name in table.names:
        assert table.column(name).values == [row[name] for row in ref]


def test_real_quoted_digits_stay_strings():
    # The archive quotes kepid ("7515212"): it sent a string, so it stays a string.
    table = parse_delimited((ARCHIVE / "limit.txt").read_text())
    assert table.num_rows == 5
    assert table.column("kepid").kind == "string"
    assert table.column("kepid").values[0] == "7515212"


def test_real_single_column_matches_csv_module():
    text = (ARCHIVE / "table-pscomppars.txt").read_text()
    table = parse_delimited(text, expected_columns=["pl_name"])
    ref = [row["pl_name"] for row in csv.DictReader(text.splitlines())]
    assert table.column("pl_name").values == ref


def test_multi_column_fixture_types_and_blanks():
    text = (ARCHIVE / "pscomppars-default.csv").read_text()
    table = parse_delimited(text)
    ref = list(csv.DictReader(text.splitlines()))
    kinds = {c.name: c.kind for c in table.columns}
    assert kinds["pl_name"] == kinds["hostname"] == kinds["discoverymethod"] == "string"
    assert kinds["disc_year"] == kinds["sy_snum"] == kinds["sy_pnum"] == "int"
    assert kinds["pl_rade"] == kinds["st_met"] == "float"
    for name in ("pl_rade", "pl_bmasse", "pl_dens", "st_lum", "sy_dist"):
        for got, row in zip(table.column(name).values, ref, strict=True):
            if row[name] == "":
                assert math.isnan(got)
            else:
                assert got == float(row[name])
    assert table.column("disc_year").values == [int(r["disc_year"]) for r in ref]
    # pl_eqt's filled values are all integers: inferred int, blanks null; a source that knows
    # the column is a float forces it, and blanks become NaN.
    assert kinds["pl_eqt"] == "int" and table.column("pl_eqt").values[1] is None
    forced = parse_delimited(text, kinds={"pl_eqt": "float"})
    assert math.isnan(forced.column("pl_eqt").values[1])


def test_quotes_commas_and_escaped_quotes():
    text = 'a,b,c\n"x, y","say ""hi""",3\n"",,\n'
    t = parse_delimited(text)
    assert t.column("a").values == ["x, y", None]
    assert t.column("b").values == ['say "hi"', None]
    assert t.column("c").kind == "int" and t.column("c").values == [3, None]


def test_header_mismatch_quotes_both():
    with pytest.raises(ContentError, match=r"columns 'pl_name,hostname'.*'pl_name,pl_rade'"):
        parse_delimited('pl_name,hostname\n"a","b"\n', expected_columns=["pl_name", "pl_rade"])


def test_header_is_case_insensitive():
    t = parse_delimited('PL_NAME\n"a"\n', expected_columns=["pl_name"])
    assert t.num_rows == 1


def test_row_with_wrong_field_count_names_the_line():
    text = "a,b\n1,2\n3,4\n5\n"
    with pytest.raises(ContentError, match=r"line 4 has 1 fields but the header has 2: '5'"):
        parse_delimited(text)


def test_unparsable_number_names_line_and_column():
    text = 'pl_name,pl_rade\n"a",1.0\n"b",big\n'
    with pytest.raises(ContentError, match=r"line 3: column 'pl_rade' value 'big' is not a number"):
        parse_delimited(text, kinds={"pl_rade": "float"})


def test_unterminated_quote_names_the_line():
    with pytest.raises(ContentError, match="line 2: unterminated"):
        parse_delimited('a\n"open\n')


def test_empty_result_is_an_empty_table_with_schema():
    t = parse_delimited(
        "pl_name,pl_rade,disc_year\n", kinds={"pl_rade": "float", "disc_year": "int"}
    )
    assert t.num_rows == 0
    assert [(c.name, c.kind) for c in t.columns] == [
        ("pl_name", "string"),
        ("pl_rade", "float"),
        ("disc_year", "int"),
    ]


def test_no_header_at_all_is_an_error():
    with pytest.raises(ContentError, match="empty"):
        parse_delimited("")


def test_check_body_accepts_data_and_rejects_html_and_tap_errors():
    check_body(b'pl_name\n"a"\n')
    with pytest.raises(ContentError, match="Oops"):
        check_body(b"  <html><head><title>Oops</title></head><body>x</body></html>")
    err = b'<VOTABLE><RESOURCE><INFO value="ERROR" name="QUERY_STATUS">bad ADQL</INFO></RESOURCE></VOTABLE>'
    with pytest.raises(ContentError, match="reported an error: bad ADQL"):
        check_body(err)
    assert describe_error_body(err) == "bad ADQL"


def test_parquet_and_csv_outputs_round_trip(tmp_path):
    import pyarrow.parquet as pq

    from astrobio_cli.net.tables import write_table

    text = (ARCHIVE / "pscomppars-default.csv").read_text()
    table = parse_delimited(text, kinds={"pl_eqt": "float"})
    table.column("pl_rade").unit = "earthRad"
    write_table(table, tmp_path / "t.csv", "csv")
    back = parse_delimited((tmp_path / "t.csv").read_text(), kinds={"pl_eqt": "float"})
    write_table(table, tmp_path / "t.parquet")
    pq_back = pq.read_table(tmp_path / "t.parquet")
    assert pq_back.schema.field("pl_rade").metadata[b"unit"] == b"earthRad"
    for col in table.columns:
        for got in (back.column(col.name).values, pq_back.column(col.name).to_pylist()):
            assert len(got) == len(col.values)
            for a, b in zip(got, col.values, strict=True):
                assert (isinstance(a, float) and math.isnan(a) and math.isnan(b)) or a == b, (
                    col.name
                )


def test_csv_labelled_text_html_is_still_data():
    check_body(b'pl_name\n"a"\n', content_type="text/html; charset=utf-8")
    with pytest.raises(ContentError, match="HTML page"):
        check_body(b"<p>Service moved</p>", content_type="text/html")


def test_integers_too_big_for_int64_are_not_ints():
    t = parse_delimited("id,n\n123456789012345678901,1\n7,2\n")
    assert t.column("id").kind == "float" and t.column("n").kind == "int"
