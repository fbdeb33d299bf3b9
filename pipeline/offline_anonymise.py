"""Offline commands' logic: ``anonymise`` and ``deanonymise`` over JSON Lines (no Kafka).

``anonymise``: each input line is a raw event (classified first, like ``classify``, then
given the anonymise route's redaction) or a classification envelope (``privacy.anonymise.v1``
messages, ``classify`` output); one anonymised envelope per line out, same order. A line
that cannot be decoded gives an error record that names the line and the reason, never its
content (unlike a dead letter, it carries no raw bytes: this output is meant to be shared);
so does a line that is itself an error record (a dead letter of ``classify`` or the worker,
whose ``raw_base64`` holds the original bytes, or an error line of ``anonymise``).

``deanonymise``: authorised re-identification. Every ``<TYPE:enc:KEYID:...>`` value (the
``encrypt`` operator, AES-SIV) in each line is replaced by its plaintext; it needs the master
key (``PRIVACY_PIPELINE_MASTER_KEY``, retired ones in ``PRIVACY_PIPELINE_MASTER_OLD_KEYS``).
Pseudonyms are one-way and stay as they are. Lines that are not JSON objects give an error
record, same order.
"""

from __future__ import annotations

from collections import Counter
from typing import BinaryIO

from pipeline.adapters import adapt_line
from pipeline.anonymise import cipher_from_settings
from pipeline.codec import decode_object, encode
from pipeline.errors import DecodeError
from pipeline.offline import classify_chunk, iter_lines
from pipeline.records import SourceRecord

BATCH = 256


def is_envelope(obj: dict) -> bool:
    """Whether a decoded line is a classification envelope rather than a raw event."""
    return (isinstance(obj.get("fields"), dict) and isinstance(obj.get("record"), (dict, list))
            and "envelope_version" in obj and "event_id" in obj)


def is_error_record(obj: dict) -> bool:
    """Whether a decoded line is an error record rather than an event: a dead letter of
    ``classify`` or the worker (``error``, ``raw_base64``/``raw_sha256``: it carries the
    original bytes, which anonymisation cannot see into) or an error line of ``anonymise``
    itself (``error``, ``line``)."""
    error = obj.get("error")
    return (isinstance(error, dict) and "kind" in error and "envelope_version" in obj
            and ("raw_base64" in obj or "raw_sha256" in obj or "line" in obj))


def error_line(n: int, kind: str, message: str) -> bytes:
    """The output line for an input line that could not be processed (no content quoted)."""
    return encode({"envelope_version": 1, "error": {"kind": kind, "message": message}, "line": n + 1})


def anonymise_stream(infile: BinaryIO, outfile: BinaryIO, *, processor, event_type: str = "auto",
                     fmt: str = "auto", source_name: str = "-") -> dict:
    """Anonymise JSON Lines from ``infile`` into ``outfile``, one output line per input line,
    same order. Returns counts: ``lines``, ``envelopes_in``, ``events_in``, ``anonymised``,
    ``errors`` and ``operators.<name>`` (fields an operator was applied to)."""
    counts: Counter = Counter()
    anonymiser, router = processor.anonymiser, processor.router
    redact = "anonymise" in processor.policy.routes.redaction.apply_to
    # per line: [line number, envelope | SourceRecord | error line bytes, adapter hint]
    pending: list[list] = []

    def flush() -> None:
        raw = [p for p in pending if isinstance(p[1], SourceRecord)]
        if raw:
            results = classify_chunk(processor, [p[1] for p in raw], [p[2] for p in raw], event_type)
            for p, res in zip(raw, results):
                if res.envelope is None:
                    kind = res.stats.deadletter_reason or res.outcome
                    p[1] = error_line(p[0], kind, f"line {p[0] + 1} is not an event ({kind})")
                else:
                    p[1] = router.redacted(res.envelope) if redact else res.envelope
        # the chunk's rescans in one detector call; an envelope that fails gives its exception
        envs = [p[1] for p in pending if not isinstance(p[1], bytes)]
        anonymised = iter(anonymiser.anonymise_envelopes(envs))
        for n, item, _ in pending:
            if isinstance(item, bytes):
                counts["errors"] += 1
                outfile.write(item + b"\n")
                continue
            anon = next(anonymised)
            if isinstance(anon, Exception):  # one bad envelope must not stop the file
                counts["errors"] += 1
                if isinstance(anon, DecodeError):  # a malformed envelope: its reason (no content)
                    line = error_line(n, anon.kind, f"line {n + 1}: {anon.message}")
                else:
                    line = error_line(n, "anonymise_error", f"anonymisation failed with {type(anon).__name__}")
                outfile.write(line + b"\n")
                continue
            counts["anonymised"] += 1
            for f in anon["fields"].values():
                for op in f.get("operators", ()):
                    counts[f"operators.{op}"] += 1
            outfile.write(encode(anon) + b"\n")
        pending.clear()

    for n, line in enumerate(iter_lines(infile)):
        counts["lines"] += 1
        value, hint = adapt_line(line, fmt)
        try:
            obj = decode_object(value)
        except DecodeError:
            obj = None
        if obj is not None and is_envelope(obj):
            counts["envelopes_in"] += 1
            pending.append([n, obj, None])
        elif obj is not None and is_error_record(obj):
            # a dead letter's raw bytes (base64) would pass through as an opaque value
            pending.append([n, error_line(n, "error_record", f"line {n + 1} is an error record "
                                          "(a dead letter or an error line), not an event"), None])
        else:
            counts["events_in"] += 1
            pending.append([n, SourceRecord(source_name, None, n, None, value), hint])
        if len(pending) >= BATCH:
            flush()
    if pending:
        flush()
    outfile.flush()
    return dict(counts)


def deanonymise_stream(infile: BinaryIO, outfile: BinaryIO, *, settings) -> dict:
    """Replace every encrypted value in JSON Lines from ``infile`` by its plaintext, into
    ``outfile``, same order. Raises :class:`~pipeline.errors.ConfigError` when no master key
    is set. Returns counts: ``lines``, ``decrypted``, ``unknown_key`` (a key id the settings
    do not hold), ``invalid`` (failed authentication) and ``errors`` (lines not JSON objects)."""
    cipher = cipher_from_settings(settings, required=True)
    counts: Counter = Counter()
    for n, line in enumerate(iter_lines(infile)):
        counts["lines"] += 1
        try:
            obj = decode_object(line)
        except DecodeError as exc:
            counts["errors"] += 1
            outfile.write(error_line(n, exc.kind, exc.message) + b"\n")
            continue
        tally: dict = {}
        out = _map_strings(obj, lambda s, tally=tally: cipher.decrypt_text(s, tally))
        counts.update(tally)
        outfile.write(encode(out) + b"\n")
    outfile.flush()
    return dict(counts)


def _map_strings(value, fn):
    """A copy of a JSON value with ``fn`` applied to every string (keys included: a key can
    itself be an encrypted value)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {fn(k) if isinstance(k, str) else k: _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    return value
