"""Offline commands' logic: ``classify`` over JSON Lines (no Kafka)."""

from __future__ import annotations

from collections import Counter
from typing import BinaryIO

from pipeline.adapters import adapt_line
from pipeline.codec import encode
from pipeline.records import ProcessResult, SourceRecord

BATCH = 256


def iter_lines(infile: BinaryIO):
    """Lines of a binary stream without their line ending (``\\n`` or ``\\r\\n``)."""
    for raw in infile:
        if raw.endswith(b"\n"):
            raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
        yield raw


def classify_chunk(processor, records: list[SourceRecord], hints: list[str | None],
                   event_type: str) -> list[ProcessResult]:
    """Process records whose family is ``event_type`` unless it is ``auto``, in which case an
    adapter's hint (``call`` for an Asterisk CDR) or inference decides. Same order out."""
    out: list[ProcessResult | None] = [None] * len(records)
    groups: dict[str, list[int]] = {}
    for i, hint in enumerate(hints):
        fam = event_type if event_type != "auto" else (hint or "auto")
        groups.setdefault(fam, []).append(i)
    for fam, idx in groups.items():
        for i, res in zip(idx, processor.process_batch([records[i] for i in idx], event_type=fam)):
            out[i] = res
    return out  # type: ignore[return-value]


def result_line(res: ProcessResult) -> bytes:
    """The output line of a result: its envelope, else its dead-letter record."""
    if res.envelope is not None:
        return encode(res.envelope)
    return res.outputs[0].value if res.outputs else b"{}"


def classify_stream(infile: BinaryIO, outfile: BinaryIO, *, processor, event_type: str = "auto",
                    fmt: str = "auto", source_name: str = "-") -> dict:
    """Classify JSON Lines from ``infile`` into ``outfile``: one envelope or dead-letter record
    per input line, same order. Returns counts: ``lines``, ``envelopes``, ``deadletters``
    and ``fields.<category>``."""
    counts: Counter = Counter()
    records: list[SourceRecord] = []
    hints: list[str | None] = []

    def flush() -> None:
        for res in classify_chunk(processor, records, hints, event_type):
            outfile.write(result_line(res) + b"\n")
            if res.envelope is not None:
                counts["envelopes"] += 1
                for f in res.envelope["fields"].values():
                    counts[f"fields.{f['category']}"] += 1
            else:
                counts["deadletters"] += 1
        records.clear()
        hints.clear()

    for n, line in enumerate(iter_lines(infile)):
        value, hint = adapt_line(line, fmt)
        records.append(SourceRecord(source_name, None, n, None, value))
        hints.append(hint)
        counts["lines"] += 1
        if len(records) >= BATCH:
            flush()
    if records:
        flush()
    outfile.flush()
    return dict(counts)
