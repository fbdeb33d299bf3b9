"""Operations commands: ``privacy-pipeline replay`` and ``privacy-pipeline backfill``.

* :func:`replay` sends dead letters from ``privacy.deadletter.v1`` back to their input topic
  (``source.topic``) after a fix: the original key (``source.key_base64``) and bytes
  (``raw_base64``), plus a ``replay-attempt`` header. The worker carries that header into the
  dead letter of a record that fails again (``pipeline.processing``), so the count survives
  and a poison record stops at ``max_attempts`` instead of looping. Dead letters whose raw
  bytes were omitted (``raw_omitted``), whose source is not an input topic, or that are over
  the attempt limit are reported, never replayed. Consumer group ``<app_id>-replay``.
* :func:`backfill` re-classifies the input topics' history from a timestamp under a (new)
  policy with a consumer group of its own (``<app_id>-backfill-<policy version>``); outputs
  carry the new version (``privacy-policy`` header, ``policy_version``) and go to the normal
  output topics or to prefixed copies (``topic_prefix``). It anonymises in process (it never
  writes ``privacy.anonymise.v1``, which only the worker reads) and withholds the retention
  routes of accounts deleted so far (keys of ``privacy.deletions.v1`` plus deletions met on the
  way).

Both read with manual partition assignment and commit offsets for their group without
joining it (no rebalance wait). Where a run ends: at the end offsets captured at start, but
Tansu (the test broker) reports end offsets and ``offsets_for_times`` per record batch, not
per record, so a partition counts as finished only when a record stamped at or after the
run's end time is met (``to``, default: the moment the run started) or when the topic stays
idle for ``idle_s`` with every position at or past the captured end offsets. Records before
``since``/``from`` are skipped by their timestamp, whatever offset the broker started at.

Nothing here logs or prints record content: reports name coordinates, reasons and sizes.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from agents.topics import consumer_config, producer_config, topic_names
from pipeline.errors import ConfigError, PipelineError
from pipeline.logsafety import cap_text_logging_libraries
from pipeline.records import OutputMessage, SourceRecord
from pipeline.settings import Settings

log = logging.getLogger(__name__)

__all__ = [
    "BACKFILL_HEADER",
    "REPLAY_ATTEMPT_HEADER",
    "BackfillReport",
    "OpsError",
    "ReplayDecision",
    "ReplayReport",
    "backfill",
    "backfill_group",
    "decide_replay",
    "parse_timestamp",
    "replay",
    "replay_group",
]

#: Header counting how often a record was replayed (carried into new dead letters by the worker).
REPLAY_ATTEMPT_HEADER = "replay-attempt"
#: Header naming the dead letter a replayed record came from (``topic/partition/offset``).
REPLAY_DEADLETTER_HEADER = "replay-deadletter"
#: Header on every backfill output: the backfill's consumer group.
BACKFILL_HEADER = "privacy-backfill"

Coord = tuple[str, int, int]


class OpsError(PipelineError):
    """An operations command cannot go on (topic missing, broker unreachable); says what to do."""


def replay_group(settings: Settings) -> str:
    """``<app_id>-replay`` (``privacy-pipeline-replay`` by default; the ACLs name it)."""
    return f"{settings.app_id}-replay"


def backfill_group(settings: Settings, policy_version: str) -> str:
    """``<app_id>-backfill-<policy version>`` (ACL prefix ``privacy-pipeline-backfill``)."""
    return f"{settings.app_id}-backfill-{policy_version}"


# --------------------------------------------------------------------------------------------
# Timestamps
# --------------------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_timestamp(text: str, *, now: datetime | None = None) -> int:
    """Milliseconds since the epoch from ISO 8601 (``2026-11-30``, ``2026-11-30T17:00:00Z``,
    an offset such as ``+01:00``; no zone means UTC), epoch seconds or milliseconds
    (``1764522000`` / ``1764522000000``), or a time ago (``90m``, ``24h``, ``7d``).

    Raises :class:`ConfigError` saying which forms are accepted.
    """
    s = text.strip()
    now = now or datetime.now(UTC)
    m = _RELATIVE.match(s.lower())
    if m:
        return int((now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])).timestamp() * 1000)
    if s.isdigit():
        n = int(s)
        return n if n >= 100_000_000_000 else n * 1000  # 12+ digits: already milliseconds
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"cannot read the timestamp {text!r}: use ISO 8601 (2026-11-30 or 2026-11-30T17:00:00Z), "
            "epoch seconds or milliseconds, or a time ago such as 90m, 24h or 7d"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def format_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# Bounded reading with manual assignment
# --------------------------------------------------------------------------------------------


@dataclass
class _Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None
    headers: tuple[tuple[str, bytes], ...]


class _BoundedReader:
    """Reads ``topics`` from per-partition start offsets up to the run's end (see the module
    docstring), committing offsets for ``group`` without joining it."""

    def __init__(self, settings: Settings, topics: Sequence[str], *, group: str | None,
                 since_ms: int | None = None, until_ms: int | None = None,
                 from_offset: int | None = None, resume: bool = True, idle_s: float = 3.0,
                 batch_size: int = 500) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError

        self.since_ms = since_ms
        self.until_ms = until_ms
        self.idle_s = idle_s
        try:
            self.consumer = KafkaConsumer(**consumer_config(
                settings, group_id=group, max_poll_records=batch_size, fetch_max_wait_ms=200,
                max_partition_fetch_bytes=max(1_048_576, settings.producer_max_request_size * 2)))
        except KafkaError as exc:
            raise OpsError(f"cannot reach the Kafka cluster at {settings.kafka_broker}: "
                           f"{type(exc).__name__}; check PRIVACY_PIPELINE_KAFKA_BROKER and the "
                           "security settings") from None
        self.group = group
        tps = []
        for t in topics:
            parts = self.consumer.partitions_for_topic(t)
            if not parts:
                self.consumer.close()
                raise OpsError(f"topic {t} does not exist on {settings.kafka_broker} (or this "
                               "principal may not describe it): check the topic names and ACLs, or "
                               "create the topics with `privacy-pipeline topics --apply`")
            tps.extend(TopicPartition(t, p) for p in sorted(parts))
        self.tps = tps
        self.consumer.assign(tps)
        self.end = self.consumer.end_offsets(tps)
        begin = self.consumer.beginning_offsets(tps)
        start: dict = {}
        if from_offset is not None:
            start = {tp: max(from_offset, begin[tp]) for tp in tps}
        elif since_ms is not None:
            found = self.consumer.offsets_for_times({tp: since_ms for tp in tps})
            start = {tp: (found[tp].offset if found.get(tp) is not None else self.end[tp]) for tp in tps}
        else:
            start = dict(begin)
        if resume and group and from_offset is None:
            for tp in tps:
                committed = self.consumer.committed(tp)
                if committed is not None and committed > start[tp]:
                    start[tp] = committed
        self.start = start
        for tp in tps:
            self.consumer.seek(tp, start[tp])
        self.done: set = set()
        #: next offset to commit per partition (after the last handled record)
        self.handled: dict = {}
        self.skipped_before = 0

    @property
    def estimate(self) -> int:
        """Records between start and the captured end offsets (low on Tansu)."""
        return sum(max(0, self.end[tp] - self.start[tp]) for tp in self.tps)

    def batches(self) -> Iterable[list[_Message]]:
        """Batches of messages in the window, each partition in offset order."""
        idle_since = time.monotonic()
        while len(self.done) < len(self.tps):
            polled = self.consumer.poll(timeout_ms=500)
            batch: list[_Message] = []
            for tp, msgs in polled.items():
                if tp in self.done:
                    continue
                for m in msgs:
                    ts = m.timestamp if m.timestamp is not None and m.timestamp >= 0 else None
                    if self.until_ms is not None and ts is not None and ts >= self.until_ms:
                        self.done.add(tp)  # later records belong to the next run
                        self.consumer.pause(tp)
                        break
                    if self.since_ms is not None and ts is not None and ts < self.since_ms:
                        self.skipped_before += 1
                        self.handled[tp] = m.offset + 1
                        continue
                    batch.append(_Message(tp.topic, tp.partition, m.offset, m.key, m.value, ts,
                                          tuple((k, v or b"") for k, v in (m.headers or []))))
            if polled:
                idle_since = time.monotonic()
            if batch:
                yield batch
            elif (not polled and time.monotonic() - idle_since >= self.idle_s
                  and all(self.consumer.position(tp) >= self.end[tp] for tp in self.tps if tp not in self.done)):
                break

    def mark(self, messages: Iterable[_Message]) -> None:
        from kafka import TopicPartition

        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            self.handled[tp] = max(self.handled.get(tp, 0), m.offset + 1)

    def commit(self) -> None:
        """Commit the handled offsets for the group (nothing without a group)."""
        if not self.group or not self.handled:
            return
        from kafka.structs import OffsetAndMetadata

        try:
            self.consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in self.handled.items()})
        except Exception as exc:  # the work is done; the next run redoes at most this batch
            log.warning("committing offsets for group %s failed: %s", self.group, type(exc).__name__)

    def close(self) -> None:
        self.consumer.close()


def _producer(settings: Settings):
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    try:
        return KafkaProducer(**producer_config(settings))
    except KafkaError as exc:
        raise OpsError(f"cannot reach the Kafka cluster at {settings.kafka_broker}: "
                       f"{type(exc).__name__}; check PRIVACY_PIPELINE_KAFKA_BROKER and the "
                       "security settings") from None


def _deliver(futures: list[tuple[object, object]], failed: list) -> int:
    """Await deliveries; returns how many succeeded, appends ``(tag, exception name)`` to failed."""
    ok = 0
    for tag, fut in futures:
        try:
            fut.get(timeout=60)
            ok += 1
        except Exception as exc:
            failed.append((tag, type(exc).__name__))
    futures.clear()
    return ok


# --------------------------------------------------------------------------------------------
# replay
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayDecision:
    """What to do with one dead letter: ``action`` is ``replay`` or a skip reason
    (``filtered``, ``raw_omitted``, ``max_attempts``, ``not_input_topic``, ``unreadable``)."""

    action: str
    kind: str | None = None
    topic: str | None = None
    key: bytes | None = None
    value: bytes | None = None
    attempt: int = 0
    source: Coord | None = None
    detail: str = ""


def _attempts(headers: Sequence[tuple[str, bytes]]) -> int | None:
    """The ``replay-attempt`` count in ``headers`` (0 when absent; ``None`` when unreadable)."""
    for k, v in headers:
        if k == REPLAY_ATTEMPT_HEADER:
            try:
                return max(0, int(v.decode("ascii")))
            except (UnicodeDecodeError, ValueError):
                return None
    return 0


def decide_replay(value: bytes | None, headers: Sequence[tuple[str, bytes]], *,
                  input_topics: Container[str], max_attempts: int,
                  reasons: Sequence[str] = ()) -> ReplayDecision:
    """Decide about one dead-letter record (pure; tested without a broker)."""
    try:
        doc = orjson.loads(value or b"")
        kind = str(doc["error"]["kind"])
        src = doc["source"]
        topic = src.get("topic")
        coord = (str(topic), int(src.get("partition") or 0), int(src.get("offset") or 0)) \
            if src.get("offset") is not None else None
    except Exception:
        return ReplayDecision("unreadable", detail="not a dead-letter record")
    if reasons and kind not in reasons:
        return ReplayDecision("filtered", kind, topic, source=coord)
    if topic not in input_topics:
        return ReplayDecision("not_input_topic", kind, topic, source=coord,
                              detail=f"source topic {topic} is not an input topic")
    if doc.get("raw_omitted") or doc.get("raw_base64") is None:
        return ReplayDecision("raw_omitted", kind, topic, source=coord,
                              detail=f"raw bytes omitted ({doc.get('raw_size')} bytes, sha256 "
                              f"{str(doc.get('raw_sha256'))[:16]}…): re-send from the source system")
    done = _attempts(headers)
    if done is None:
        return ReplayDecision("max_attempts", kind, topic, source=coord,
                              detail=f"unreadable {REPLAY_ATTEMPT_HEADER} header")
    if done + 1 > max_attempts:
        return ReplayDecision("max_attempts", kind, topic, attempt=done, source=coord,
                              detail=f"already replayed {done} time(s), limit {max_attempts}")
    try:
        raw = base64.b64decode(doc["raw_base64"], validate=True)
        key_b64 = src.get("key_base64")
        key = None if key_b64 is None else base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return ReplayDecision("unreadable", kind, topic, source=coord, detail="bad base64")
    return ReplayDecision("replay", kind, topic, key, raw, done + 1, coord)


@dataclass
class ReplayReport:
    """What a replay run did; ``skipped`` lists ``(dead-letter coordinates, decision)``."""

    group: str
    dry_run: bool
    read: int = 0
    replayed: int = 0
    counts: Counter = field(default_factory=Counter)
    by_topic: Counter = field(default_factory=Counter)
    skipped: list[tuple[Coord, ReplayDecision]] = field(default_factory=list)
    failed: list[tuple[Coord, str]] = field(default_factory=list)
    skipped_before_since: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def replay(settings: Settings, *, from_offset: int | None = None, since_ms: int | None = None,
           dry_run: bool = False, reasons: Sequence[str] = (), max_attempts: int = 3,
           idle_s: float = 3.0, until_ms: int | None = None,
           on_progress: Callable[[int, int], None] | None = None) -> ReplayReport:
    """Replay dead letters to their input topics (see the module docstring).

    Starts at ``from_offset`` (every partition), else the first dead letter at or after
    ``since_ms``, else the group's committed offset, else the beginning. ``dry_run`` decides
    and reports without producing or committing; a run filtered by ``reasons`` produces but
    does not move the group's offsets (the other dead letters stay for a later run). ``on_progress(done, estimate)`` is called
    per batch.
    """
    if max_attempts < 1:
        raise ConfigError("--max-attempts must be at least 1")
    cap_text_logging_libraries()  # the Kafka clients log record values at DEBUG
    names = topic_names(settings)
    group = replay_group(settings)
    report = ReplayReport(group=group, dry_run=dry_run)
    until_ms = until_ms if until_ms is not None else int(time.time() * 1000)
    reader = _BoundedReader(settings, [names.deadletter], group=group,
                            since_ms=since_ms, until_ms=until_ms, from_offset=from_offset,
                            idle_s=idle_s)
    if dry_run:  # the group's position still decides where a dry run starts
        reader.group = None
    producer = None if dry_run else _producer(settings)
    inputs = set(names.input_families())
    try:
        for batch in reader.batches():
            futures: list = []
            for m in batch:
                report.read += 1
                d = decide_replay(m.value, m.headers, input_topics=inputs, max_attempts=max_attempts,
                                  reasons=reasons)
                report.counts[d.action] += 1
                here = (m.topic, m.partition, m.offset)
                if d.action != "replay":
                    if d.action != "filtered":
                        report.skipped.append((here, d))
                    continue
                report.by_topic[d.topic] += 1
                if producer is not None:
                    headers = [(REPLAY_ATTEMPT_HEADER, str(d.attempt).encode()),
                               (REPLAY_DEADLETTER_HEADER, f"{m.topic}/{m.partition}/{m.offset}".encode())]
                    futures.append((here, producer.send(d.topic, key=d.key, value=d.value, headers=headers)))
            if producer is not None:
                producer.flush()
                report.replayed += _deliver(futures, report.failed)
                if not report.failed and not reasons:  # never commit past a record that did not go out
                    reader.mark(batch)
                    reader.commit()
            if on_progress:
                on_progress(report.read, max(reader.estimate, report.read))
        if producer is not None and not report.failed and not reasons:
            reader.commit()  # also past records skipped by --since
    finally:
        report.skipped_before_since = reader.skipped_before
        reader.close()
        if producer is not None:
            producer.close(timeout=10)
    return report


# --------------------------------------------------------------------------------------------
# backfill
# --------------------------------------------------------------------------------------------


@dataclass
class BackfillReport:
    group: str
    policy_version: str
    from_ms: int
    to_ms: int
    topic_prefix: str = ""
    read: int = 0
    outcomes: Counter = field(default_factory=Counter)
    produced: Counter = field(default_factory=Counter)
    failed: list[tuple[Coord, str]] = field(default_factory=list)
    deleted_accounts: int = 0
    skipped_before_from: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def _output_names(settings: Settings, topic_prefix: str):
    """The settings' topic names with ``topic_prefix`` put before every output (not inputs)."""
    from pipeline.topics import TopicNames

    base = topic_names(settings)
    if not topic_prefix:
        return base
    # inputs are read, not written; the key topic is shared: shredding must reach every copy
    shared = {"messages", "calls", "accounts", "keys"}
    return TopicNames(**{k: (v if k in shared else topic_prefix + v) for k, v in base.model_dump().items()})


