"""Input adapters (issue 5): one input line -> the JSON bytes of one event.

Formats: ``json`` (a JSON object per line, passed through), ``cloudevents``
(structured-mode CloudEvents JSON, passed through: the classifier recognises them),
``asterisk-csv`` (an Asterisk ``Master.csv`` CDR line -> a call event with named fields),
``auto`` (a line starting with ``{`` is JSON, a CSV line with Asterisk's column count, a
``start`` timestamp and integer ``duration``/``billsec`` is a CDR, anything else is passed
through as JSON and dead-lettered if it is not). A UTF-8 byte-order mark at the start
of a line is tolerated (RFC 8259 section 8.1 lets a parser ignore it): it is dropped from
a JSON line and ignored in a CSV line.

A line that is not in the format the caller declared (``asterisk-csv`` and the line is no
CDR) comes back with a :class:`Rejection` instead of a family hint: ``classify`` makes it a
dead letter with the rejection's kind, ``produce`` and ``run`` do not send it.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from pipeline.codec import encode

FORMATS = ("auto", "json", "cloudevents", "asterisk-csv")

#: Asterisk cdr_csv column order (Master.csv); newer versions append the last three.
ASTERISK_COLUMNS = (
    "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
    "lastdata", "start", "answer", "end", "duration", "billsec", "disposition", "amaflags",
    "uniqueid", "userfield", "peeraccount", "linkedid", "sequence",
)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an input line is not in the format the caller declared: the dead-letter ``kind``
    and a ``message`` naming the format only (never the line's content)."""

    kind: str
    message: str


#: An ``asterisk-csv`` line that is not a CDR (a JSON line, too few or too many columns,
#: no integer durations).
NOT_A_CDR = Rejection("not_asterisk_cdr", "the line is not an Asterisk CDR (a CSV line of 16 to "
                      f"{len(ASTERISK_COLUMNS)} columns with integer duration and billsec) although "
                      "the format asterisk-csv was declared")

_BOM = b"\xef\xbb\xbf"


def adapt_line(line: bytes, fmt: str = "auto") -> tuple[bytes, str | Rejection | None]:
    """``(value bytes, hint)`` for one input line (without its newline). The hint is a family
    (``"call"`` for an Asterisk CDR), ``None`` (the classifier infers the family) or a
    :class:`Rejection` (the line is not in the declared format: ``value`` is the line as
    read, for the dead letter's raw bytes).

    Raises ``ValueError`` for an unknown ``fmt``. Never raises for bad content: bad bytes
    are returned as they are, to be dead-lettered by the processor with a reason. A leading
    UTF-8 byte-order mark is dropped from a JSON line.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "asterisk-csv":
        converted = None if _looks_like_json(line) else _try_asterisk(line, strict=False)
        return (converted, "call") if converted is not None else (line, NOT_A_CDR)
    if line.startswith(_BOM):
        line = line[len(_BOM):]
    if fmt in ("json", "cloudevents"):
        return line, None
    stripped = line.lstrip()
    if stripped.startswith(b"{") or not stripped:
        return line, None
    converted = _try_asterisk(line)
    return (converted, "call") if converted is not None else (line, None)


def _looks_like_json(line: bytes) -> bool:
    """Whether ``line`` starts (after whitespace and a byte-order mark) like a JSON object or
    array: never a CDR, whose first column is a quoted or bare account code, even when its
    commas give a CDR's column count."""
    head = line.removeprefix(_BOM).lstrip()
    return head.startswith((b"{", b"["))


_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def _try_asterisk(line: bytes, strict: bool = True) -> bytes | None:
    """The CDR as JSON, or ``None`` when the line is not one. A CDR has 16 columns
    (``loguniqueid``/``loguserfield`` off) to 21, a ``start`` timestamp
    (``YYYY-MM-DD HH:MM:SS``) and integer ``duration`` and ``billsec``; ``strict`` (auto
    detection) requires all three, the explicit format the column count and the durations."""
    try:
        text = line.decode("utf-8-sig")
        row = next(csv.reader(io.StringIO(text)))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        return None
    if not 16 <= len(row) <= len(ASTERISK_COLUMNS):
        return None
    # integer duration and billsec: Asterisk always writes them; the explicit format does not
    # require auto detection's start timestamp (some CDR back ends leave it empty)
    if not (row[12].isdigit() and row[13].isdigit()):
        return None
    if strict and not _STAMP.match(row[9]):
        return None
    return encode(dict(zip(ASTERISK_COLUMNS, row)))


def asterisk_csv_to_json(line: bytes) -> bytes:
    """An Asterisk CDR CSV line -> JSON bytes of ``{column: value}``; a line that is not a
    CDR is returned unchanged (:func:`adapt_line` rejects it with :data:`NOT_A_CDR`)."""
    converted = _try_asterisk(line, strict=False)
    return converted if converted is not None else line
