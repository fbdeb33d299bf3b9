"""The Faust app's batch handling, without a broker: errors stay inside the batch."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from agents.app import BatchHandler, BatchOutcome, internal_deadletter, run_batch, source_record
from pipeline.metrics import PipelineMetrics
from pipeline.records import OutputMessage, ProcessResult, RecordStats, SourceRecord

DL = "privacy.deadletter.v1"


def _msg(offset, value=b"{}", key=b"AC1", topic="cpaas.messages.v1", headers=None):
    return SimpleNamespace(topic=topic, partition=0, offset=offset, key=key, value=value,
                           timestamp=1_700_000_000.5, headers=headers or [("trace", b"1")])


def _ok(rec: SourceRecord, **kw) -> ProcessResult:
    out = OutputMessage("privacy.retention.usage.v1", rec.key, rec.value, (("event-id", b"E%d" % rec.offset),))
    return ProcessResult(rec, [out], "classified", "message", f"E{rec.offset}", "AC1",
                         RecordStats(fields=Counter({("usage", "rule"): 2}), entities=Counter({"PHONE_NUMBER": 1}),
                                     routes=[out.topic]))


class Sink:
    """Records sends; ``fail_topics`` fail at delivery, ``refuse_topics`` at scheduling."""

    def __init__(self, fail_topics=(), refuse_topics=()):
        self.sent: list[OutputMessage] = []
        self.fail_topics, self.refuse_topics = set(fail_topics), set(refuse_topics)

    async def __call__(self, out: OutputMessage):
        if out.topic in self.refuse_topics:
            raise RuntimeError("buffer full")
        fut = asyncio.get_running_loop().create_future()
        if out.topic in self.fail_topics:
            fut.set_exception(RuntimeError("delivery failed"))
        else:
            self.sent.append(out)
            fut.set_result(None)
        return fut

    async def many(self, outs):
        """``send_many`` as :class:`agents.produce.BatchSender` gives it: one awaitable per
        message, a message it cannot queue gets a failed one (it never raises)."""
        futs = []
        for out in outs:
            try:
                futs.append(await self(out))
            except RuntimeError as exc:
                fut = asyncio.get_running_loop().create_future()
                fut.set_exception(exc)
                futs.append(fut)
        return futs


@pytest.fixture(autouse=True, params=["per-message", "send_many"])
def send_mode(request):
    """Every handler test runs with ``send`` per message and with ``send_many``."""
    globals()["_SEND_MANY"] = request.param == "send_many"
    yield request.param
    globals()["_SEND_MANY"] = False


_SEND_MANY = False


@pytest.fixture
def executor():
    ex = ThreadPoolExecutor(max_workers=1)
    yield ex
    ex.shutdown()


def _handler(process, sink, executor, **kw):
    if _SEND_MANY and isinstance(sink, Sink):
        kw.setdefault("send_many", sink.many)
    return BatchHandler(name="classify", process=process, send=sink, executor=executor,
                        metrics=PipelineMetrics(), deadletter_topic=DL, max_request_size=1_048_576,
                        policy_version="test-1", **kw)


def test_source_record_keeps_raw_bytes_headers_and_coordinates():
    rec = source_record(_msg(17, value=None, headers=[("h", b"v"), (b"b", None)]))
    assert rec == SourceRecord("cpaas.messages.v1", 0, 17, b"AC1", None, 1_700_000_000_500,
                               (("h", b"v"), ("b", b"")))


def test_results_are_produced_in_order_with_keys_and_headers(executor):
    sink = Sink()
    h = _handler(lambda recs, **kw: [_ok(r) for r in recs], sink, executor, deleted=lambda: frozenset())
    outcome = asyncio.run(h.handle([_msg(i, value=b'{"n":%d}' % i) for i in range(5)]))
    assert outcome.ok
    assert [r.outcome for r in outcome.results] == ["classified"] * 5
    assert [o.value for o in sink.sent] == [b'{"n":%d}' % i for i in range(5)]
    assert sink.sent[0].key == b"AC1" and sink.sent[0].headers == (("event-id", b"E0"),)


def test_process_runs_off_the_event_loop_and_gets_deleted_accounts(executor):
    seen = {}

    def process(recs, *, deleted_accounts):
        import threading

        seen["thread"] = threading.current_thread().name
        seen["deleted"] = deleted_accounts
        return [_ok(r) for r in recs]

    h = _handler(process, Sink(), executor, deleted=lambda: frozenset({"ACgone"}))
    asyncio.run(h.handle([_msg(0)]))
    assert seen["thread"] != "MainThread"
    assert seen["deleted"] == frozenset({"ACgone"})


def test_a_failing_batch_is_retried_per_record_and_only_the_bad_one_is_dead_lettered(executor):
    def process(recs, **kw):
        if any(r.value == b"boom" for r in recs):
            raise ValueError("bug")
        return [_ok(r) for r in recs]

    sink = Sink()
    h = _handler(process, sink, executor)
    outcome = asyncio.run(h.handle([_msg(0), _msg(1, value=b"boom"), _msg(2)]))
    assert outcome.ok
    assert [r.outcome for r in outcome.results] == ["classified", "deadletter", "classified"]
    dead = [o for o in sink.sent if o.topic == DL]
    assert len(dead) == 1
    doc = json.loads(dead[0].value)
    assert doc["error"] == {"kind": "processing_error", "message": "classify: ValueError"}
    assert doc["source"]["offset"] == 1 and base64.b64decode(doc["raw_base64"]) == b"boom"
    # The events after the bad record are produced.
    assert [o.value for o in sink.sent if o.topic != DL] == [b"{}", b"{}"]


def test_delivery_failure_dead_letters_the_source_and_never_raises(executor):
    sink = Sink(fail_topics={"privacy.retention.usage.v1"})
    h = _handler(lambda recs, **kw: [_ok(r) for r in recs], sink, executor)
    outcome = asyncio.run(h.handle([_msg(0), _msg(1)]))
    assert outcome.ok and len(outcome.results) == 2
    kinds = [json.loads(o.value)["error"]["kind"] for o in sink.sent if o.topic == DL]
    assert kinds == ["produce_failed", "produce_failed"]
    assert h.metrics.produce_errors.labels("privacy.retention.usage.v1")._value.get() == 2


def test_scheduling_failure_is_caught_too(executor):
    sink = Sink(refuse_topics={"privacy.retention.usage.v1"})
    h = _handler(lambda recs, **kw: [_ok(r) for r in recs], sink, executor)
    asyncio.run(h.handle([_msg(0)]))
    assert [o.topic for o in sink.sent] == [DL]


def test_handle_never_raises_even_when_metrics_break(executor):
    sink = Sink()
    h = _handler(lambda recs, **kw: [_ok(r) for r in recs], sink, executor)
    h.metrics = None  # observe() raises AttributeError: outputs are out, the batch is fine
    assert asyncio.run(h.handle([_msg(0)])).ok
    assert len(sink.sent) == 1


def test_output_and_dead_letter_both_failing_is_not_ok(executor):
    sink = Sink(fail_topics={"privacy.retention.usage.v1", DL})
    h = _handler(lambda recs, **kw: [_ok(r) for r in recs], sink, executor)
    outcome = asyncio.run(h.handle([_msg(0), _msg(1)]))
    assert outcome.undelivered == 2 and not outcome.ok


def test_unexpected_error_is_not_ok(executor):
    h = _handler(lambda recs, **kw: [_ok(r) for r in recs], Sink(), executor)
    h.produce = None  # calling it raises TypeError
    outcome = asyncio.run(h.handle([_msg(0), _msg(1)]))
    assert not outcome.ok and outcome.undelivered == 2


class _Ev:
    def __init__(self, offset):
        self.message = _msg(offset)
        self.message.acked = False


class _SlowHandler:
    def __init__(self, seconds, ok=True):
        self.seconds, self.ok, self.finished = seconds, ok, False

    async def handle(self, messages):
        await asyncio.sleep(self.seconds)
        self.finished = True
        return BatchOutcome([], 0 if self.ok else 1)


def test_run_batch_acks_a_delivered_batch():
    events = [_Ev(0), _Ev(1)]
    outcome = asyncio.run(run_batch(_SlowHandler(0), events))
    assert outcome.ok and not any(e.message.acked for e in events)


def test_run_batch_withholds_an_undelivered_batch():
    events = [_Ev(0), _Ev(1)]
    asyncio.run(run_batch(_SlowHandler(0, ok=False), events))
    assert all(e.message.acked for e in events)  # Faust will never record their acks


def test_a_stopping_worker_lets_the_batch_finish_before_it_is_acked():
    handler, events = _SlowHandler(0.2), [_Ev(0)]

    async def main():
        task = asyncio.ensure_future(run_batch(handler, events, grace_s=5))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert handler.finished
    assert not events[0].message.acked  # delivered: the ack may proceed


def test_a_batch_that_outlives_the_grace_period_is_withheld():
    handler, events = _SlowHandler(1.0), [_Ev(0)]

    async def main():
        task = asyncio.ensure_future(run_batch(handler, events, grace_s=0.1))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert not handler.finished
    assert events[0].message.acked  # withheld: redelivered after a restart


def test_wrong_number_of_results_falls_back_to_one_by_one(executor):
    calls = []

    def process(recs, **kw):
        calls.append(len(recs))
        return [_ok(r) for r in recs][:1]

    h = _handler(process, Sink(), executor)
    outcome = asyncio.run(h.handle([_msg(0), _msg(1), _msg(2)]))
    assert calls == [3, 1, 1, 1]
    assert len(outcome.results) == 3


def test_deletions_are_recorded_once_per_result(executor):
    recorded = []

    def process(recs, **kw):
        return [ProcessResult(r, [], "deletion", "account", "ACx", "ACx") for r in recs]

    h = _handler(process, Sink(), executor, on_deletion=recorded.append)
    asyncio.run(h.handle([_msg(0, topic="cpaas.accounts.v1", value=None)]))
    assert [r.account_id for r in recorded] == ["ACx"]


def test_internal_deadletter_drops_raw_bytes_over_the_size_limit():
    rec = SourceRecord("cpaas.calls.v1", 2, 9, None, b"x" * 5000)
    res = internal_deadletter(rec, DL, "processing_error", "classify: ValueError", max_bytes=4096)
    doc = json.loads(res.outputs[0].value)
    assert doc["raw_base64"] is None and doc["raw_omitted"] is True
    assert doc["raw_size"] == 5000 and len(doc["raw_sha256"]) == 64
    assert doc["source"] == {"topic": "cpaas.calls.v1", "partition": 2, "offset": 9,
                             "key_base64": None, "timestamp": None}
    assert res.stats.deadletter_reason == "processing_error"
    assert dict(res.outputs[0].headers)["deadletter-reason"] == b"processing_error"
