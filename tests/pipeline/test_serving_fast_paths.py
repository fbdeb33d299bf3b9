"""The serving path's fast paths give the plain computation's result, on real values:

- the producer size check of ``Processor._route`` (a record's outputs against
  ``max_bytes``): the same outputs and dead letters as :meth:`Processor._fit` at, just under
  and just over the limit;
- ``_layout_stats`` (counts from the layout) equal to ``_stats`` without a layout (every
  field entry looked at) over many record shapes;
- ``DriftMonitor.sample`` with layouts (windows kept per layout) equal to ``check_envelope``
  without one, window by window, and ``None`` exactly for the envelopes not sampled;
- ``decode_object`` on bytes, bytearray and memoryview, at the depth limit and around the
  digit runs orjson would get wrong, equal to the standard library;
- sealing in a batch: every sealed record is encrypted with its own account's data key;
- the classifier's per-layout schema check equal to the checker on the record;
- ``classify_input`` equal to ``ClassifyInput(...)``.
"""

from __future__ import annotations

import json

import pytest

from pipeline.benchmark import build_stream, structured_stream
from pipeline.classify import ClassifyInput, classify_input
from pipeline.codec import decode_object, encode
from pipeline.drift import DriftMonitor
from pipeline.errors import DecodeError
from pipeline.processing import _BatchState, _layout_stats, _stats
from pipeline.records import SourceRecord
from pipeline.shredding import KeyRing

AC = "AC" + "0123456789abcdef" * 2
AC2 = "AC" + "fedcba9876543210" * 2


@pytest.fixture(scope="module")
def records(settings):
    """Many record shapes: mixed messages, calls and accounts, structured events."""
    topics = {f: t for t, f in settings.topic_names.input_families().items()}
    return build_stream(150, seed=21, topics=topics) + structured_stream(150, seed=22, topics=topics)


def _envelopes(processor, records):
    """``(record, envelope, layout)`` of every record through the classifier and detector."""
    items = [ClassifyInput(decode_object(r.value), processor.input_topics.get(r.topic, "auto"), r.value,
                           {"topic": r.topic, "partition": r.partition, "offset": r.offset}) for r in records]
    out = processor.classifier.classify_batch_planned(items)
    return [(r, env, layout) for r, (env, layout) in zip(records, out)]


def _plain_size(out) -> int:
    """The size the producer check counts: key and value bytes plus header keys and values."""
    size = len(out.value or b"") + len(out.key or b"")
    for k, v in out.headers:
        size += len(k) + len(v)
    return size


def _view(outputs):
    return [(o.topic, o.key, o.value, o.headers) for o in outputs]


# -- size check ------------------------------------------------------------------------------------
@pytest.mark.parametrize("offset", [-1, 0, 1, 512])
def test_size_check_matches_fit_at_the_limit(fixed_processor, records, offset):
    """max_bytes set so that the record's largest output is ``offset`` bytes under the limit
    minus the margin (-1: one byte over): the check keeps or dead-letters exactly the
    outputs ``_fit`` does, with the same dead letters."""
    proc = fixed_processor
    saved = proc.max_bytes
    tried = 0
    try:
        for rec in records[:40]:
            proc.max_bytes = saved
            plain = proc.process_batch([rec])[0]
            if plain.outcome != "classified":
                continue
            largest = max(_plain_size(o) for o in plain.outputs)
            proc.max_bytes = largest + 512 + offset
            got = proc.process_batch([rec])[0]
            want = [proc._fit(rec, o) for o in plain.outputs]
            assert _view(got.outputs) == _view(want)
            too_large = [o for o in plain.outputs if _plain_size(o) + 512 > proc.max_bytes]
            assert bool(too_large) == (offset < 0)
            dead = [o for o in got.outputs if o.topic == proc.topics.deadletter]
            assert len(dead) == len(too_large)
            assert (got.stats.deadletter_reason == "output_too_large") == (offset < 0)
            tried += 1
    finally:
        proc.max_bytes = saved
    assert tried >= 20


class _FixedRouter:
    """Stands in for the router: the given outputs for any envelope."""

    def __init__(self, outputs):
        self.outputs = outputs

    def is_deletion(self, env, layout=None):
        return False

    def route(self, env, **kw):
        return list(self.outputs)


