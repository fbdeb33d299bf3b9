"""Offline commands' logic: ``classify`` over JSON Lines (no Kafka)."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from pipeline.adapters import Rejection, adapt_line
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


def _family_groups(hints: list[str | Rejection | None], event_type: str) -> list[tuple[str, list[int]]]:
    """Indices per family: ``event_type`` unless it is ``auto``, in which case an adapter's
    hint (``call`` for an Asterisk CDR) or inference (``auto``) decides. Lines with a
    :class:`~pipeline.adapters.Rejection` hint are in no group."""
    groups: dict[str, list[int]] = {}
    for i, hint in enumerate(hints):
        if isinstance(hint, Rejection):
            continue
        fam = event_type if event_type != "auto" else (hint or "auto")
        groups.setdefault(fam, []).append(i)
    return list(groups.items())


def _rejected(processor, records: list[SourceRecord], hints: list) -> list[ProcessResult | None]:
    """A result slot per record: the dead letter of each rejected line, ``None`` elsewhere."""
    return [processor.reject(rec, hint.kind, hint.message) if isinstance(hint, Rejection) else None
            for rec, hint in zip(records, hints)]


def classify_chunks(processor, chunks: Iterable[tuple[list[SourceRecord], list[str | Rejection | None]]],
                    event_type: str) -> Iterator[list[ProcessResult]]:
    """Results per ``(records, hints)`` chunk, same order in and out (see
    :func:`classify_chunk`). The chunks go through
    :meth:`~pipeline.processing.Processor.process_batches`, one batch per family present in a
    chunk, so a detector pool overlaps chunk N's detection with chunk N-1's routing and chunk
    N+1's classification; ``chunks`` is read one chunk ahead of the results. A line whose
    hint is a :class:`~pipeline.adapters.Rejection` becomes a dead letter with its kind
    (:meth:`~pipeline.processing.Processor.reject`), in its place."""
    plans: deque[tuple[list[SourceRecord], list, list[tuple[str, list[int]]]]] = deque()

    def batches():
        for records, hints in chunks:
            if not records:
                continue
            groups = _family_groups(hints, event_type)
            plans.append((records, hints, groups))
            for fam, idx in groups:
                yield [records[i] for i in idx], fam

    out: list[ProcessResult | None] = []
    groups: list[tuple[str, list[int]]] = []
    k = 0
    for results in processor.process_batches(batches()):
        if k == 0:
            while not plans[0][2]:  # a chunk of rejected lines only: nothing to wait for
                records, hints, _ = plans.popleft()
                yield _rejected(processor, records, hints)  # type: ignore[misc]
            records, hints, groups = plans.popleft()
            out = _rejected(processor, records, hints)
        for i, res in zip(groups[k][1], results):
            out[i] = res
        k += 1
        if k == len(groups):
            k = 0
            yield out  # type: ignore[misc]
    while plans:
        records, hints, _ = plans.popleft()
        yield _rejected(processor, records, hints)  # type: ignore[misc]


def classify_chunk(processor, records: list[SourceRecord], hints: list[str | Rejection | None],
                   event_type: str) -> list[ProcessResult]:
    """Process records whose family is ``event_type`` unless it is ``auto``, in which case an
    adapter's hint (``call`` for an Asterisk CDR) or inference decides; a
    :class:`~pipeline.adapters.Rejection` hint makes a dead letter. Same order out."""
    return next(classify_chunks(processor, [(records, hints)], event_type), [])


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

    def chunks():
        records: list[SourceRecord] = []
        hints: list[str | Rejection | None] = []
        for n, line in enumerate(iter_lines(infile)):
            value, hint = adapt_line(line, fmt)
            records.append(SourceRecord(source_name, None, n, None, value))
            hints.append(hint)
            counts["lines"] += 1
            if len(records) >= BATCH:
                yield records, hints
                records, hints = [], []
        if records:
            yield records, hints

    for results in classify_chunks(processor, chunks(), event_type):
        for res in results:
            outfile.write(result_line(res) + b"\n")
            if res.envelope is not None:
                counts["envelopes"] += 1
                for f in res.envelope["fields"].values():
                    counts[f"fields.{f['category']}"] += 1
            else:
                counts["deadletters"] += 1
    outfile.flush()
    return dict(counts)
