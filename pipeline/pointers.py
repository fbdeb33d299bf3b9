"""JSON Pointers (RFC 6901): walking a record's leaves, name normalisation, glob matching.

Field names are matched after normalising case style (snake, camel, Pascal, kebab) and
array indices (issue 5): ``/MediaUrl0`` and ``/media/0/url`` normalise to
``media_url`` and ``media/#/url``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

_CAMEL_1 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL_2 = re.compile(r"([a-z0-9])([A-Z])")
_NON_WORD = re.compile(r"[^0-9a-zA-Z]+")
# An index of one or two digits after a letter (MediaUrl0, media_url_12, card_last4); not
# sha256, nor a short word with its digits (ipv4, md5, mp3).
_TRAILING_INDEX = re.compile(r"(?<=[a-z])_?\d{1,2}$")
_SHORT_WORD = re.compile(r"^[a-z]{1,3}\d{1,2}$")


def escape(segment: str) -> str:
    """RFC 6901 escaping of one reference token (``~`` -> ``~0``, ``/`` -> ``~1``)."""
    return segment.replace("~", "~0").replace("/", "~1")


def unescape(segment: str) -> str:
    """Inverse of :func:`escape`."""
    return segment.replace("~1", "/").replace("~0", "~")


def split(pointer: str) -> list[str]:
    """``"/a/b~1c"`` -> ``["a", "b/c"]``; ``""`` -> ``[]``."""
    if not pointer:
        return []
    return [unescape(s) for s in pointer[1:].split("/")]


def join(segments: list[str] | tuple[str, ...]) -> str:
    """Inverse of :func:`split`."""
    return "".join("/" + escape(str(s)) for s in segments)


@lru_cache(maxsize=65536)
def normalise_name(name: str) -> str:
    """Normalise a key's case style: ``MessageSid``, ``messageSid``, ``message-sid`` ->
    ``message_sid``; a trailing index of one or two digits is dropped (``MediaUrl0`` ->
    ``media_url``; ``sha256``, ``ipv4`` stay);
    an all-digit segment (array index) -> ``#``."""
    if name.isdigit():
        return "#"
    s = _CAMEL_1.sub(r"\1_\2", name)
    s = _CAMEL_2.sub(r"\1_\2", s)
    s = _NON_WORD.sub("_", s).strip("_").lower()
    if not _SHORT_WORD.match(s):
        s = _TRAILING_INDEX.sub("", s)
    return s or "_"


def walk_leaves(record, prefix: str = "") -> Iterator[tuple[str, tuple[str, ...], object]]:
    """Yield ``(pointer, normalised_segments, value)`` for every leaf of a JSON value.

    Leaves are strings, numbers, booleans, nulls and empty containers. Iterative (no
    recursion limit), depth-first in document order.
    """
    stack: list[tuple[object, str, tuple[str, ...]]] = [(record, prefix, ())]
    while stack:
        value, ptr, norm = stack.pop()
        if isinstance(value, dict) and value:
            items = list(value.items())
            for key, child in reversed(items):
                key = str(key)
                stack.append((child, ptr + "/" + escape(key), norm + (normalise_name(key),)))
        elif isinstance(value, list) and value:
            for i in range(len(value) - 1, -1, -1):
                stack.append((value[i], f"{ptr}/{i}", norm + ("#",)))
        else:
            yield ptr, norm, value


def compile_glob(pattern: str) -> tuple[str, ...]:
    """A pointer glob -> normalised segments. ``*`` is one segment, ``**`` zero or more,
    ``#`` one array index (``/media/#/url``); other segments are normalised like field names, so ``/MediaUrl*`` is not needed:
    ``/media_url`` already matches ``/MediaUrl0``."""
    if not pattern.startswith("/"):
        raise ValueError("a field pattern is a JSON Pointer glob starting with '/'")
    out = []
    for seg in split(pattern):
        out.append(seg if seg in ("*", "**", "#") else normalise_name(seg))
    return tuple(out)


