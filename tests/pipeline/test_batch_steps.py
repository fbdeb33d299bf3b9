"""The worker's faster paths give the same output as the plain ones:

- ``Processor.process_batch`` in its three steps (classify, detect, route), as the worker
  overlaps them, and after a failing detection;
- the anonymise batch's rescans in one detector call (``Anonymiser.anonymise_envelopes``);
- the batch anonymised in a detector process (``anonymise_batch_values`` through
  ``run_task`` -> ``anonymise_in_detector``: pickled anonymiser, same tokens and ciphertexts),
  and here again when that fails.
"""

from __future__ import annotations

import pickle

import pytest

from pipeline.anonymise import Anonymiser, SivCipher, anonymise_in_detector
from pipeline.benchmark import build_stream
from pipeline.codec import encode
from pipeline.records import SourceRecord
from pipeline.settings import Settings

AC = "AC" + "1" * 32
SM = "SM" + "7" * 32


@pytest.fixture(scope="module")
def stream(settings):
    topics = {f: t for t, f in settings.topic_names.input_families().items()}
    records = build_stream(160, seed=5, topics=topics)
    bad = [SourceRecord("cpaas.messages.v1", 0, 10_000, b"k", b"{not json"),
           SourceRecord("cpaas.accounts.v1", 0, 10_001, AC.encode(), None)]
    return records[:40] + bad + records[40:]


def _view(results):
    return [(r.outcome, r.event_type, r.event_id, r.account_id,
             [(o.topic, o.key, o.value, o.headers) for o in r.outputs]) for r in results]


class _Counting:
    """Wraps a detector; counts calls and texts; ``fail`` makes the next batched call raise."""

    def __init__(self, inner):
        self.inner, self.calls, self.texts, self.fail = inner, 0, 0, False

    def analyze_batch(self, texts, **kw):
        self.calls += 1
        self.texts += len(texts)
        if self.fail and len(texts) > 1:
            raise RuntimeError("child died twice")
        return self.inner.analyze_batch(texts, **kw)


def test_steps_give_what_process_batch_gives(fixed_processor, stream):
    p = fixed_processor
    expected = _view(p.process_batch(stream, deleted_accounts=frozenset({"ACgone"})))
    staged = p.classify_stage(stream)
    assert staged.texts  # bodies go to the detector in step 2
    p.detect_stage(staged)
    got = _view(p.route_stage(staged, deleted_accounts=frozenset({"ACgone"})))
    assert got == expected


def test_a_failing_detection_classifies_the_batch_again(fixed_processor, stream):
    p = fixed_processor
    expected = _view(p.process_batch(stream))
    inner = p.classifier.detector
    spy = _Counting(inner)
    spy.fail = True
    p.classifier.detector = spy
    try:
        staged = p.classify_stage(stream)
        p.detect_stage(staged)  # raises inside: never out of the step
        assert staged.envelopes is None
        spy.fail = False
        got = _view(p.route_stage(staged))
    finally:
        p.classifier.detector = inner
    assert got == expected


def _anonymise_inputs(processor, stream) -> list[SourceRecord]:
    out = []
    for res in processor.process_batch(stream):
        for o in res.outputs:
            if o.topic == processor.topics.anonymise:
                out.append(SourceRecord(o.topic, 0, len(out), o.key, o.value))
    return out


def test_rescans_of_a_batch_go_in_one_detector_call(fixed_processor, stream):
    p = fixed_processor
    envs = [__import__("orjson").loads(r.value) for r in _anonymise_inputs(p, stream)]
    error_env = {"fields": {"/x": {"category": "usage", "source": "rule", "rule": "r"}}}  # no record
    one_by_one = [p.anonymiser.anonymise_envelope(e) for e in envs]
    anon = p.anonymiser
    inner = anon.detector
    spy = _Counting(inner)
    anon.detector = spy
    try:
        batched = anon.anonymise_envelopes(envs + [error_env])
        assert spy.calls == 1 and spy.texts > 1
        spy.fail = True  # the batched call fails: each envelope rescanned on its own
        again = anon.anonymise_envelopes(envs)
    finally:
        anon.detector = inner
    assert batched[:-1] == one_by_one and isinstance(batched[-1], Exception)
    assert again == one_by_one


