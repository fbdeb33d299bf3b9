"""agents/runner.py helpers that need no broker: inputs for `run` and accounting."""

from __future__ import annotations

from agents.runner import InputEvent, file_inputs, sample_inputs
from pipeline.samples import generate
from pipeline.settings import Settings


def test_sample_inputs_map_families_to_prefixed_topics():
    s = Settings(topic_prefix="x.")
    events = sample_inputs(s, 300, seed=1, bad=4)
    assert {e.topic for e in events} == {"x.cpaas.messages.v1", "x.cpaas.calls.v1", "x.cpaas.accounts.v1"}
    assert sum(e.bad for e in events) == 4
    assert all(e.event_id is None for e in events if e.bad)
    assert any(e.deletes_account for e in events)


def test_file_inputs_infer_family_and_ids_and_keep_bad_lines(tmp_path):
    path = tmp_path / "in.jsonl"
    sample = [e for e in generate(120, seed=2, bad=3)]
    path.write_bytes(b"\n".join(e.value for e in sample if e.value) + b"\n\n")
    s = Settings()
    got = file_inputs(s, path)
    good = [e for e in sample if e.value and not e.bad]
    assert len(got) == len([e for e in sample if e.value])
    assert sum(e.bad for e in got) == len([e for e in sample if e.bad and e.value])
    by_value = {e.value: e for e in got}
    family_topic = {"message": "cpaas.messages.v1", "call": "cpaas.calls.v1", "account": "cpaas.accounts.v1"}
    right = sum(by_value[e.value].topic == family_topic[e.family] for e in good)
    assert right >= 0.95 * len(good)
    with_ids = [by_value[e.value] for e in good]
    assert sum(ev.event_id is not None for ev in with_ids) == len(with_ids)
    assert all(isinstance(ev, InputEvent) for ev in got)


def test_file_inputs_mark_lines_not_in_the_declared_format(tmp_path):
    cdr = (b'"acme","4155550100","200","from-internal","Ada <4155550100>","SIP/201-1","SIP/t-1","Dial",'
           b'"SIP/t/200,30","2026-03-02 10:00:00","2026-03-02 10:00:05","2026-03-02 10:01:05","65","60",'
           b'"ANSWERED","DOCUMENTATION","1772445600.12","vip"')
    path = tmp_path / "cdr.csv"
    path.write_bytes(cdr + b"\n" + b'{"Body": "hi"}' + b"\n" + cdr + b"\n")
    got = file_inputs(Settings(), path, "asterisk-csv")
    assert [e.rejected for e in got] == [False, True, False]
    assert got[1].value == b'{"Body": "hi"}' and got[0].topic == "cpaas.calls.v1"
