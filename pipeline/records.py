"""Boundary value types: a consumed Kafka record in, messages to produce out."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One Kafka record as consumed (or one input line offline).

    ``value`` ``None`` is a tombstone. ``partition``/``offset`` are ``None`` offline.
    ``timestamp_ms`` is the Kafka record timestamp in milliseconds since the epoch.
    """

    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class OutputMessage:
    """One message to produce: full topic name, key, value (``None`` = tombstone), headers."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


def _output_maker():
    new = object.__new__
    set_topic, set_key, set_value, set_headers = (OutputMessage.__dict__[n].__set__
                                                  for n in ("topic", "key", "value", "headers"))

    def output_message(topic: str, key: bytes | None, value: bytes | None, headers: Headers = ()) -> OutputMessage:
        """``OutputMessage(topic, key, value, headers)``, built without the frozen
        dataclass's ``__init__`` (four ``object.__setattr__`` calls): the same object, for the
        router's hot path (several messages per record)."""
        msg = new(OutputMessage)
        set_topic(msg, topic)
        set_key(msg, key)
        set_value(msg, value)
        set_headers(msg, headers)
        return msg

    return output_message


output_message = _output_maker()


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic the worker creates: name, partition count and topic configs (``retention.ms``...)."""

    name: str
    partitions: int
    config: dict[str, str]


@dataclass(slots=True)
class RecordStats:
    """Counts for one processed record, turned into metrics by the serving process.

    ``fields`` counts leaves by ``(category, source)``; ``entities`` by entity type;
    ``unknown_pointers`` lists pointers no rule knew, data-like segments masked;
    ``drift`` counts rules whose usage field carried PII; ``routes`` are output topics.
    Read-only for consumers (the metrics sum them): records of one layout share its
    ``fields`` counter and ``unknown_pointers`` list, and ``entities`` when their entries
    are the layout's shared ones (:data:`pipeline.plans.SHARED_ENTRIES`).
    """

    fields: Counter = field(default_factory=Counter)
    entities: Counter = field(default_factory=Counter)
    unknown_fields: int = 0
    unknown_pointers: list[str] = field(default_factory=list)
    deadletter_reason: str | None = None
    drift: Counter = field(default_factory=Counter)
    routes: list[str] = field(default_factory=list)


#: ``ProcessResult.outcome`` values.
OUTCOMES = ("classified", "deadletter", "tombstone_skipped", "deletion")


@dataclass(slots=True)
class ProcessResult:
    """What processing one :class:`SourceRecord` produced.

    ``outcome`` is one of :data:`OUTCOMES`; ``outputs`` are produced in order;
    ``envelope`` is the full classification envelope (``None`` for dead letters and
    tombstones) for offline commands and tests.
    """

    source: SourceRecord
    outputs: list[OutputMessage]
    outcome: str
    event_type: str | None = None
    event_id: str | None = None
    account_id: str | None = None
    stats: RecordStats = field(default_factory=RecordStats)
    envelope: dict | None = None
    #: the account's consent flags after this record, when it changed them (issue 7)
    consents: dict[str, bool] | None = None
