"""Cheap value-shape tests for fields no rule or name decides (issue 5, "value detection").

Each test is a precompiled regular expression or a constant-time check; none calls
Presidio. :func:`value_kind` returns the first matching kind in the order the policy's
``value_hints`` documents.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote

_EMAIL = re.compile(r"^(?:mailto:)?[\w.!#$%&'*+=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}$")
_PHONE = re.compile(r"^(?:tel:|whatsapp:|sms:)?\+?\(?\d[\d\s().\-]{5,20}\d$")
_URL = re.compile(r"^(?:https?|ftp|wss?)://\S+$", re.I)
_MEDIA_URL = re.compile(
    r"/(?:media|recordings?|transcriptions?|mms|attachments?|voicemail)/|"
    r"\.(?:jpe?g|png|gif|webp|heic|bmp|mp3|wav|ogg|oga|opus|amr|m4a|aac|mp4|3gpp?|mov|webm|pdf|vcf)(?:\?|$)",
    re.I,
)
_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$|"
    r"^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$|"
    r"^\d{10}(?:\d{3})?$"
)
_MEDIA_FILE = re.compile(
    r"^[^\s:]*[\w-]\.(?:jpe?g|png|gif|webp|heic|bmp|mp3|wav|ogg|oga|opus|amr|m4a|aac|mp4|3gpp?|mov|webm|pdf|vcf)$",
    re.I,
)
_SID = re.compile(r"^([A-Z]{2})[0-9a-fA-F]{32}$")
_HEX_ID = re.compile(r"^(?=[^g-z]*\d)(?:0x)?[0-9a-fA-F]{8,}$|^[0-9a-fA-F]{8,}(?:[-:][0-9a-fA-F]{2,})+$")
_PCT = re.compile(r"%[0-9A-Fa-f]{2}")
_BOOL_WORDS = frozenset({"true", "false"})
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_NUMERIC = re.compile(r"^-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_WORD = re.compile(r"[^\W\d_]{2,}")
#: From the first digit (with a ``+`` just before it) to the last, at least three digits.
_PHONE_SPAN = re.compile(r"\+?[0-9](?:[^0-9]*[0-9]){2,}")


def value_kind(value, min_words: int = 3) -> tuple[str, str | None]:
    """Classify a leaf value's shape.

    Returns ``(kind, sid_prefix)`` where ``kind`` is one of ``email``, ``phone``,
    ``media_url``, ``url``, ``ip``, ``timestamp``, ``sid``, ``number``, ``boolean``,
    ``free_text`` or ``other``; ``sid_prefix`` is the two-letter prefix for ``sid``.
    ``null``, ``""`` and ``"true"``/``"false"`` count as ``boolean``; digit-only strings
    as ``number`` or ``timestamp`` (10 or 13 digits: epoch seconds or milliseconds).
    URL-encoded values are decoded once first. ``media_url`` includes media file paths
    and names (``/var/spool/recordings/x.wav``); ``sid`` includes UUIDs and opaque hex
    ids of 8+ digits (message ids, hashes).
    """
    if value is None or isinstance(value, bool):
        return "boolean", None
    if isinstance(value, (int, float)):
        return "number", None
    if not isinstance(value, str):
        return "other", None
    s = value.strip()
    if not s:
        return "boolean", None
    if len(s) <= 5 and s.lower() in _BOOL_WORDS:
        return "boolean", None
    if "%" in s and _PCT.search(s):  # URL-encoded (FreeSWITCH CDR variables, form bodies)
        decoded = unquote(s)
        if decoded != s:
            return value_kind(decoded, min_words)
    if len(s) <= 320 and "@" in s and _EMAIL.match(s):
        return "email", None
    if _TIMESTAMP.match(s):
        return "timestamp", None
    if _NUMERIC.match(s):
        return "number", None
    if (":" in s or "." in s) and len(s) <= 45 and " " not in s and _is_ip(s):
        return "ip", None
    if len(s) <= 40 and _PHONE.match(s):
        digits = sum(c.isdigit() for c in s)
        if 7 <= digits <= 15:
            return "phone", None
    if "://" in s and _URL.match(s):
        return ("media_url" if _MEDIA_URL.search(s) else "url"), None
    if len(s) <= 260 and "." in s and " " not in s and _MEDIA_FILE.match(s):
        return "media_url", None  # a media file path or name (a recording, an attachment)
    m = _SID.match(s)
    if m:
        return "sid", m.group(1)
    if _UUID.match(s) or (len(s) <= 130 and _HEX_ID.match(s)):
        return "sid", None
    if (":" in s or "." in s) and len(s) <= 45 and _is_ip(s):
        return "ip", None
    if len(s.split()) >= min_words and len(_WORD.findall(s)) >= min_words:
        return "free_text", None
    return "other", None


def could_be_phone(value: str) -> bool:
    """A cheap necessary condition of ``value_kind(value)[0] == "phone"`` for a string:
    ``False`` means :func:`value_kind` would not call it a phone number."""
    return "%" in value or _PHONE.match(value.strip()) is not None


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def declared_span(entity: str, value) -> tuple[int, int] | None:
    """The span a policy-declared entity covers in a structured value, or ``None`` when the
    value cannot hold that entity (so ``/to/0/status: "queued"`` gets no PHONE_NUMBER).

    PHONE_NUMBER: from the first ``+`` or digit to the last digit, at least 3 digits
    (short codes count); EMAIL_ADDRESS needs ``@``; IP_ADDRESS must parse; URL needs
    ``://``; other types need a letter.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        value = str(value)
        if entity != "PHONE_NUMBER":
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    if entity == "PHONE_NUMBER":
        if value.isascii():  # str.isdigit is [0-9] on ASCII: one regular expression
            m = _PHONE_SPAN.search(value)
            return None if m is None else (m.start(), m.end())
        digits = [i for i, c in enumerate(value) if c.isdigit()]
        if len(digits) < 3:
            return None
        start = digits[0]
        if start > 0 and value[start - 1] == "+":
            start -= 1
        return start, digits[-1] + 1
    if entity == "EMAIL_ADDRESS":
        return (0, len(value)) if "@" in value else None
    if entity == "IP_ADDRESS":
        return (0, len(value)) if _is_ip(value.strip()) else None
    if entity == "URL":
        return (0, len(value)) if "://" in value else None
    if any(c.isalpha() for c in value):
        return 0, len(value)
    return None


#: Entities :func:`declared_span` has a particular test for.
_SPAN_TESTED = frozenset({"PHONE_NUMBER", "EMAIL_ADDRESS", "IP_ADDRESS", "URL"})
_SPAN_FINDERS: dict = {}


def span_finder(entity: str):
    """``fn(value)``, the same as ``declared_span(entity, value)``, with its commonest cases
    decided first (no value; a phone number in an ASCII string; a letter in a string for the
    entities without a test of their own). One function per entity, kept."""
    find = _SPAN_FINDERS.get(entity)
    if find is None:
        find = _SPAN_FINDERS[entity] = _make_span_finder(entity)
    return find


def _make_span_finder(entity: str):
    if entity == "PHONE_NUMBER":
        def find(value, _search=_PHONE_SPAN.search):
            if value.__class__ is str and value.isascii():  # a blank string has no digit
                m = _search(value)
                return None if m is None else m.span()
            return None if value is None else declared_span(entity, value)
    elif entity in _SPAN_TESTED:
        def find(value):
            return None if value is None else declared_span(entity, value)
    else:
        def find(value):
            if value.__class__ is str:  # a blank string has no letter
                return (0, len(value)) if any(map(str.isalpha, value)) else None
            return None if value is None else declared_span(entity, value)
    return find