def _deleted_accounts(settings: Settings, idle_s: float) -> set[str]:
    """Account ids in ``privacy.deletions.v1`` (keys), read from the beginning until idle."""
    names = topic_names(settings)
    reader = _BoundedReader(settings, [names.deletions], group=None, idle_s=idle_s, resume=False,
                            until_ms=int(time.time() * 1000))
    out: set[str] = set()
    try:
        for batch in reader.batches():
            out.update(m.key.decode("utf-8", "replace") for m in batch if m.key)
    finally:
        reader.close()
    return out


def _key_ring(settings: Settings, idle_s: float):
    """The data keys in the key topic (``privacy.keys.v1``), read from the beginning until
    idle: retained content written by the backfill is sealed like the worker's (issue 7)."""
    from pipeline.shredding import KeyRing

    ring = KeyRing.from_settings(settings)
    names = topic_names(settings)
    reader = _BoundedReader(settings, [names.keys], group=None, idle_s=idle_s, resume=False,
                            until_ms=int(time.time() * 1000))
    try:
        for batch in reader.batches():
            for m in batch:
                if m.key:
                    ring.apply(m.key, m.value)
    finally:
        reader.close()
    return ring


def _ensure_outputs(settings: Settings, specs) -> None:
    """Create missing prefixed output topics with the policy's configs (no config changes)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    from agents.topics import admin_config

    admin = KafkaAdminClient(**admin_config(settings))
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(s.name, s.partitions, settings.replication_factor, topic_configs=dict(s.config))
               for s in specs if s.name not in existing]
        if new:
            try:
                admin.create_topics(new, raise_errors=False)
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:
                raise OpsError(f"creating {', '.join(t.name for t in new)} failed: {type(exc).__name__}; "
                               "the backfill principal needs Create on its topic prefix") from None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not {t.name for t in new} <= set(admin.list_topics()):
                time.sleep(0.2)
    finally:
        admin.close()


def backfill(settings: Settings, *, from_ms: int, to_ms: int | None = None, policy: Path | None = None,
             topic_prefix: str = "", batch_size: int = 256, idle_s: float = 5.0, processor=None,
             on_progress: Callable[[int, int], None] | None = None,
             status: Callable[[str], None] = lambda msg: None) -> BackfillReport:
    """Re-classify the input topics from ``from_ms`` (to ``to_ms``, default now) under
    ``policy`` (default: the settings' policy); see the module docstring."""
    from pipeline.processing import Processor

    cap_text_logging_libraries()
    t0 = time.monotonic()
    now_ms = int(time.time() * 1000)
    to_ms = min(to_ms, now_ms) if to_ms is not None else now_ms
    if from_ms >= to_ms:
        raise ConfigError(f"--from ({format_ms(from_ms)}) must be before --to ({format_ms(to_ms)}) "
                          "and before now")
    out_names = _output_names(settings, topic_prefix)
    run_settings = settings.model_copy(update={"topics": out_names, "topic_prefix": "",
                                               "policy": policy or settings.policy})
    if processor is None:
        status("loading the policy and the detector")
        processor = Processor.from_settings(run_settings)
    version = str(processor.policy.version)
    group = backfill_group(settings, version)
    report = BackfillReport(group=group, policy_version=version, from_ms=from_ms, to_ms=to_ms,
                            topic_prefix=topic_prefix)
    deletions_spec = processor.policy.transit.get("deletions")
    if deletions_spec and deletions_spec.retention_ms > 0 and from_ms < now_ms - deletions_spec.retention_ms:
        log.warning("--from is older than the retention of %s (%d days): accounts deleted before "
                    "that window are not known to the backfill", topic_names(settings).deletions,
                    deletions_spec.retention_ms // 86_400_000)
    status("reading deleted accounts")
    deleted = _deleted_accounts(settings, idle_s=min(idle_s, 2.0))
    report.deleted_accounts = len(deleted)
    status("reading data keys")
    ring = _key_ring(settings, idle_s=min(idle_s, 2.0))
    inputs = list(out_names.input_families())
    outputs = [s for s in processor.topic_specs() if s.name not in set(inputs) and s.name != out_names.anonymise]
    if topic_prefix:
        _ensure_outputs(settings, outputs)
    reader = _BoundedReader(settings, inputs, group=group, since_ms=from_ms, until_ms=to_ms,
                            idle_s=idle_s, batch_size=batch_size)
    if not topic_prefix:
        missing = [s.name for s in outputs if not reader.consumer.partitions_for_topic(s.name)]
        if missing:
            reader.close()
            raise OpsError(f"output topics missing: {', '.join(missing)}; create them with "
                           "`privacy-pipeline topics --apply` (or start a worker) first")
    producer = _producer(settings)
    extra = ((BACKFILL_HEADER, group.encode()),)
    status(f"consumer group {group}; policy {version}; {len(deleted)} deleted accounts known")
    try:
        for batch in reader.batches():
            records = [SourceRecord(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp, m.headers)
                       for m in batch]
            # consents are not known here: consent-gated purpose routes get nothing (safe side)
            results = processor.process_batch(records, deleted_accounts=frozenset(deleted),
                                              consents={}, data_keys=ring.data_keys)
            futures: list = []
            to_anonymise: list[tuple[Coord, SourceRecord]] = []
            for rec, res in zip(records, results):
                report.read += 1
                report.outcomes[res.outcome] += 1
                if res.outcome == "deletion" and res.account_id:
                    deleted.add(res.account_id)
                here = (rec.topic, rec.partition, rec.offset)
                for out in res.outputs:
                    if out.topic == out_names.keys and out.key:
                        ring.apply(out.key, out.value)  # new or shredded keys, for later batches
                    if out.topic == out_names.anonymise:
                        to_anonymise.append((here, SourceRecord(out.topic, None, None, out.key, out.value,
                                                                rec.timestamp_ms, out.headers)))
                        continue
                    futures.append(((here, out.topic), _send(producer, out, extra)))
            anon = processor.anonymise_batch([r for _, r in to_anonymise]) if to_anonymise else []
            for (here, _), res in zip(to_anonymise, anon):
                for out in res.outputs:
                    futures.append(((here, out.topic), _send(producer, out, extra)))
            producer.flush()
            failed_before = len(report.failed)
            for (here, topic), fut in futures:
                try:
                    fut.get(timeout=60)
                    report.produced[topic] += 1
                except Exception as exc:
                    report.failed.append((here, f"{topic}: {type(exc).__name__}"))
            if len(report.failed) == failed_before and not report.failed:
                reader.mark(batch)
                reader.commit()
            if on_progress:
                on_progress(report.read, max(reader.estimate, report.read))
            if report.failed:
                break  # stop: the committed offset stays before the batch; rerun to go on
        if not report.failed:
            reader.commit()
    finally:
        report.skipped_before_from = reader.skipped_before
        reader.close()
        producer.close(timeout=10)
        report.seconds = time.monotonic() - t0
    return report


def _send(producer, out: OutputMessage, extra: tuple[tuple[str, bytes], ...]):
    headers = [h for h in out.headers if h[0] != BACKFILL_HEADER] + list(extra)
    return producer.send(out.topic, key=out.key, value=out.value, headers=headers)
