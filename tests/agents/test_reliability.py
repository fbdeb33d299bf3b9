"""At-least-once through crashes, restarts and failures on the embedded broker (issue 9).

* ``kill -9`` of the only worker in the middle of a few thousand events, three times, each
  time restarted: every input reaches its output topic (messages and calls
  ``privacy.anonymise.v1``, account events ``privacy.retention.account.v1`` or
  ``privacy.deletions.v1``, undecodable ones ``privacy.deadletter.v1``); duplicates are
  counted on the ``event-id`` header. Slow records (200 KB bodies) are mixed with fast ones,
  and the group's committed offsets are sampled all along: no committed offset ever passes
  a record whose outputs had not been produced by then.
* A record whose processing raises in the middle of a ``take_events`` batch is dead-lettered;
  the rest of its batch and later batches go through and the worker keeps running.
* SIGTERM with a slow batch in flight: the worker drains it, commits and exits within a
  bound; a restart with an empty data directory produces no duplicate, and the
  ``deleted-accounts`` GlobalTable is rebuilt from its changelog.
* Two workers, one killed: ``test_failover.py``.

The module prints one summary line: crash cycles, events, lost, duplicates.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import orjson
import pytest

from agents.runner import (
    InputEvent,
    WorkerProcess,
    _topic_specs,
    produce_events,
    sample_inputs,
)
from agents.topics import topic_names
from pipeline.processing import Processor
from pipeline.settings import Settings
from tests.agents.faulty_worker import POISON

pytestmark = pytest.mark.broker

N_EVENTS = 2000
CYCLES = 3
N_SLOW = 4
SLOW_BODY = 200_000
SESSION_S = 6
#: SIGTERM to exit, with a batch holding a 200 KB record in flight (about 5 s of work here).
STOP_BOUND_S = 45.0

SUMMARY: dict[str, object] = {}


@pytest.fixture(scope="module", autouse=True)
def _summary_line(request):
    yield
    line = ("reliability: crash cycles {cycles}, events {events}, lost {lost}, duplicates {duplicates}"
            " ({dup_pct}), slow records {slow}, commit samples {commit_samples}, "
            "commits past an unfinished record {bad_commits}; sigterm exit {stop_s} s, "
            "duplicates after clean restart {clean_dups}").format_map(defaultdict(lambda: "-", SUMMARY))
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print("\n" + line, flush=True)
    else:  # pragma: no cover
        print(line)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _settings(broker, tag: str, batch: int = 32) -> tuple[Settings, dict[str, str]]:
    settings = Settings(kafka_broker=broker.bootstrap, topic_prefix=f"rel{tag}.", app_id=f"rel-{tag}",
                        session_timeout_s=SESSION_S, heartbeat_interval_s=1, batch_size=batch)
    env = {"PRIVACY_PIPELINE_TOPIC_PREFIX": settings.topic_prefix,
           "PRIVACY_PIPELINE_APP_ID": settings.app_id,
           "PRIVACY_PIPELINE_SESSION_TIMEOUT_S": str(SESSION_S),
           "PRIVACY_PIPELINE_HEARTBEAT_INTERVAL_S": "1",
           "PRIVACY_PIPELINE_BATCH_SIZE": str(batch)}
    return settings, env


class FaultyWorker(WorkerProcess):
    """The production app around a processor that raises for :data:`POISON` records."""

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "tests.agents.faulty_worker", "--web-port", str(self.web_port)]


def _message_like(events: list[InputEvent], names, n: int, body: str, tag: str) -> list[InputEvent]:
    """``n`` message events shaped like the sample's, with ``body`` and fresh ids."""
    base = next(e for e in events if e.topic == names.messages and b'"Body"' in (e.value or b""))
    out = []
    for i in range(n):
        doc = json.loads(base.value)
        sid = "MM" + uuid.uuid5(uuid.NAMESPACE_OID, f"{tag}{i}").hex
        for k in ("MessageSid", "SmsSid", "SmsMessageSid"):
            if k in doc:
                doc[k] = sid
        doc["Body"] = body
        out.append(InputEvent(names.messages, base.key, json.dumps(doc).encode(), sid, base.account_id))
    return out


