"""Input adapters (issue 5): one input line -> the JSON bytes of one event.

Formats: ``json`` (a JSON object per line, passed through untouched), ``cloudevents``
(structured-mode CloudEvents JSON, passed through: the classifier recognises them),
``asterisk-csv`` (an Asterisk ``Master.csv`` CDR line -> a call event with named fields),
``auto`` (a line starting with ``{`` is JSON, a CSV line with Asterisk's column count, a
``start`` timestamp and integer ``duration``/``billsec`` is a CDR, anything else is passed
through as JSON and dead-lettered if it is not). A UTF-8 byte-order mark is tolerated.
"""

from __future__ import annotations

import csv
import io
import re

from pipeline.codec import encode

FORMATS = ("auto", "json", "cloudevents", "asterisk-csv")

#: Asterisk cdr_csv column order (Master.csv); newer versions append the last three.
ASTERISK_COLUMNS = (
    "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
    "lastdata", "start", "answer", "end", "duration", "billsec", "disposition", "amaflags",
    "uniqueid", "userfield", "peeraccount", "linkedid", "sequence",
)


def adapt_line(line: bytes, fmt: str = "auto") -> tuple[bytes, str | None]:
    """``(value bytes, family hint or None)`` for one input line (without its newline).

    Raises ``ValueError`` for an unknown ``fmt``. Never raises for bad content: bad bytes
    are returned as they are, to be dead-lettered by the processor with a reason.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt in ("json", "cloudevents"):
        return line, None
    if fmt == "asterisk-csv":
        return asterisk_csv_to_json(line), "call"
    stripped = line.lstrip()
    if stripped.startswith(b"{") or not stripped:
        return line, None
    converted = _try_asterisk(line)
    return (converted, "call") if converted is not None else (line, None)


_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def _try_asterisk(line: bytes, strict: bool = True) -> bytes | None:
    """The CDR as JSON, or ``None`` when the line is not one. A CDR has 16 columns
    (``loguniqueid``/``loguserfield`` off) to 21, a ``start`` timestamp
    (``YYYY-MM-DD HH:MM:SS``) and integer ``duration`` and ``billsec``; ``strict`` (auto
    detection) requires all three, the explicit format only the column count."""
    try:
        text = line.decode("utf-8-sig")
        row = next(csv.reader(io.StringIO(text)))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        return None
    if not 16 <= len(row) <= len(ASTERISK_COLUMNS):
        return None
    if strict and not (_STAMP.match(row[9]) and row[12].isdigit() and row[13].isdigit()):
        return None
    return encode(dict(zip(ASTERISK_COLUMNS, row)))


def asterisk_csv_to_json(line: bytes) -> bytes:
    """An Asterisk CDR CSV line -> JSON bytes of ``{column: value}``; a line that is not a
    CDR is returned unchanged (and dead-lettered downstream)."""
    converted = _try_asterisk(line, strict=False)
    return converted if converted is not None else line
