"""Record bytes <-> JSON values, with the traps of orjson handled (PITFALLS.md).

Decoding: UTF-8 (strict), then orjson on the fast path. We fall back to the standard
library's exact parser when orjson cannot be trusted or refuses valid JSON:
- a run of 19+ digits (integers beyond 64 bits, and negative 19-digit integers below the
  int64 minimum: orjson would turn them into floats). Only that digit run is looked for
  before parsing: an exponent of three digits or more (``1e400``) makes orjson fail, and the
  failure then takes the exact path (so hex ids such as ``"SMa1e970..."`` no longer send a
  record to the slow parser);
- an escaped lone surrogate (``"\\ud83d"``): orjson rejects it, the JSON grammar allows it.
Duplicate keys: the last value wins (orjson and the standard library agree), so the
result is deterministic. Nesting deeper than ``max_depth`` is refused (``too_deep``).

Encoding: orjson on the fast path; integers beyond 64 bits and lone surrogates fall back
to the standard library with ``ensure_ascii=True`` so the output stays valid UTF-8 JSON
and keeps every digit and escape exactly.
"""

from __future__ import annotations

import json
import re
import sys

import orjson

from pipeline.errors import DecodeError

#: Default maximum nesting depth of objects and arrays.
MAX_DEPTH = 512

_LONG_DIGITS = re.compile(rb"\d{20,}|[eE][+]?\d{3,}")
#: What orjson would parse differently from the standard library (checked before parsing):
#: a run of 19 digits, found as ``b"0" * 19`` in the bytes with every digit mapped to ``0``
#: and everything else to ``.`` (a C-speed scan; a regular expression costs ten times more).
_DIGIT_MAP = bytes(0x30 if 0x30 <= i <= 0x39 else 0x2E for i in range(256))
_DIGIT_RUN = b"0" * 19


def _inexact(raw: bytes) -> bool:
    return _DIGIT_RUN in raw.translate(_DIGIT_MAP)


#: :func:`decode_object`'s one scan for both pre-parse checks: digits map to ``0`` (a run of
#: 19 is :func:`_inexact`'s test) and both opening brackets to ``[`` (their count bounds the
#: nesting depth), everything else to ``.``.
_SCAN_MAP = bytes(0x30 if 0x30 <= i <= 0x39 else 0x5B if i in (0x5B, 0x7B) else 0x2E for i in range(256))
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def decode_object(raw: bytes | bytearray | memoryview | None, *, max_depth: int = MAX_DEPTH) -> dict:
    """Decode one Kafka value into a JSON object.

    Raises :class:`DecodeError` with kind ``empty``, ``invalid_utf8``, ``invalid_json``,
    ``too_deep`` or ``not_object``; messages give positions and types only, never content.
    """
    if raw is None:
        raise DecodeError("empty", "the value is null (tombstone)")
    if raw.__class__ is not bytes:
        raw = bytes(raw)
    if not raw or raw.isspace():
        raise DecodeError("empty", f"the value is empty ({len(raw)} bytes)")
    if not raw.isascii():  # ASCII is valid UTF-8 (a C-speed scan, no string built)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("invalid_utf8", f"invalid UTF-8 at byte {exc.start}") from None
    scan = raw.translate(_SCAN_MAP)  # one pass for the two checks below (see _SCAN_MAP)
    # the bracket count bounds the depth: only a value with many brackets is walked (and a
    # value of at most max_depth bytes cannot have more)
    if len(raw) > max_depth and scan.count(b"[") > max_depth and _max_depth(raw, max_depth) > max_depth:
        raise DecodeError("too_deep", f"nesting deeper than {max_depth} levels")
    if _DIGIT_RUN in scan:
        value = _loads(raw, inexact=True)
    else:
        try:  # _loads's first step, inlined: most values
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = _loads(raw, inexact=False)
    if not isinstance(value, dict):
        raise DecodeError("not_object", f"a JSON {_type_name(value)}, not an object")
    return value


def _loads(raw: bytes, *, inexact: bool | None = None):
    """Parse ``raw``: orjson unless it would read a number differently (``inexact``:
    :func:`_inexact`, worked out here when not given), the standard library otherwise and
    for what orjson refuses that the standard library may still read exactly."""
    if not (_inexact(raw) if inexact is None else inexact):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if not (_LONG_DIGITS.search(raw) or _SURROGATE_ESCAPE.search(raw)):
                raise DecodeError("invalid_json", _position(exc)) from None
    try:
        return json.loads(raw.decode("utf-8"), parse_float=_finite_float, parse_constant=_no_constant)
    except _NotJsonConstant:  # orjson's path calls these invalid JSON too: same kind either way
        raise DecodeError("invalid_json", "NaN or Infinity: not JSON (RFC 8259 has no such literal)") from None
    except _NonFinite:
        raise DecodeError("number_out_of_range",
                          "a number is outside the double range: not valid I-JSON") from None
    except json.JSONDecodeError as exc:
        raise DecodeError("invalid_json", f"invalid JSON at line {exc.lineno} column {exc.colno}") from None
    except ValueError:  # an integer longer than sys.get_int_max_str_digits() (4,300 by default)
        raise DecodeError("number_out_of_range",
                          f"an integer has more than {sys.get_int_max_str_digits():,} digits") from None
    except RecursionError:
        raise DecodeError("too_deep", "nesting too deep for the parser") from None


class _NonFinite(ValueError):
    pass


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NonFinite
    return value


class _NotJsonConstant(ValueError):
    pass


def _no_constant(_name: str):
    """``parse_constant`` of the standard library's parser: ``NaN``, ``Infinity`` and
    ``-Infinity`` are not JSON (it accepts them by default)."""
    raise _NotJsonConstant


def _position(exc: orjson.JSONDecodeError) -> str:
    line, col = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    if line is not None:
        return f"invalid JSON at line {line} column {col}"
    return "invalid JSON"


def _max_depth(raw: bytes, limit: int) -> int:
    """Cheap upper bound of bracket nesting, ignoring brackets inside strings; stops at limit+1."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return 0
    depth = best = 0
    in_str = esc = False
    for b in raw:
        if in_str:
            if esc:
                esc = False
            elif b == 0x5C:
                esc = True
            elif b == 0x22:
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > best:
                best = depth
                if best > limit:
                    return best
        elif b in (0x5D, 0x7D):
            depth -= 1
    return best


def _type_name(value) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def encode(value) -> bytes:
    """JSON bytes of ``value`` (UTF-8); exact for big integers and lone surrogates."""
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=str).encode("ascii")