def glob_match(pattern: tuple[str, ...], segments: tuple[str, ...]) -> bool:
    """Whether normalised ``segments`` match a compiled glob (iterative, no backtracking blowup)."""
    # Classic two-pointer wildcard match over segments with '**' as the star.
    p = s = 0
    star_p = star_s = -1
    np, ns = len(pattern), len(segments)
    while s < ns:
        if p < np and pattern[p] == "**":
            star_p, star_s = p, s
            p += 1
        elif p < np and (pattern[p] == "*" or pattern[p] == segments[s]):
            p += 1
            s += 1
        elif star_p >= 0:
            p = star_p + 1
            star_s += 1
            s = star_s
        else:
            return False
    while p < np and pattern[p] == "**":
        p += 1
    return p == np


_DATA_LIKE = re.compile(r"[0-9@+]|^[A-Za-z0-9_-]{20,}$")


@lru_cache(maxsize=65536)
def mask_pointer(pointer: str) -> str:
    """Mask data-like segments of a pointer for logs and summaries: keys can themselves be
    phone numbers or emails. Any segment with a digit, ``@`` or ``+`` (array indices
    included), or a long token, becomes ``*``: ``/tags/+14155550100/note`` -> ``/tags/*/note``."""
    return join([("*" if _DATA_LIKE.search(seg) else seg) for seg in split(pointer)])


def subset(record, pointers):
    """The record restricted to ``pointers`` (a nested subset of the original).

    ``pointers`` should be in document order (as the envelope's ``fields`` are): kept array
    elements then stay in order; their indices shift when earlier elements are dropped (the
    envelope's ``fields`` keep the original pointers). Pointers that do not resolve are
    ignored. Returns ``{}`` when nothing is kept. Cost: the lengths of the kept paths, not
    the size of the record.
    """
    out: dict = {}
    positions: dict[int, dict[int, int]] = {}  # id(output list) -> {source index: output index}
    for ptr in pointers:
        segs = split_cached(ptr)
        if not segs:
            continue
        src, dst = record, out
        last = len(segs) - 1
        try:
            for i, seg in enumerate(segs):
                if isinstance(src, dict):
                    child = src[seg]
                    if i == last:
                        dst[seg] = child
                        break
                    nxt = dst.get(seg)
                    if nxt is None:
                        nxt = dst[seg] = {} if isinstance(child, dict) else []
                else:
                    idx = int(seg)
                    child = src[idx]
                    where = positions.setdefault(id(dst), {})
                    pos = where.get(idx)
                    if i == last:
                        if pos is None:
                            where[idx] = len(dst)
                            dst.append(child)
                        break
                    if pos is None:
                        nxt = {} if isinstance(child, dict) else []
                        where[idx] = len(dst)
                        dst.append(nxt)
                    else:
                        nxt = dst[pos]
                src, dst = child, nxt
        except (KeyError, IndexError, ValueError, TypeError):
            continue
    return out


@lru_cache(maxsize=65536)
def split_cached(pointer: str) -> tuple[str, ...]:
    """:func:`split` as a tuple, kept for the most recent 65,536 pointers: the pointers of a
    stream's envelopes come back with every record of a shape (bounded: a pointer can hold
    data, ``/tags/+14155550123``)."""
    return tuple(split(pointer))


def replace(record: dict, ptrs: list[str], fn) -> dict:
    """A copy of ``record`` with the values at ``ptrs`` replaced by ``fn(value)``; only the
    containers on the paths are copied."""
    root = dict(record)
    for ptr in ptrs:
        segs = split_cached(ptr)
        node = root
        for i, seg in enumerate(segs):
            last = i == len(segs) - 1
            if isinstance(node, list):
                idx = int(seg)
                if last:
                    node[idx] = fn(node[idx])
                else:
                    child = node[idx]
                    node[idx] = child = dict(child) if isinstance(child, dict) else list(child)
                    node = child
            else:
                if last:
                    node[seg] = fn(node[seg])
                else:
                    child = node[seg]
                    node[seg] = child = dict(child) if isinstance(child, dict) else list(child)
                    node = child
    return root
