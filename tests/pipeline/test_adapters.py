"""Input adapters: ``--format auto|json|cloudevents|asterisk-csv`` (issue 5)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pipeline.adapters import (
    ASTERISK_COLUMNS,
    FORMATS,
    NOT_A_CDR,
    Rejection,
    adapt_line,
    asterisk_csv_to_json,
)

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
        (b"a,b,c", "asterisk-csv", b"a,b,c", NOT_A_CDR),
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


BOM = b"\xef\xbb\xbf"
#: a JSON object with 16 top-level members: 17 commas-separated pieces, a CDR's column count
_WIDE_JSON = json.dumps({"MessageSid": "SM1", "From": "+14155550100", "Body": "Ada ada@example.com",
                         **{f"k{i}": i for i in range(13)}}).encode()


@pytest.mark.parametrize(
    "line, fmt, value, hint",
    [
        # a byte-order mark before a JSON line is dropped (RFC 8259 section 8.1), whatever the format
        (BOM + b'{"a": 1}', "auto", b'{"a": 1}', None),
        (BOM + b'{"a": 1}', "json", b'{"a": 1}', None),
        (BOM + b'{"specversion": "1.0"}', "cloudevents", b'{"specversion": "1.0"}', None),
        (BOM + b"  {}", "auto", b"  {}", None),
        (BOM, "auto", b"", None),
        # only a leading one: inside the value it is content
        (b'{"a": "\xef\xbb\xbf"}', "json", b'{"a": "\xef\xbb\xbf"}', None),
        (BOM + BOM + b"{}", "json", BOM + b"{}", None),
        # the declared asterisk-csv format rejects every line that is no CDR, JSON included
        (b'{"From": "+14155550100", "Body": "hi"}', "asterisk-csv", b'{"From": "+14155550100", "Body": "hi"}',
         NOT_A_CDR),
        (BOM + b'{"a": 1}', "asterisk-csv", BOM + b'{"a": 1}', NOT_A_CDR),
        (b"", "asterisk-csv", b"", NOT_A_CDR),
        (b",".join([b"x"] * 15), "asterisk-csv", b",".join([b"x"] * 15), NOT_A_CDR),
        (b",".join([b"x"] * 22), "asterisk-csv", b",".join([b"x"] * 22), NOT_A_CDR),
        (b"\xff\xfe,a", "asterisk-csv", b"\xff\xfe,a", NOT_A_CDR),
        # JSON whose commas give a CDR's column count is still JSON, never a call event
        (_WIDE_JSON, "asterisk-csv", _WIDE_JSON, NOT_A_CDR),
        (b'  {"Body": "' + b"a," * 17 + b'"}', "asterisk-csv", b'  {"Body": "' + b"a," * 17 + b'"}', NOT_A_CDR),
        (b"[" + b"1," * 17 + b"1]", "asterisk-csv", b"[" + b"1," * 17 + b"1]", NOT_A_CDR),
        (BOM + _WIDE_JSON, "asterisk-csv", BOM + _WIDE_JSON, NOT_A_CDR),
        # 18 columns without integer duration and billsec: not a CDR either
        (b",".join([b"x"] * 18), "asterisk-csv", b",".join([b"x"] * 18), NOT_A_CDR),
    ],
)
def test_bom_and_rejected_lines(line, fmt, value, hint):
    assert adapt_line(line, fmt) == (value, hint)


def test_rejection_message_names_no_content():
    line = b'{"email": "ada@example.com", "to": "+14155550100"}'
    _, hint = adapt_line(line, "asterisk-csv")
    assert isinstance(hint, Rejection) and hint.kind == "not_asterisk_cdr"
    assert "example.com" not in hint.message and "4155550100" not in hint.message


def _processor():
    from pipeline.policy import load_policy
    from pipeline.processing import Processor
    from pipeline.settings import Settings

    return Processor(load_policy(), Settings(secret_hash_key="k", pseudonym_key="p"), detector=None)


# (lines of the input, batch size of offline.classify_stream): rejected lines alone in a
# chunk, first, last, between chunks of CDRs; every line gives one output line, in order
_JSON = b'{"From": "+14155550100", "Body": "call me"}'
_CASES = {
    "mixed": ([LINE, _JSON, LINE, b"a,b,c", LINE], 256),
    "rejected only": ([_JSON, b"x", _JSON], 256),
    "rejected chunks between": ([LINE, LINE, _JSON, _JSON, b"y", b"z", LINE, _JSON], 2),
    "rejected first and last chunk": ([_JSON, _JSON, LINE, LINE, _JSON], 2),
    "cdrs only": ([LINE, LINE, LINE], 2),
}


@pytest.mark.parametrize("name", list(_CASES))
def test_classify_stream_dead_letters_lines_not_in_the_declared_format(name, monkeypatch):
    import base64

    from pipeline import offline

    lines, batch = _CASES[name]
    monkeypatch.setattr(offline, "BATCH", batch)
    out = io.BytesIO()
    counts = offline.classify_stream(io.BytesIO(b"\n".join(lines) + b"\n"), out, processor=_processor(),
                                     fmt="asterisk-csv")
    got = [json.loads(x) for x in out.getvalue().splitlines()]
    assert len(got) == len(lines) == counts["lines"]
    for n, (line, rec) in enumerate(zip(lines, got)):
        if line == LINE:
            assert rec["event_type"] == "call" and rec["fields"]["/src"]["category"] == "usage"
        else:
            assert rec["error"]["kind"] == "not_asterisk_cdr"
            assert base64.b64decode(rec["raw_base64"]) == line  # the original bytes
            assert rec["source"]["offset"] == n
    assert counts.get("deadletters", 0) == sum(line != LINE for line in lines)


def test_classify_stream_reads_a_bom_before_the_first_json_line():
    from pipeline.offline import classify_stream

    out = io.BytesIO()
    data = BOM + b'{"sid": "CA1", "from": "+14155550100", "to": "+14155550101", "duration": 3}\n'
    counts = classify_stream(io.BytesIO(data), out, processor=_processor(), fmt="auto")
    assert counts == {"lines": 1, "envelopes": 1, "fields.usage": 4}
    assert json.loads(out.getvalue())["event_type"] == "call"


def test_anonymise_gives_an_error_line_for_a_rejected_line():
    from pipeline.offline_anonymise import anonymise_stream

    out = io.BytesIO()
    counts = anonymise_stream(io.BytesIO(LINE + b"\n" + _JSON + b"\n"), out, processor=_processor(),
                              fmt="asterisk-csv")
    first, second = (json.loads(x) for x in out.getvalue().splitlines())
    assert counts["anonymised"] == 1 and counts["errors"] == 1
    assert "not_asterisk_cdr" in json.dumps(second) and "4155550100" not in json.dumps(second)
    assert first["event_type"] == "call"
