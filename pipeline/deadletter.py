"""Dead-letter records (DESIGN.md, "Records"): reason, source coordinates and original bytes."""

from __future__ import annotations

import base64
import hashlib

from pipeline.records import SourceRecord

#: Room kept for the dead-letter JSON around the base64 bytes (bytes).
_OVERHEAD = 4096


def build_deadletter(source: SourceRecord, kind: str, message: str, *, max_bytes: int | None = None) -> dict:
    """The dead-letter record for ``source``.

    Shape: ``{"envelope_version": 1, "error": {"kind", "message"}, "source": {"topic",
    "partition", "offset", "key_base64", "timestamp"}, "raw_base64", "raw_size",
    "raw_sha256"}``. When the base64 of the raw bytes would push the record over
    ``max_bytes`` (the producer's ``max_request_size``), ``raw_base64`` is ``null`` and
    ``raw_omitted`` is ``true``: size, sha256 and the source coordinates still point at the
    original. ``message`` must not quote record content (callers pass positions and types).
    """
    raw = source.value or b""
    encoded_len = 4 * ((len(raw) + 2) // 3)
    omit = max_bytes is not None and encoded_len + _OVERHEAD > max_bytes
    return {
        "envelope_version": 1,
        "error": {"kind": kind, "message": message},
        "source": {
            "topic": source.topic,
            "partition": source.partition,
            "offset": source.offset,
            "key_base64": None if source.key is None else base64.b64encode(source.key).decode("ascii"),
            "timestamp": source.timestamp_ms,
        },
        "raw_base64": None if omit else base64.b64encode(raw).decode("ascii"),
        "raw_omitted": omit,
        "raw_size": len(raw),
        "raw_sha256": hashlib.sha256(raw).hexdigest(),
    }


def raw_bytes(deadletter: dict) -> bytes | None:
    """The original bytes of a dead-letter record, or ``None`` when they were omitted."""
    data = deadletter.get("raw_base64")
    return None if data is None else base64.b64decode(data)
