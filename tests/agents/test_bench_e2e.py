"""The end-to-end benchmark's client and one short run of it through a real worker."""

from __future__ import annotations

import uuid

import orjson
import pytest

from agents.bench import _Client, run_e2e
from pipeline.records import SourceRecord
from pipeline.settings import Settings

pytestmark = pytest.mark.broker


def _topics(bootstrap: str, names: list[str], partitions: int = 2) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        admin.close()


def test_client_produces_with_timestamps_and_reads_outputs_by_source(broker):
    """Produced coordinates come back with their timestamps; outputs naming a ``source``
    are matched to it (the latest output timestamp wins); others are ignored."""
    run = uuid.uuid4().hex[:8]
    inp, out = f"bench-in-{run}", f"bench-out-{run}"
    _topics(broker.bootstrap, [inp, out])
    settings = Settings(secret_hash_key="k", pseudonym_key="p")
    client = _Client(settings, broker.bootstrap, [out])
    try:
        records = [SourceRecord(inp, None, None, b"AC%d" % i, b'{"n":%d}' % i) for i in range(30)]
        coords = client.produce(records)
        assert len(coords) == 30 and {t for t, _, _ in coords} == {inp}
        assert all(ts > 1_700_000_000_000 for ts in coords.values())
        outputs = []
        for (topic, partition, offset), _ts in sorted(coords.items())[:20]:
            src = {"topic": topic, "partition": partition, "offset": offset}
            outputs.append(SourceRecord(out, None, None, b"k", orjson.dumps({"source": src})))
        outputs.append(SourceRecord(out, None, None, b"k", b"not json"))
        outputs.append(SourceRecord(out, None, None, b"k", b'{"no_source": 1}'))
        client.produce(outputs)
        first20 = dict(sorted(coords.items())[:20])
        assert client.wait(first20, timeout=30)
        assert set(client.done) == set(first20)
        assert not client.wait(coords, timeout=1)  # ten inputs never got an output
    finally:
        client.close()


def test_client_paces_production(broker):
    run = uuid.uuid4().hex[:8]
    inp = f"bench-paced-{run}"
    _topics(broker.bootstrap, [inp], partitions=1)
    client = _Client(Settings(secret_hash_key="k", pseudonym_key="p"), broker.bootstrap, [inp])
    try:
        records = [SourceRecord(inp, None, None, b"k", b"{}") for _ in range(40)]
        coords = client.produce(records, rate=200.0)  # 40 records over ~0.2 s
        ts = sorted(coords.values())
        assert 150 <= ts[-1] - ts[0] <= 1500
    finally:
        client.close()


@pytest.mark.slow
def test_a_short_end_to_end_run_accounts_for_every_event(shared_data):
    res = run_e2e(events=60, two_workers=False, sms_path=shared_data / "sms_spam_collection.tsv")
    full, half = res["full"], res["half"]
    assert full["complete"] and full["accounted"] == 60
    assert half["complete"] and half["accounted"] == half["events"] >= 60
    assert 0 <= full["p50_ms"] <= full["p99_ms"] <= full["max_ms"]
    assert res["worker_pss_peak_mb"] > 100 and res["worker_rss_peak_mb"] >= res["worker_pss_peak_mb"]
    assert res["detector_processes"] >= 0
