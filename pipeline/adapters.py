"""Input adapters (issue 5): one input line -> the JSON bytes of one event.

Formats: ``json`` (a JSON object per line, passed through untouched), ``cloudevents``
(structured-mode CloudEvents JSON, passed through: the classifier recognises them),
``asterisk-csv`` (an Asterisk ``Master.csv`` CDR line -> a call event with named fields),
``auto`` (a line starting with ``{`` is JSON, a CSV line with Asterisk's column count is a
CDR, anything else is passed through as JSON and dead-lettered if it is not).
"""

from __future__ import annotations

import csv
import io

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


def _try_asterisk(line: bytes) -> bytes | None:
    try:
        row = next(csv.reader(io.StringIO(line.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        return None
    if 17 <= len(row) <= len(ASTERISK_COLUMNS):
        return encode(dict(zip(ASTERISK_COLUMNS, row)))
    return None


def asterisk_csv_to_json(line: bytes) -> bytes:
    """An Asterisk CDR CSV line -> JSON bytes of ``{column: value}``; a line that is not a
    CDR is returned unchanged (and dead-lettered downstream)."""
    converted = _try_asterisk(line)
    return converted if converted is not None else line