class _InlinePool:
    """``run_task`` as ``PooledDetector`` runs it, in this process: pickled both ways."""

    def __init__(self, inner, fail=False):
        self.inner, self.fail, self.tasks = inner, fail, 0

    def analyze_batch(self, texts, **kw):
        return self.inner.analyze_batch(texts, **kw)

    def run_task(self, task, payload):
        from pipeline.detection.pool import _run_task

        self.tasks += 1
        if self.fail:
            raise RuntimeError("the pool is closed")
        payload = pickle.loads(pickle.dumps(payload))
        return pickle.loads(pickle.dumps(_run_task(task, self.inner, payload)))


@pytest.mark.parametrize("fail", [False, True])
def test_anonymise_batch_in_a_detector_process_gives_the_same_output(fixed_processor, stream, fail):
    p = fixed_processor
    records = _anonymise_inputs(p, stream)
    records.append(SourceRecord(p.topics.anonymise, 0, 999, b"k", encode({"not": "an envelope"})))
    anon = p.anonymiser
    inner, was = anon.detector, anon.in_detector
    try:
        anon.in_detector = False
        expected = _view(p.anonymise_batch(records))
        pool = _InlinePool(inner, fail=fail)
        anon.detector, anon.in_detector = pool, True
        got = _view(p.anonymise_batch(records))
    finally:
        anon.detector, anon.in_detector = inner, was
    assert pool.tasks == 1
    assert got == expected
    assert expected[-1][0] == "deadletter"


def test_the_anonymiser_pickles_with_its_keys_and_without_its_detector(settings):
    from pipeline.policy import load_policy

    s = Settings(secret_hash_key="x", pseudonym_key="ps-key", master_key="m-key",
                 pseudonym_old_keys={"k9": "old"}, master_old_keys={"m9": "old-m"})
    anon = Anonymiser.from_settings(load_policy(None), s)
    anon.detector = object()  # not picklable into the child, and not pickled
    copy = pickle.loads(pickle.dumps(anon))
    assert copy.detector is None
    kw = {"entity": "PHONE_NUMBER", "account_id": AC, "purpose": "analytics"}
    assert copy.pseudonymise("+14155550100", **kw) == anon.pseudonymise("+14155550100", **kw)
    assert copy.pseudonymise("+1", key_id="k9", **kw) == anon.pseudonymise("+1", key_id="k9", **kw)
    token = anon.cipher.encrypt("4111", entity="CREDIT_CARD")
    assert copy.cipher.decrypt(token) == "4111" and copy.cipher.key_ids == ["m0", "m9"]
    assert pickle.loads(pickle.dumps(SivCipher(b"k", "m1"))).decrypt(SivCipher(b"k", "m1").encrypt(
        "v", entity="E")) == "v"


def test_anonymise_in_detector_keeps_one_anonymiser_per_config(processor):
    record = {"sid": SM, "account_sid": AC, "to": "+14155550100", "body": "hi",
              "error_message": "Delivery to john.doe@example.com failed"}
    res = processor.process_batch([SourceRecord("cpaas.messages.v1", 0, 1, None, encode(record))])[0]
    value = next(o.value for o in res.outputs if o.topic == processor.topics.anonymise)
    config = pickle.dumps(processor.anonymiser)
    first = anonymise_in_detector(processor.anonymiser.detector, (b"id1", config, [value, b"{"]))
    again = anonymise_in_detector(processor.anonymiser.detector, (b"id1", b"not used", [value]))
    assert first[0] == again[0] and first[0][0] == "ok"
    assert b"john.doe@example.com" not in first[0][2]
    assert first[1][0] == "dead"


def test_run_task_in_a_real_detector_process(fixed_processor, stream):
    from pipeline.detection.pool import DetectorPoolError, PooledDetector

    p = fixed_processor
    records = _anonymise_inputs(p, stream)
    anon = p.anonymiser
    inner, was = anon.detector, anon.in_detector
    with PooledDetector(p.policy.detection, processes=1) as pool:
        try:
            anon.in_detector = False
            expected = _view(p.anonymise_batch(records))
            anon.detector, anon.in_detector = pool, True
            got = _view(p.anonymise_batch(records))
        finally:
            anon.detector, anon.in_detector = inner, was
        with pytest.raises(DetectorPoolError, match="ValueError"):  # outside the package
            pool.run_task("os:getcwd", None)
        with pytest.raises(DetectorPoolError) as err:  # the type only, never the message
            pool.run_task("pipeline.anonymise:anonymise_in_detector", (b"x", b"secret-ish bytes", []))
        assert "secret" not in str(err.value)
        assert pool.analyze_batch(["call me at +1 415 555 0101"])  # still usable
    assert got == expected