def _slow_body() -> str:
    words = ("Call me at the office tomorrow, Maria from Lisbon will bring the documents to "
             "12 Rue Verte, or text +1 212 555 0178. ")
    return (words * (SLOW_BODY // len(words) + 1))[:SLOW_BODY]


def _spread(events: list[InputEvent], extra: list[InputEvent], start: int = 40) -> list[InputEvent]:
    """``events`` with ``extra`` inserted at even intervals (the first after ``start``)."""
    out = list(events)
    step = max(1, (len(out) - start) // max(1, len(extra)))
    for i, ev in enumerate(extra):
        out.insert(start + i * (step + 1), ev)
    return out


@dataclass
class Out:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    event_id: str | None
    ts_ms: int
    source: tuple[str, int, int] | None
    kind: str | None
    doc: dict | None


class Reader:
    """Every partition of the output topics from the beginning (manual assignment), keeping
    each record's ``event-id``, producer timestamp and source coordinates."""

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        from kafka import KafkaConsumer, TopicPartition

        from agents.topics import consumer_config

        self.consumer = KafkaConsumer(**consumer_config(settings, max_poll_records=2000, fetch_max_wait_ms=200))
        tps = []
        for t in topics:
            deadline = time.monotonic() + 30
            while not (parts := self.consumer.partitions_for_topic(t)):
                assert time.monotonic() < deadline, f"no partitions for {t}"
                time.sleep(0.2)
            tps += [TopicPartition(t, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.records: dict[str, list[Out]] = defaultdict(list)

    def poll(self, timeout_ms: int = 300) -> int:
        n = 0
        for tp, msgs in self.consumer.poll(timeout_ms=timeout_ms).items():
            for m in msgs:
                n += 1
                headers = {k: (v or b"") for k, v in (m.headers or [])}
                eid = headers.get("event-id", b"").decode() or None
                doc, src = None, None
                if m.value:
                    try:
                        doc = orjson.loads(m.value)
                        s = doc.get("source")
                        if isinstance(s, dict) and s.get("offset") is not None:
                            src = (s["topic"], int(s["partition"]), int(s["offset"]))
                    except Exception:
                        pass
                kind = (doc or {}).get("error", {}).get("kind") if tp.topic.endswith("deadletter.v1") else None
                self.records[tp.topic].append(Out(tp.topic, tp.partition, m.offset, m.key, eid,
                                                  m.timestamp, src, kind, doc))
        return n

    def drain(self, quiet_s: float = 1.5) -> None:
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            if self.poll(300):
                last = time.monotonic()

    def close(self) -> None:
        self.consumer.close()


@dataclass
class Accounting:
    lost: list = field(default_factory=list)
    duplicates: int = 0
    first_ts: dict = field(default_factory=dict)  # input coord -> earliest output timestamp (ms)


def account(names, reader: Reader, events: list[InputEvent], coords: list) -> Accounting:
    """Where every input landed: messages/calls in ``anonymise``, account events in account
    retention or deletions, bad records (and failures) in the dead-letter topic.

    Duplicates: outputs beyond one per input on those topics (by source coordinates when the
    output carries them, else by ``event-id`` beyond the number of inputs with that id).
    """
    acc = Accounting()
    dead = defaultdict(list)
    for o in reader.records[names.deadletter]:
        if o.source:
            dead[o.source].append(o.ts_ms)
    by_src: dict = defaultdict(list)
    by_id: dict = defaultdict(list)
    for topic in (names.anonymise, names.retention_account, names.deletions):
        for o in reader.records[topic]:
            if topic == names.retention_account and o.doc is None:
                continue  # the tombstone that follows a deletion
            if o.source:
                by_src[(topic, o.source)].append(o.ts_ms)
            elif o.event_id:
                by_id[(topic, o.event_id)].append(o.ts_ms)
    deletion_keys: dict = defaultdict(list)  # tombstones on the accounts topic -> deletion events
    for o in reader.records[names.deletions]:
        if o.key is not None:
            deletion_keys[o.key].append(o.ts_ms)
    expected_ids = Counter()
    for c, ev in zip(coords, events):
        topics = ([names.anonymise] if ev.topic in (names.messages, names.calls)
                  else [names.retention_account, names.deletions])
        stamps = list(dead.get(c, []))
        if ev.value is None and ev.topic == names.accounts:
            stamps += deletion_keys.get(ev.key, [])
        elif not ev.bad:
            for t in topics:
                got = by_src.get((t, c))
                if got:
                    stamps += got
                elif ev.event_id:
                    expected_ids[(t, ev.event_id)] += 1
                    stamps += by_id.get((t, ev.event_id), [])
        if ev.value is None and ev.topic != names.accounts:
            continue  # tombstones elsewhere are skipped by design
        if not stamps:
            acc.lost.append((c, ev.event_id))
        else:
            acc.first_ts[c] = min(stamps)
    dups = sum(len(v) - 1 for v in by_src.values() if len(v) > 1)
    dups += sum(len(v) - 1 for v in dead.values() if len(v) > 1)
    dups += sum(max(0, len(v) - expected_ids.get(k, 1)) for k, v in by_id.items())
    acc.duplicates = dups
    return acc


class CommitSampler(threading.Thread):
    """Reads the group's committed offsets every ``every`` seconds: ``(wall ms, {(topic,
    partition): offset})`` whenever they change."""

    def __init__(self, settings: Settings, topics: set[str], every: float = 0.2) -> None:
        super().__init__(daemon=True)
        from kafka import KafkaAdminClient

        from agents.topics import admin_config

        self.admin = KafkaAdminClient(**admin_config(settings))
        self.group, self.topics, self.every = settings.app_id, topics, every
        self.samples: list[tuple[int, dict]] = []
        self.errors = 0
        self._halt = threading.Event()

    def run(self) -> None:
        last = None
        while not self._halt.is_set():
            try:
                offs = self.admin.list_group_offsets(self.group).get(self.group, {})
                now = int(time.time() * 1000)
                cur = {(tp.topic, tp.partition): om.offset for tp, om in offs.items()
                       if tp.topic in self.topics and om.offset is not None and om.offset >= 0}
                if cur != last:
                    self.samples.append((now, cur))
                    last = cur
            except Exception:
                self.errors += 1
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
        self.admin.close()


def commits_past_unfinished(sampler: CommitSampler, acc: Accounting, coords: list) -> list:
    """Committed offsets that were past a record with no output produced before the sample."""
    by_tp = defaultdict(list)
    for c in coords:
        by_tp[(c[0], c[1])].append(c)
    bad = []
    for now, offs in sampler.samples:
        for tp, committed in offs.items():
            for c in by_tp.get(tp, ()):
                if c[2] < committed and not (acc.first_ts.get(c, 1 << 62) <= now + 5):
                    bad.append((now, tp, committed, c))
    return bad


def _wait(pred, timeout: float, reader: Reader, workers=(), what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        reader.poll(300)
        for w in workers:
            assert w.alive(), f"worker died:\n{w.log_tail(40)}"


def _outs(settings) -> list[str]:
    names = topic_names(settings)
    return [s.name for s in _topic_specs(settings, Processor) if s.name not in names.input_families()]


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_agent_concurrency_is_one():
    """PITFALLS (faust-streaming #606): with concurrency > 1 the consumer can commit past a
    record still being processed. Concurrency is not offered; both agents run one instance."""
    from agents.app import create_app
    from pipeline.policy import load_policy

    settings = Settings(kafka_broker="127.0.0.1:9", topic_prefix="conc.")
    app = create_app(settings, Processor(load_policy(None), settings, None))
    agents = {a.name: a.concurrency for a in app.agents.values()}
    assert len(agents) >= 2 and set(agents.values()) == {1}, agents
    app.executor.shutdown(wait=False)


def test_kill9_cycles_lose_nothing_and_never_commit_past_unfinished(broker, tmp_path):
    tag = uuid.uuid4().hex[:8]
    settings, env = _settings(broker, tag)
    names = topic_names(settings)
    base = sample_inputs(settings, N_EVENTS, seed=23, bad=6)
    slow = _message_like(base, names, N_SLOW, _slow_body(), f"slow{tag}")
    events = _spread(base, slow, start=200)
    worker = WorkerProcess(broker.bootstrap, workdir=tmp_path / "w0", env=env)
    (tmp_path / "w0").mkdir()
    reader = sampler = None
    kills = []
    try:
        worker.start()
        worker.wait_ready(timeout=120)
        reader = Reader(settings, _outs(settings))
        sampler = CommitSampler(settings, set(names.input_families()))
        sampler.start()
        coords = produce_events(settings, events)
        total = len(events)

        def done_inputs() -> int:
            return len(account(names, reader, events, coords).first_ts)

        for cycle in range(1, CYCLES + 1):
            target = total * cycle // (CYCLES + 1)
            _wait(lambda target=target: done_inputs() >= target, 240, reader, [worker], f"{target} inputs")
            worker.proc.kill()  # SIGKILL: no commit, no leave-group
            worker.proc.wait(10)
            kills.append(done_inputs())
            worker.stop()
            wd = tmp_path / f"w{cycle}"
            wd.mkdir()
            worker = WorkerProcess(broker.bootstrap, workdir=wd, env=env).start()
        _wait(lambda: not account(names, reader, events, coords).lost, 300, reader, [worker],
              "every input to reach its output topic")
        _wait(lambda: {o.event_id for o in reader.records[names.anonymise]}
              <= ({o.event_id for o in reader.records[names.anonymised]}
                  | {o.event_id for o in reader.records[names.deadletter]}),
              180, reader, [worker], "every anonymise message to be anonymised")
        time.sleep(2)  # a last commit interval, then the final sample
        reader.drain()
        sampler.stop()
        acc = account(names, reader, events, coords)
        bad_commits = commits_past_unfinished(sampler, acc, coords)
        slow_sids = {e.event_id for e in slow}
        SUMMARY.update(cycles=CYCLES, events=total, lost=len(acc.lost), duplicates=acc.duplicates,
                       dup_pct=f"{100 * acc.duplicates / total:.1f}%", slow=N_SLOW,
                       commit_samples=len(sampler.samples), bad_commits=len(bad_commits))
        print(f"kills after {kills} inputs done; {len(sampler.samples)} commit samples "
              f"({sampler.errors} errors)")
        assert len(kills) == CYCLES
        assert not acc.lost, f"{len(acc.lost)} inputs lost, e.g. {acc.lost[:5]}"
        assert slow_sids <= {o.event_id for o in reader.records[names.anonymise]}
        assert len(sampler.samples) >= 5, f"too few commit samples ({sampler.errors} errors)"
        assert not bad_commits, f"{len(bad_commits)} commits past unfinished records, e.g. {bad_commits[:3]}"
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        if reader is not None:
            reader.close()
        worker.stop()


def test_a_record_raising_mid_batch_is_dead_lettered_and_the_rest_goes_on(broker, tmp_path):
    tag = uuid.uuid4().hex[:8]
    settings, env = _settings(broker, tag, batch=32)
    names = topic_names(settings)
    base = sample_inputs(settings, 300, seed=31, bad=0)
    poison = _message_like(base, names, 3, "hello " + POISON.decode(), f"poison{tag}")
    events = _spread(base, poison, start=50)
    later = sample_inputs(settings, 60, seed=32, bad=0)
    worker = FaultyWorker(broker.bootstrap, workdir=tmp_path, env=env)
    reader = None
    try:
        worker.start()
        worker.wait_ready(timeout=120)
        reader = Reader(settings, _outs(settings))
        coords = produce_events(settings, events)
        _wait(lambda: not account(names, reader, events, coords).lost, 180, reader, [worker],
              "the first stream")
        coords2 = produce_events(settings, later)  # the agent is still consuming afterwards
        _wait(lambda: not account(names, reader, later, coords2).lost, 120, reader, [worker],
              "a later stream")
        dead = {o.source: o for o in reader.records[names.deadletter]}
        poison_coords = [c for c, e in zip(coords, events) if e in poison]
        for c in poison_coords:
            assert c in dead and dead[c].kind == "processing_error", c
            assert POISON.decode() not in json.dumps(dead[c].doc["error"])  # no record content
        # the poison's batch mates (same partition, nearby offsets) were classified normally
        anon_src = {o.source for o in reader.records[names.anonymise]}
        mates = [c for c, e in zip(coords, events)
                 if e.topic in (names.messages, names.calls) and e not in poison
                 and any(c[:2] == p[:2] and 0 < abs(c[2] - p[2]) <= 8 for p in poison_coords)]
        assert mates and all(c in anon_src for c in mates)
        assert not any(c in dead for c in mates)
        assert worker.alive()
        assert "retrying one by one" in worker.log_path.read_text(errors="replace")
    finally:
        if reader is not None:
            reader.close()
        worker.stop()


def test_sigterm_drains_commits_and_restart_rebuilds_table(broker, tmp_path):
    tag = uuid.uuid4().hex[:8]
    settings, env = _settings(broker, tag, batch=16)
    names = topic_names(settings)
    base = sample_inputs(settings, 500, seed=41, bad=2)
    gone = "AC" + uuid.uuid5(uuid.NAMESPACE_OID, f"gone{tag}").hex
    deletion = InputEvent(names.accounts, gone.encode(), None, account_id=gone, deletes_account=True)
    slow = _message_like(base, names, 4, _slow_body(), f"slow{tag}")
    events = [deletion, *_spread(base, slow, start=30)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = WorkerProcess(broker.bootstrap, workdir=tmp_path / "a", env=env)
    second = WorkerProcess(broker.bootstrap, workdir=tmp_path / "b", env=env)
    reader = None
    try:
        first.start()
        first.wait_ready(timeout=120)
        reader = Reader(settings, _outs(settings))
        coords = produce_events(settings, events)
        _wait(lambda: any(o.key == gone.encode() for o in reader.records[names.deletions])
              and len(account(names, reader, events, coords).first_ts) >= 60,
              120, reader, [first], "the deletion and some outputs")
        log_before = first.log_path.stat().st_size
        t0 = time.monotonic()
        first.proc.send_signal(signal.SIGTERM)
        code = first.proc.wait(STOP_BOUND_S + 30)
        stop_s = time.monotonic() - t0
        SUMMARY["stop_s"] = f"{stop_s:.1f}"
        tail = first.log_path.read_bytes()[log_before:].decode(errors="replace")
        assert stop_s <= STOP_BOUND_S, f"SIGTERM took {stop_s:.1f} s\n{tail[-3000:]}"
        assert code == 0, tail[-3000:]
        first.stop()
        reader.drain()
        done_at_stop = len(account(names, reader, events, coords).first_ts)
        assert done_at_stop < len(events), "the stream finished before SIGTERM: nothing in flight"

        # Restart with an empty data directory: the table comes back from its changelog.
        second.start()
        second.wait_ready(timeout=120)
        _wait(lambda: not account(names, reader, events, coords).lost, 240, reader, [second],
              "every input after the restart")
        reader.drain()
        acc = account(names, reader, events, coords)
        SUMMARY["clean_dups"] = acc.duplicates
        assert acc.duplicates == 0, f"{acc.duplicates} duplicates after a clean stop and restart"

        probe = _message_like(base, names, 2, "see you at noon", f"probe{tag}")
        probe[0] = InputEvent(probe[0].topic, gone.encode(),
                              probe[0].value.replace(probe[0].key or b"-", gone.encode()),
                              probe[0].event_id, gone)
        pc = produce_events(settings, probe)
        _wait(lambda: not account(names, reader, probe, pc).lost, 120, reader, [second], "the probes")
        reader.drain()
        retained = {o.event_id for c in ("content", "usage")
                    for o in reader.records[names.retention(c)]}
        assert probe[1].event_id in retained  # a live account's message is retained ...
        assert probe[0].event_id not in retained, "the deleted account was forgotten after the restart"
    finally:
        if reader is not None:
            reader.close()
        first.stop()
        second.stop()
