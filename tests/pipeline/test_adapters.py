"""Input adapters: ``--format auto|json|cloudevents|asterisk-csv`` (issue 5)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pipeline.adapters import ASTERISK_COLUMNS, FORMATS, adapt_line, asterisk_csv_to_json

CSV = Path(__file__).resolve().parents[1] / "data" / "shapes" / "asterisk_master.csv"
LINE = (b'"acme","4155550100","200","from-internal","""Ada Abara"" <4155550100>","SIP/201-0000001a",'
        b'"SIP/trunk-0000001b","Dial","SIP/trunk/200,30","2026-03-02 10:00:00","2026-03-02 10:00:05",'
        b'"2026-03-02 10:01:05","65","60","ANSWERED","DOCUMENTATION","1772445600.12","vip"')


def test_formats():
    assert FORMATS == ("auto", "json", "cloudevents", "asterisk-csv")
    with pytest.raises(ValueError):
        adapt_line(b"{}", "xml")


@pytest.mark.parametrize("fmt", ["auto", "asterisk-csv"])
def test_asterisk_line_becomes_call_event(fmt):
    value, hint = adapt_line(LINE, fmt)
    rec = json.loads(value)
    assert hint == "call"
    assert list(rec) == list(ASTERISK_COLUMNS[:18])
    assert rec["clid"] == '"Ada Abara" <4155550100>' and rec["billsec"] == "60"


def test_sixteen_column_cdr_and_bom():
    import csv

    row = next(csv.reader(io.StringIO(LINE.decode())))[:16]
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="").writerow(row)
    short = buf.getvalue().encode()
    assert json.loads(adapt_line(short, "auto")[0])["amaflags"] == "DOCUMENTATION"
    assert adapt_line(b"\xef\xbb\xbf" + LINE, "auto")[1] == "call"


@pytest.mark.parametrize(
    "line, fmt, out, hint",
    [
        (b'{"a": 1}', "auto", b'{"a": 1}', None),
        (b'  {"a": 1}', "auto", b'  {"a": 1}', None),
        (b'{"specversion": "1.0"}', "cloudevents", b'{"specversion": "1.0"}', None),
        (LINE, "json", LINE, None),
        (b"a,b,c", "auto", b"a,b,c", None),
        (b",".join([b"x"] * 18), "auto", b",".join([b"x"] * 18), None),   # 18 columns, not a CDR
        (b"\xff\xfe", "auto", b"\xff\xfe", None),
        (b"", "auto", b"", None),
        (b"a,b,c", "asterisk-csv", b"a,b,c", "call"),
    ],
)
def test_passthrough_and_bad_lines(line, fmt, out, hint):
    assert adapt_line(line, fmt) == (out, hint)


def test_asterisk_csv_to_json_leaves_non_cdr_unchanged():
    assert asterisk_csv_to_json(b"not,a,cdr") == b"not,a,cdr"


def test_classify_stream_over_master_csv():
    from pipeline.offline import classify_stream
    from pipeline.processing import Processor
    from pipeline.policy import load_policy
    from pipeline.settings import Settings

    proc = Processor(load_policy(), Settings(secret_hash_key="k", pseudonym_key="p"), detector=None)
    out = io.BytesIO()
    counts = classify_stream(io.BytesIO(CSV.read_bytes() + b"garbage line\n"), out, processor=proc, fmt="auto")
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert counts["lines"] == len(lines) == 7 and counts["deadletters"] == 1
    env = lines[0]
    assert env["event_type"] == "call"
    assert env["fields"]["/src"]["category"] == "usage"
    assert env["fields"]["/accountcode"]["category"] == "account"
    assert env["fields"]["/lastdata"]["category"] == "usage"
    assert "error" in lines[-1]
