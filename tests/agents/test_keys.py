"""Worker side of crypto-shredding (issue 7) without a broker: keys are delivered before the
content they seal, the key state follows delivered outputs, and reconciliation shreds keys of
accounts deleted elsewhere and re-wraps keys of a retired master key."""

from __future__ import annotations

import asyncio

from agents.keys import KeyState
from pipeline.records import OutputMessage, ProcessResult, SourceRecord
from pipeline.settings import Settings
from pipeline.shredding import KeyRing

from tests.agents.test_app import DL, Sink, _handler, _msg, executor  # noqa: F401 (fixture)

KEYS = "privacy.keys.v1"
AC, AC2 = "AC" + "a" * 32, "AC" + "b" * 32


def _sealed(rec: SourceRecord, **kw) -> ProcessResult:
    outs = [OutputMessage(KEYS, b"AC1/k1", b"wrapped"), OutputMessage("privacy.retention.content.v1", b"AC1", b"sealed")]
    return ProcessResult(rec, outs, "classified", "message", f"E{rec.offset}", "AC1")


def test_key_messages_are_delivered_before_any_other_output(executor):
    sink = Sink()
    h = _handler(lambda recs, **kw: [_sealed(r) for r in recs], sink, executor, first_topics=frozenset([KEYS]))
    assert asyncio.run(h.handle([_msg(1), _msg(2)])).ok
    assert [o.topic for o in sink.sent] == [KEYS, KEYS, "privacy.retention.content.v1", "privacy.retention.content.v1"]


def test_content_is_withheld_when_its_key_was_not_delivered(executor):
    sink = Sink(fail_topics=[KEYS])
    h = _handler(lambda recs, **kw: [_sealed(r) for r in recs], sink, executor, first_topics=frozenset([KEYS]))
    outcome = asyncio.run(h.handle([_msg(1)]))
    assert [o.topic for o in sink.sent] == [DL]  # no sealed content without its key: dead-lettered
    assert outcome.ok


def test_state_and_results_hooks(executor):
    seen = {}
    h = _handler(lambda recs, **kw: seen.setdefault("kw", kw) and [_sealed(r) for r in recs], Sink(), executor,
                 state=lambda: {"data_keys": {"x": {}}}, on_results=lambda res: seen.setdefault("n", len(res)))
    asyncio.run(h.handle([_msg(1)]))
    assert seen == {"kw": {"data_keys": {"x": {}}}, "n": 1}


def test_reconcile_shreds_keys_of_deleted_accounts_and_rewraps_old_ones():
    old = KeyRing({"m1": b"\x01" * 32}, "m1")
    _, k1 = old.encrypt(AC, b"x")
    _, k2 = old.encrypt(AC2, b"y")
    state = KeyState(Settings(kafka_broker="b:9092"), KEYS, KeyRing({"m1": b"\x01" * 32, "m2": b"\x02" * 32}, "m2"))
    state.apply([OutputMessage(KEYS, *k1), OutputMessage(KEYS, *k2)])
    sink = Sink()
    assert asyncio.run(state.reconcile(sink, lambda: {AC})) == 2
    assert [(o.key, o.value is None) for o in sink.sent] == [(k1[0], True), (k2[0], False)]
    assert AC not in state.ring.data_keys and state.ring.wrapped_with == {k2[0]: "m2"}
    assert asyncio.run(state.reconcile(sink, lambda: {AC})) == 0  # idempotent