@pytest.mark.parametrize("margin", [511, 512, 513])
def test_size_check_counts_keys_headers_and_missing_values(fixed_processor, margin):
    """Outputs with no key or value (tombstones), long headers, str header keys: for a limit
    ``margin`` bytes over each output's exact size, ``_route`` keeps or dead-letters each
    output as ``_fit`` does (same dead letters)."""
    from pipeline.records import OutputMessage

    proc = fixed_processor
    rec = SourceRecord("cpaas.calls.v1", 0, 1, b"key", b"{}", headers=(("replay-attempt", b"2"),))
    env = {"event_type": "call", "event_id": "CA1", "account_id": None, "fields": {}, "record": {}}
    outs = [OutputMessage("t", None, None, ()),
            OutputMessage("t", b"", b"", ()),
            OutputMessage("t", b"k" * 10, None, (("h\u00e9", b"v" * 300),)),
            OutputMessage("t", None, b"v" * 700, (("event-id", b"x" * 40), ("privacy-policy", b"p")))]
    saved, router = proc.max_bytes, proc.router
    try:
        for out in outs:
            proc.max_bytes = _plain_size(out) + margin
            proc.router = _FixedRouter([out, outs[0]])
            got = proc._route(rec, env, _BatchState(frozenset(), {}, None), None)
            proc.router = router
            want = [proc._fit(rec, o) for o in (out, outs[0])]
            assert _view(got.outputs) == _view(want)
            assert (got.outputs[0] is out) == (margin >= 512)
            assert (got.stats.deadletter_reason == "output_too_large") == (margin < 512)
    finally:
        proc.max_bytes, proc.router = saved, router


# -- stats -------------------------------------------------------------------------------------------
def test_layout_stats_equal_the_uncached_computation(fixed_processor, records):
    proc = fixed_processor
    dl = proc.topics.deadletter
    compared = 0
    layouts = set()
    for rec, env, layout in _envelopes(proc, records):
        outputs = proc.router.route(env, input_key=rec.key, layout=layout)
        if layout is None:
            continue
        layouts.add(id(layout))
        # an output to the dead-letter topic with a reason, as an oversized output becomes
        for outs in (outputs, outputs + [proc._too_large(rec, outputs[0], 10**9)]):
            fast = _layout_stats(env, outs, layout, dl)
            assert fast == _stats(env, outs, None, dl)
            assert fast == _stats(env, outs, None, None)
            assert fast == _stats(env, outs, layout, None)
            assert (fast.deadletter_reason is not None) == (outs is not outputs)
        compared += 1
    assert compared >= 250 and len(layouts) >= 10


# -- drift -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("every", [1, 3])
def test_drift_sample_with_layouts_equals_check_envelope_without(fixed_processor, records, every):

    proc = fixed_processor
    spec = proc.policy.drift.model_copy(update={"sample_every": every, "min_samples": 2, "threshold": 0.0})
    fast, plain = DriftMonitor(spec, dict(proc.drift._entities)), DriftMonitor(spec, dict(proc.drift._entities))
    pii = [SourceRecord("cpaas.messages.v1", 0, 800 + i, b"k", encode(
        {"sid": "SM" + f"{i:032d}", "status": "failed", "to": "+14155550100",
         "error_message": f"user{i}@example.com rejected" if i % 3 else "rejected"})) for i in range(30)]
    envs = _envelopes(proc, records[:100] + pii + records[100:])
    flagged_any = False
    for _ in range(2):
        for _rec, env, layout in envs:
            got = fast.sample(env, layout)
            want = plain.check_envelope(env)
            if got is None:
                assert want == {} and plain._counter % every != 0
            else:
                assert dict(got) == dict(want)
                flagged_any = flagged_any or bool(want)
    assert fast.status() == plain.status()
    assert flagged_any
    # a layout first sampled by another monitor is worked out again for this one
    other = DriftMonitor(spec, dict(proc.drift._entities))
    ref = DriftMonitor(spec, dict(proc.drift._entities))
    for _rec, env, layout in envs[:60]:
        assert other.check_envelope(env, layout) == ref.check_envelope(env)
    assert other.status() == ref.status()


def test_drift_disabled_samples_nothing(fixed_processor, records):

    proc = fixed_processor
    mon = DriftMonitor(proc.policy.drift.model_copy(update={"enabled": False}))
    for _rec, env, layout in _envelopes(proc, records[:20]):
        assert mon.sample(env, layout) is None and mon.check_envelope(env, layout) == {}
    assert mon.status() == {}


# -- decode ------------------------------------------------------------------------------------------
DECODE_CASES = [
    (b'{"a": 1, "b": [1, 2, {"c": "d"}]}', None),
    (b'{"big": 1234567890123456789}', None),            # 19 digits: the exact parser
    (b'{"big": -12345678901234567890123}', None),
    (b'{"f": 1e400}', "number_out_of_range"),
    (b'{"s": "\\ud83d"}', None),                        # a lone surrogate escape
    (b'{"id": "SMa1e970"}', None),
    (b'{"n": 123456789012345678}', None),               # 18 digits: orjson
    ('{"t": "caf\u00e9"}'.encode(), None),
    (b"", "empty"),
    (b"   ", "empty"),
    (b"\xff", "invalid_utf8"),
    (b"{not json", "invalid_json"),
    (b"[1, 2]", "not_object"),
    (b'"x"', "not_object"),
    (b"[" * 511 + b"{}" + b"]" * 511, "not_object"),    # 512 levels: at the limit
    (b"[" * 512 + b"{}" + b"]" * 512, "too_deep"),      # 513 levels
    (b'{"a": "' + b"[" * 600 + b'"}', None),            # brackets inside a string
    (b'{"a":' * 512 + b"1" + b"}" * 512, None),         # 512 objects deep: at the limit
    (b'{"a":' * 513 + b"1" + b"}" * 513, "too_deep"),
    (b'{"a":[' * 256 + b"1" + b"]}" * 256, None),       # mixed brackets, 512 levels
    (b'{"a":[' * 256 + b"{}" + b"]}" * 256, "too_deep"),
    (b'{"n": "' + b"1" * 19 + b'"}', None),             # a digit run in a string: exact parser
]


