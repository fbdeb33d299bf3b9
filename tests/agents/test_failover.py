"""At-least-once across a worker crash: two workers share the partitions; one is killed with
SIGKILL mid-stream; the other takes its partitions after the session timeout and finishes."""

from __future__ import annotations

import time
import uuid

import pytest

from agents.runner import OutputReader, WorkerProcess, _topic_specs, produce_events, sample_inputs
from agents.topics import topic_names
from pipeline.processing import Processor
from pipeline.settings import Settings

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_records_survive_a_killed_worker(broker, tmp_path):
    tag = uuid.uuid4().hex[:8]
    settings = Settings(kafka_broker=broker.bootstrap, topic_prefix=f"fo{tag}.", app_id=f"fo-{tag}",
                        session_timeout_s=6, heartbeat_interval_s=1)
    env = {"PRIVACY_PIPELINE_TOPIC_PREFIX": settings.topic_prefix,
           "PRIVACY_PIPELINE_APP_ID": settings.app_id,
           "PRIVACY_PIPELINE_SESSION_TIMEOUT_S": "6",
           "PRIVACY_PIPELINE_HEARTBEAT_INTERVAL_S": "1",
           "PRIVACY_PIPELINE_BATCH_SIZE": "32"}
    names = topic_names(settings)
    events = sample_inputs(settings, 1200, seed=5, bad=4)
    first = WorkerProcess(broker.bootstrap, workdir=tmp_path / "a", env=env)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    second = WorkerProcess(broker.bootstrap, workdir=tmp_path / "b", env=env)
    reader = None
    try:
        first.start()
        second.start()
        first.wait_ready(timeout=120)
        second.wait_ready(timeout=120)
        specs = _topic_specs(settings, Processor)
        outs = [s.name for s in specs if s.name not in names.input_families()]
        reader = OutputReader(settings, outs, from_beginning=True)
        coords = produce_events(settings, events)
        t0 = time.monotonic()
        while reader.counts[names.anonymise] < 150 and time.monotonic() - t0 < 60:
            reader.poll(200)
        assert reader.counts[names.anonymise] >= 150
        first.proc.kill()  # SIGKILL mid-stream: no commit, no clean leave
        killed_at = time.monotonic()
        first.stop()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            reader.poll(500)
            if not reader.missing_inputs(events, coords) and not reader.missing_anonymised():
                break
            assert second.alive(), second.log_tail()
        missing = reader.missing_inputs(events, coords)
        assert not missing, f"{len(missing)} records lost after the crash, e.g. {missing[:3]}"
        assert not reader.missing_anonymised()
        print(f"recovered in {time.monotonic() - killed_at:.1f} s after the kill")
    finally:
        if reader is not None:
            reader.close()
        first.stop()
        second.stop()
