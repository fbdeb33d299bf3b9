"""Consent flags of accounts (issue 7; policy sections ``consent`` and ``routes.purposes``).

Account events may carry consent flags, e.g. ``{"consents": {"marketing": true,
"voice-insights": "granted"}}``. The worker keeps each account's flags in a Faust GlobalTable
(every worker sees every account) and passes them to :meth:`Processor.process_batch`; an event
sets only the flags it names, so a withdrawal (``{"marketing": false}``) takes effect for the
records processed after it (later in the same batch included). A purpose route requires its flag
to be ``true``: no flag, an unknown account or a withdrawal keeps records off it.

Pure: no Kafka imports; table values are encoded with :func:`encode_state`.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.codec import decode_object, encode
from pipeline.pointers import normalise_name
from pipeline.policy.model import ConsentSpec

__all__ = ["ConsentReader", "ConsentView", "allows", "decode_state", "encode_state", "merge"]


class ConsentReader:
    """Reads consent flags from records per the policy's ``consent`` section."""

    __slots__ = ("_fields", "_granted", "_withdrawn")

    def __init__(self, spec: ConsentSpec | None):
        self._fields = frozenset(spec.fields) if spec else frozenset()
        self._granted = frozenset(spec.granted) if spec else frozenset()
        self._withdrawn = frozenset(spec.withdrawn) if spec else frozenset()

    def flags(self, record: Mapping) -> dict[str, bool]:
        """``{flag: granted}`` for every flag the record sets (top level or CloudEvents
        ``/data``); ``{}`` when it carries none. Flag names are normalised
        (``Marketing`` -> ``marketing``); values that are neither granted nor withdrawn
        words are ignored."""
        if not self._fields:
            return {}
        out: dict[str, bool] = {}
        data = record.get("data")
        for container in (record, data if isinstance(data, Mapping) else None):
            if container is None:
                continue
            for k, v in container.items():
                if isinstance(v, Mapping) and normalise_name(str(k)) in self._fields:
                    for flag, val in v.items():
                        decided = self._decide(val)
                        if decided is not None:
                            out[normalise_name(str(flag))] = decided
        return out

    def _decide(self, value) -> bool | None:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            low = value.strip().lower()
            if low in self._granted:
                return True
            if low in self._withdrawn:
                return False
        if isinstance(value, Mapping):  # {"granted": true, "at": "..."} / {"status": "withdrawn"}
            for key in ("granted", "status", "value", "state"):
                if key in value:
                    return self._decide(value[key])
        return None


def merge(current: Mapping[str, bool] | None, update: Mapping[str, bool]) -> dict[str, bool]:
    """The flags after ``update`` (it sets only the flags it names)."""
    return {**(current or {}), **update}


def allows(flags: Mapping[str, bool] | None, flag: str) -> bool:
    """Whether ``flag`` is granted (``True``); unknown accounts and flags are not."""
    return bool(flags) and flags.get(flag) is True


def encode_state(flags: Mapping[str, bool], *, event_id: str | None, updated_at: str) -> bytes:
    """Table value: ``{"flags": {...}, "event_id": ..., "updated_at": ...}`` (JSON)."""
    return encode({"flags": dict(sorted(flags.items())), "event_id": event_id, "updated_at": updated_at})


def decode_state(value: bytes | None) -> dict[str, bool]:
    """The flags of a table value (``{}`` for ``None`` or a damaged value)."""
    if not value:
        return {}
    try:
        flags = decode_object(value).get("flags") or {}
    except Exception:
        return {}
    return {str(k): v for k, v in flags.items() if isinstance(v, bool)}


class ConsentView(Mapping):
    """Read-only view of a consents table snapshot (account id -> encoded state), decoding
    an account's flags when :meth:`get` asks for them."""

    __slots__ = ("_raw",)

    def __init__(self, raw: Mapping[str, bytes]):
        self._raw = raw

    def __getitem__(self, account_id: str) -> dict[str, bool]:
        return decode_state(self._raw[account_id])

    def __iter__(self):
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)