@pytest.mark.parametrize("raw,kind", DECODE_CASES)
@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_decode_object_equals_the_standard_library(raw, kind, wrap):
    if kind is None:
        assert decode_object(wrap(raw)) == json.loads(raw.decode("utf-8"))
        assert type(decode_object(wrap(raw))) is dict
    else:
        with pytest.raises(DecodeError) as err:
            decode_object(wrap(raw))
        assert err.value.kind == kind


def test_decode_object_keeps_big_integers_exact():
    value = decode_object(b'{"a": 98765432109876543210, "b": 1234567890123456789}')
    assert value == {"a": 98765432109876543210, "b": 1234567890123456789}
    assert type(value["a"]) is int and type(value["b"]) is int


# -- sealing -----------------------------------------------------------------------------------------
def _msg(account: str, sid: str, body: str) -> dict:
    return {"sid": sid, "account_sid": account, "from": "+14155550100", "to": "+14155550199",
            "body": body, "status": "delivered", "direction": "outbound-api", "num_segments": "1"}


def test_batch_sealer_seals_each_record_with_its_own_account(processor):
    accounts = [AC, AC2, AC, AC2, AC]
    batch = [SourceRecord("cpaas.messages.v1", 0, i, None,
                          encode(_msg(a, "SM" + str(i) * 32, f"note {i} for the account")))
             for i, a in enumerate(accounts)]
    results = processor.process_batch(batch, data_keys={})
    ring = KeyRing(dict(processor.keyring.masters), processor.keyring.current)
    new_keys = []
    for res in results:
        for o in res.outputs:
            if o.topic == processor.topics.keys:
                ring.apply(o.key, o.value)
                new_keys.append((res.account_id, o.key))
    # one data key per account, produced with the first record of the account
    assert [a for a, _ in new_keys] == [AC, AC2]
    assert all(k.startswith(a.encode() + b"/") for a, k in new_keys)
    for i, res in enumerate(results):
        assert res.account_id == accounts[i]
        sealed = [decode_object(o.value) for o in res.outputs if o.topic == "privacy.retention.content.v1"]
        assert len(sealed) == 1 and "record" not in sealed[0]
        content = decode_object(ring.decrypt(accounts[i], sealed[0]["record_encrypted"]))
        assert content == {"body": f"note {i} for the account"}


# -- schema check ------------------------------------------------------------------------------------
def test_layout_schema_check_equals_the_checker(fixed_processor, records):
    proc = fixed_processor
    checker = proc.classifier.schema_check
    bad = [SourceRecord("cpaas.calls.v1", 0, 900 + i, b"k", encode(v)) for i, v in enumerate([
        {"sid": "CA" + "1" * 32, "duration": "twelve", "status": "completed"},
        {"sid": "CA" + "2" * 32, "duration": 12, "status": 5},
        {"sid": "CA" + "3" * 32, "duration": True, "status": "completed"},
    ])]
    checked = 0
    for _ in range(2):  # the second time through, every layout has its compiled check
        for _rec, env, layout in _envelopes(proc, records + bad):
            assert env["schema_errors"] == checker(env["event_type"], env["record"])
            checked += 1
    assert checked >= 600
    assert any(env["schema_errors"] for _r, env, _l in _envelopes(proc, bad))


@pytest.mark.parametrize("args", [
    ({"sid": "CA1"}, "call", b'{"sid": "CA1"}', {"topic": "cpaas.calls.v1", "partition": 0, "offset": 3}),
    ({}, "auto", b"{}", None),
    ({"a": [1]}, "message", b"", {"topic": "t", "partition": None, "offset": None}),
])
def test_classify_input_equals_the_dataclass(args):
    fast, plain = classify_input(*args), ClassifyInput(*args)
    assert fast == plain and type(fast) is ClassifyInput and repr(fast) == repr(plain)
    assert (fast.record, fast.family, fast.raw, fast.source) == args
    with pytest.raises(AttributeError):
        fast.family = "other"  # still frozen