class _OtherProcess:
    """An in-process detector presented as one in other processes (``out_of_process``), so
    ``process_batches`` overlaps its steps; a lock serialises calls as the pool's does, and
    the threads that called it are recorded."""

    out_of_process = True

    def __init__(self, inner):
        import threading

        self.inner, self.lock, self.threads = inner, threading.Lock(), set()

    def analyze_batch(self, texts, **kw):
        import threading

        with self.lock:
            self.threads.add(threading.get_ident())
            return self.inner.analyze_batch(texts, **kw)


def _batches(stream, sizes):
    out, i = [], 0
    for n, event_type in sizes:
        out.append((stream[i:i + n], event_type))
        i += n
    return out


@pytest.mark.parametrize("sizes", [
    [(162, None)],                                     # one batch
    [(40, None), (2, None), (60, None), (60, None)],   # the bad records alone in a batch
    [(1, None)] * 5 + [(0, None), (157, None)],        # single records and an empty batch
    [(42, "message"), (120, "auto")],                  # a family given per batch
])
def test_overlapping_batches_give_what_batch_by_batch_gives(fixed_processor, stream, sizes):
    import threading

    p = fixed_processor
    batches = _batches(stream, sizes)
    expected = [_view(p.process_batch(recs, event_type=et)) for recs, et in batches]
    assert [_view(r) for r in p.process_batches(batches)] == expected  # in-process: one thread
    inner = p.classifier.detector
    wrapped = _OtherProcess(inner)
    p.classifier.detector = wrapped
    try:
        assert p.detects_out_of_process
        got = [_view(r) for r in p.process_batches(iter(batches))]
    finally:
        p.classifier.detector = inner
    assert got == expected
    assert wrapped.threads and threading.get_ident() not in wrapped.threads  # detection overlapped


def test_overlap_is_off_with_detect_in_parallel_off(fixed_processor):
    p = fixed_processor
    inner, settings = p.classifier.detector, p.settings
    p.classifier.detector = _OtherProcess(inner)
    p.settings = settings.model_copy(update={"detect_in_parallel": False})
    try:
        assert not p.detects_out_of_process
    finally:
        p.classifier.detector, p.settings = inner, settings
    assert not p.detects_out_of_process  # an in-process detector never overlaps


def test_offline_classify_in_chunks_overlapping_gives_the_same_lines(fixed_processor, stream, monkeypatch):
    """``classify_stream`` over several chunks, calls (an Asterisk CDR hint) mixed with
    inferred lines and bad lines: the same output lines, same order, with the overlap."""
    import io

    from pipeline import offline

    p = fixed_processor
    from pathlib import Path

    shapes = Path(__file__).resolve().parents[1] / "data" / "shapes" / "asterisk_master.csv"
    cdr = shapes.read_bytes().splitlines()[0]
    assert offline.adapt_line(cdr, "auto")[1] == "call"
    lines = []
    for i, rec in enumerate(stream):
        lines.append(rec.value if rec.value is not None else b"")
        if i % 7 == 0:
            lines.append(cdr)
        if i % 31 == 0:
            lines.append(b"\xff\xfe not utf-8")
    data = b"\n".join(lines) + b"\n"
    monkeypatch.setattr(offline, "BATCH", 16)

    def run():
        out = io.BytesIO()
        counts = offline.classify_stream(io.BytesIO(data), out, processor=p)
        return counts, out.getvalue().splitlines()

    expected = run()
    inner = p.classifier.detector
    p.classifier.detector = _OtherProcess(inner)
    try:
        got = run()
    finally:
        p.classifier.detector = inner
    assert got == expected
    assert expected[0]["lines"] == len(lines) == len(expected[1])
    assert expected[0].get("deadletters", 0) >= 3
