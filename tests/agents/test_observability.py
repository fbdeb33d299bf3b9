"""Observability (issue 11): metrics with DESIGN.md's names and label sets after real events
flow through a worker on the embedded broker, with counter values predicted from the events
produced (by hand, and exactly by running the same records through an in-process
``Processor`` with the same policy); ``/healthz`` and ``/readyz``; the live dashboard at
``/dashboard``, rendered in headless Chromium (skipped when Chromium is not installed).

The worker runs with a copy of the default policy whose drift watch looks at every envelope
with a zero threshold, so drift counts do not depend on the order records are processed in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml

from agents.app import _readiness, consumer_lag
from agents.dashboard import DashboardData, histogram_quantile
from agents.runner import (
    InputEvent,
    OutputReader,
    WorkerProcess,
    _topic_specs,
    parse_metrics,
    produce_events,
    sample_inputs,
)
from agents.topics import topic_names
from pipeline.metrics import DEADLETTER_REASONS, PipelineMetrics
from pipeline.processing import Processor
from pipeline.records import SourceRecord
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
N_SAMPLE = 240
N_DRIFT = 12
BAD = {b"{not json": "invalid_json", b"{\"a\": }": "invalid_json", b"{'x': 1}": "invalid_json",
       b"\xff\xfe{}": "invalid_utf8", b"{\"a\": \"\xc3\x28\"}": "invalid_utf8", b"[1, 2, 3]": "not_object"}
TIMEOUT_S = 150

#: DESIGN.md, Metrics: name -> label names.
DESIGN_LABELS = {
    "privacy_events_total": {"event_type", "route"},
    "privacy_fields_total": {"event_type", "category", "source"},
    "privacy_entities_total": {"entity_type"},
    "privacy_deadletter_total": {"reason"},
    "privacy_unknown_fields_total": {"event_type"},
    "privacy_drift_total": {"event_type", "rule"},
    "privacy_consumer_lag": {"topic", "partition"},
}
COUNTERS = [n for n in DESIGN_LABELS if n.endswith("_total")]
HISTOGRAMS = ("privacy_classify_seconds", "privacy_batch_size")


# --------------------------------------------------------------------------------------------
# Without a broker
# --------------------------------------------------------------------------------------------


def test_consumer_lag_is_highwater_minus_committed():
    assert consumer_lag(120, 100, 90) == 20  # committed wins over the fetch position
    assert consumer_lag(120, None, 115) == 5  # nothing committed yet: the position
    assert consumer_lag(None, 100, 100) is None  # nothing fetched: unknown, not zero
    assert consumer_lag(100, 104, None) == 0  # never negative (Tansu's short end offsets)
    assert consumer_lag(50, None, None) is None


def test_set_lags_removes_partitions_no_longer_assigned():
    m = PipelineMetrics(topics=["in.v1"])
    m.set_lags({("in.v1", 0): 5, ("in.v1", 1): 7})
    m.set_lags({("in.v1", 1): 2})
    lag = parse_metrics(m.render().decode())["privacy_consumer_lag"]
    assert lag == [({"topic": "in.v1", "partition": "1"}, 2.0)]
    m.set_lags({("someone-elses-topic", 3): 9})
    assert parse_metrics(m.render().decode())["privacy_consumer_lag"] == [
        ({"topic": "other", "partition": "3"}, 9.0)]


class _FakeConsumer:
    def __init__(self, known: set[str], assigned: bool) -> None:
        self.known, self.assigned = known, assigned

    def topic_partitions(self, topic):
        return 4 if topic in self.known else None

    def assignment(self):
        return {("t", 0)} if self.assigned else set()


class _FakeApp:
    def __init__(self, consumer, *, started=True, rebalancing=False, recovered=True) -> None:
        from types import SimpleNamespace

        self.consumer, self.started, self.rebalancing = consumer, started, rebalancing
        self.key_state = None
        ev = SimpleNamespace(is_set=lambda: recovered)
        self.tables = SimpleNamespace(recovery=SimpleNamespace(completed=ev))


@pytest.mark.parametrize(("app", "ready"), [
    (_FakeApp(_FakeConsumer({"a", "b"}, True)), True),
    (_FakeApp(_FakeConsumer({"a"}, True)), False),  # topic b does not exist yet
    (_FakeApp(_FakeConsumer({"a", "b"}, False)), False),  # no partitions assigned yet
    (_FakeApp(_FakeConsumer({"a", "b"}, True), rebalancing=True), False),
    (_FakeApp(_FakeConsumer({"a", "b"}, True), recovered=False), False),
    (_FakeApp(_FakeConsumer({"a", "b"}, True), started=False), False),
])
def test_readiness_needs_topics_assignment_and_recovery(app, ready):
    checks = _readiness(app, frozenset({"a", "b"}))
    assert all(checks.values()) is ready, checks


def test_histogram_quantile_matches_prometheus():
    buckets = [(0.1, 2.0), (0.5, 4.0), (1.0, 4.0), (float("inf"), 5.0)]
    assert histogram_quantile(0.2, buckets) == pytest.approx(0.05)
    assert histogram_quantile(0.6, buckets) == pytest.approx(0.3)
    assert histogram_quantile(0.99, buckets) == 1.0  # in +Inf: the highest finite bound
    assert histogram_quantile(0.5, [(1.0, 0.0), (float("inf"), 0.0)]) is None


def test_dashboard_data_rates_over_the_window():
    from pipeline.records import ProcessResult, RecordStats

    now = [1000.0]
    m = PipelineMetrics()
    data = DashboardData(m, clock=lambda: now[0])
    data.sample()
    src = SourceRecord("cpaas.messages.v1", 0, 1, None, b"{}")
    res = ProcessResult(src, [], "classified", "message", stats=RecordStats(routes=["r.v1"]))
    m.observe([res] * 30, 0.2)
    now[0] += 10
    d = data.build(ready=True)
    assert d["totals"]["events"] == 30 and d["rates"]["events_per_s"] == 3.0
    assert d["events_by_route"] == [{"route": "r.v1", "total": 30.0, "per_s": 3.0}]
    assert d["classify_seconds"]["count"] == 1 and d["classify_seconds"]["mean"] == 0.2
    assert d["series"] == [{"t": 10.0, "records_per_s": 3.0, "events_per_s": 3.0}]
    json.dumps(d)  # serialisable


# --------------------------------------------------------------------------------------------
# On the broker
# --------------------------------------------------------------------------------------------


def _policy_file(tmp: Path) -> Path:
    """The default policy with a drift watch that counts every usage field holding PII."""
    doc = yaml.safe_load((ROOT / "pipeline" / "policy" / "default.yaml").read_text())
    doc["drift"].update({"sample_every": 1, "min_samples": 1, "threshold": 0.0})
    path = tmp / "policy.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _inputs(settings: Settings, shared_data: Path) -> tuple[list[InputEvent], dict[str, int]]:
    names = topic_names(settings)
    events = [e for e in sample_inputs(settings, N_SAMPLE, seed=23,
                                       sms_path=shared_data / "sms_spam_collection.tsv", bad=0)
              if not e.deletes_account]  # deletions change later routes: order-dependent
    template = next(json.loads(e.value) for e in events if e.topic == names.messages)
    drift = []
    for i in range(N_DRIFT):
        doc = dict(template, sid=f"SM{uuid.uuid4().hex}", error_code=30006,
                   error_message=f"delivery to grace.haddad{i}@example.com failed")
        drift.append(InputEvent(names.messages, None, json.dumps(doc).encode(), doc["sid"]))
    bad = [InputEvent(names.messages if i % 2 else names.calls, None, v, bad=True)
           for i, v in enumerate(BAD)]
    tombstones = [InputEvent(names.messages, b"AC" + b"1" * 32, None),
                  InputEvent(names.calls, b"AC" + b"2" * 32, None),
                  InputEvent(names.accounts, b"AC" + b"9" * 32, None, account_id="AC" + "9" * 32,
                             deletes_account=True)]
    out = events[:100] + bad[:3] + drift + tombstones + events[100:] + bad[3:]
    expected = {"message_tombstones": 1, "call_tombstones": 1}
    return out, expected


def _expected_metrics(settings: Settings, events: list[InputEvent], coords) -> PipelineMetrics:
    """What the worker must count: the same records through an in-process processor."""
    proc = Processor.from_settings(settings)
    exp = PipelineMetrics.from_processor(proc)
    records = [SourceRecord(t, p, o, e.key, e.value) for (t, p, o), e in zip(coords, events)]
    results = proc.process_batch(records)
    exp.observe(results, 0.0)
    anon_in = [SourceRecord(o.topic, 0, i, o.key, o.value, None, tuple(o.headers))
               for i, o in enumerate(out for r in results for out in r.outputs
                                     if out.topic == proc.topics.anonymise)]
    exp.observe(proc.anonymise_batch(anon_in), 0.0, stage="anonymise")
    return exp


def _samples(parsed: dict, name: str) -> dict[tuple, float]:
    return {tuple(sorted(labels.items())): v for labels, v in parsed.get(name, []) if v}


@pytest.fixture(scope="module")
def observed(broker, shared_data, tmp_path_factory):
    tag = uuid.uuid4().hex[:8]
    tmp = tmp_path_factory.mktemp("obs")
    policy = _policy_file(tmp)
    settings = Settings(kafka_broker=broker.bootstrap, topic_prefix=f"ob{tag}.", app_id=f"ob-{tag}",
                        partitions=4, session_timeout_s=6, heartbeat_interval_s=1, policy=policy)
    names = topic_names(settings)
    events, hand = _inputs(settings, shared_data)
    worker = WorkerProcess(broker.bootstrap, workdir=tmp, env={
        "PRIVACY_PIPELINE_TOPIC_PREFIX": settings.topic_prefix,
        "PRIVACY_PIPELINE_APP_ID": settings.app_id,
        "PRIVACY_PIPELINE_POLICY": str(policy),
        "PRIVACY_PIPELINE_SESSION_TIMEOUT_S": "6",
        "PRIVACY_PIPELINE_HEARTBEAT_INTERVAL_S": "1",
        "PRIVACY_PIPELINE_BATCH_SIZE": "32",
    }).start()
    reader = None
    try:
        # /readyz answers 503 while topics are created and partitions assigned, then 200.
        before: list[tuple[int, dict]] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert worker.alive(), f"worker died:\n{worker.log_tail()}"
            try:
                status, body = worker.get("/readyz", timeout=2)
            except OSError:
                time.sleep(0.2)
                continue
            before.append((status, json.loads(body)))
            if status == 200:
                break
            time.sleep(0.2)
        assert before and before[-1][0] == 200, f"never ready: {before[-1:]}\n{worker.log_tail()}"
        specs = _topic_specs(settings, Processor)
        inputs = set(names.input_families())
        out_topics = [s.name for s in specs if s.name not in inputs]
        reader = OutputReader(settings, out_topics, from_beginning=True)
        t0 = time.monotonic()
        coords = produce_events(settings, events)
        expected = _expected_metrics(settings, events, coords)
        exp = parse_metrics(expected.render().decode())
        want_anonymised = sum(_samples(exp, "privacy_events_total").get(
            (("event_type", et), ("route", names.anonymised)), 0) for et in ("message", "call"))
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            reader.poll(500)
            if not reader.missing_inputs(events, coords) and not reader.missing_anonymised():
                break
            assert worker.alive(), f"worker died:\n{worker.log_tail()}"
        # The counters follow the outputs: wait until the anonymise stage counted everything.
        parsed = {}
        while time.monotonic() < deadline:
            status, body = worker.get("/metrics")
            parsed = parse_metrics(body.decode())
            got = sum(v for labels, v in parsed.get("privacy_events_total", [])
                      if labels.get("route") == names.anonymised)
            if got >= want_anonymised and sum(v for _, v in parsed.get("privacy_batch_size_sum", [])) >= len(events):
                break
            time.sleep(0.5)
        flowing_s = time.monotonic() - t0
        yield {
            "settings": settings, "names": names, "events": events, "coords": coords, "hand": hand,
            "worker": worker, "metrics": parsed, "metrics_text": body.decode(), "expected": exp,
            "readyz_before": before, "flowing_s": flowing_s,
        }
    finally:
        if reader is not None:
            reader.close()
        code = worker.stop()
        print(f"worker exit code {code}; log {worker.log_path}")


@pytest.mark.broker
def test_every_design_metric_is_exported_with_its_exact_label_set(observed):
    m = observed["metrics"]
    for name, labels in DESIGN_LABELS.items():
        assert m.get(name), f"{name} has no series"
        for got, _ in m[name]:
            assert set(got) == labels, (name, got)
    for name in HISTOGRAMS:
        for suffix in ("_count", "_sum"):
            (labels, _), = m[name + suffix]
            assert labels == {}, (name + suffix, labels)
        assert all(set(labels) == {"le"} for labels, _ in m[name + "_bucket"])
    text = observed["metrics_text"]
    for name in (*DESIGN_LABELS, *HISTOGRAMS):
        kind = "gauge" if name == "privacy_consumer_lag" else "histogram" if name in HISTOGRAMS else "counter"
        base = name.removesuffix("_total")
        assert f"# TYPE {name} {kind}" in text or f"# TYPE {base} {kind}" in text, name


@pytest.mark.broker
def test_counters_match_the_events_produced(observed):
    """Every DESIGN counter, every label combination, equal to what the same records give
    through an in-process processor with the same policy (nothing lost, nothing doubled)."""
    m, exp = observed["metrics"], observed["expected"]
    # Data keys (crypto-shredding, issue 7) are created per account by whichever batch first
    # needs one, from the worker's key state: that route depends on batching, not on records.
    stateful = {getattr(observed["names"], "keys", None)} - {None}
    for name in COUNTERS:
        got, want = _samples(m, name), _samples(exp, name)
        if name == "privacy_events_total":
            got = {k: v for k, v in got.items() if dict(k)["route"] not in stateful}
            want = {k: v for k, v in want.items() if dict(k)["route"] not in stateful}
        assert got == want, f"{name}: worker {got} != expected {want}"
    n = len(observed["events"])
    assert m["privacy_batch_size_sum"][0][1] == n
    assert m["privacy_classify_seconds_count"][0][1] == m["privacy_batch_size_count"][0][1] >= n / 32


@pytest.mark.broker
def test_counters_predicted_by_hand(observed):
    m, names, events = observed["metrics"], observed["names"], observed["events"]
    dl = _samples(m, "privacy_deadletter_total")
    assert dl == {(("reason", r),): float(c) for r, c in Counter(BAD.values()).items()}
    ev = _samples(m, "privacy_events_total")
    assert ev[(("event_type", "unknown"), ("route", names.deadletter))] == len(BAD)
    assert ev[(("event_type", "message"), ("route", "none"))] == observed["hand"]["message_tombstones"]
    assert ev[(("event_type", "call"), ("route", "none"))] == observed["hand"]["call_tombstones"]
    deletions = [e for e in events if e.deletes_account]
    assert ev[(("event_type", "account"), ("route", names.deletions))] == len(deletions)
    # every good message or call went to privacy.anonymise.v1, and from there to anonymised
    good = Counter({names.messages: "message", names.calls: "call"}.get(e.topic)
                   for e in events if e.value is not None and not e.bad)
    for et in ("message", "call"):
        assert ev[(("event_type", et), ("route", names.anonymise))] == good[et]
        assert ev[(("event_type", et), ("route", names.anonymised))] == good[et]
    drift = _samples(m, "privacy_drift_total")
    assert drift.get((("event_type", "message"), ("rule", "usage-log-fields")), 0) >= N_DRIFT
    fields = _samples(m, "privacy_fields_total")
    assert {dict(k)["category"] for k in fields} == {"content", "usage", "account"}
    assert {dict(k)["source"] for k in fields} <= {"rule", "name", "detector", "default"}


@pytest.mark.broker
def test_label_values_come_from_policy_and_code(observed):
    m, names = observed["metrics"], observed["names"]
    outputs = {s.name for s in _topic_specs(observed["settings"], Processor)}
    inputs = set(names.input_families())
    families = {"message", "call", "account"}
    for name in COUNTERS:
        for labels, _ in m[name]:
            if "event_type" in labels:
                assert labels["event_type"] in families | {"unknown"}, (name, labels)
            if "route" in labels:
                assert labels["route"] in outputs | {"none"}, labels
            if "reason" in labels:
                assert labels["reason"] in DEADLETTER_REASONS, labels
            if "entity_type" in labels:
                assert re.fullmatch(r"[A-Z_]+", labels["entity_type"]), labels
    text = observed["metrics_text"]
    assert "example.com" not in text and "grace.haddad" not in text
    assert not re.search(r"\+1\d{10}", text)
    for labels, v in m["privacy_consumer_lag"]:
        assert labels["topic"] in inputs | {names.anonymise} and labels["partition"] in {"0", "1", "2", "3"}
        assert v >= 0


@pytest.mark.broker
def test_consumer_lag_drains_to_zero(observed):
    """Every input and anonymise partition has a lag series; with everything processed it
    reaches 0 once the offsets are committed (fetch high watermark minus committed offset;
    Tansu's ListOffsets is off but its fetch high watermark is right)."""
    w, names = observed["worker"], observed["names"]
    want = {(t, str(p)) for t in (*names.input_families(), names.anonymise) for p in range(4)}
    deadline = time.monotonic() + 20
    while True:
        lag = {(labels["topic"], labels["partition"]): v
               for labels, v in parse_metrics(w.get("/metrics")[1].decode())["privacy_consumer_lag"]}
        if set(lag) == want and not any(lag.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert set(lag) == want
    assert not any(lag.values()), {k: v for k, v in lag.items() if v}


@pytest.mark.broker
def test_health_endpoints(observed):
    w = observed["worker"]
    status, body = w.get("/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, body = w.get("/readyz")
    doc = json.loads(body)
    assert status == 200 and doc["ready"] is True and all(doc["checks"].values()), doc
    assert {"started", "topics", "assigned", "not_rebalancing", "recovered"} <= set(doc["checks"])
    before = observed["readyz_before"]
    assert before[-1][0] == 200
    assert len(before) > 1, "/readyz was never seen answering 503 during start-up"
    for status, doc in before[:-1]:  # while starting: 503 and the check that is still false
        assert status == 503 and doc["ready"] is False and not all(doc["checks"].values()), doc


@pytest.mark.broker
def test_dashboard_page_and_data(observed):
    w, names = observed["worker"], observed["names"]
    status, page = w.get("/dashboard")
    assert status == 200 and b"<title>privacy-pipeline worker</title>" in page
    assert not re.search(rb"(src|href)=[\"']?(https?:)?//", page), "the page loads nothing external"
    status, body = w.get("/dashboard/data")
    assert status == 200
    d = json.loads(body)
    m = w.get("/metrics")[1].decode()
    parsed = parse_metrics(m)
    assert d["totals"]["events"] == sum(v for _, v in parsed["privacy_events_total"])
    assert d["totals"]["deadletters"] == len(BAD)
    assert {r["route"] for r in d["events_by_route"]} >= {names.anonymise, names.anonymised, names.deadletter}
    assert {r["category"] for r in d["fields_by_category"]} == {"content", "usage", "account"}
    assert d["entities_top"] and d["entities_top"][0]["total"] > 0
    assert d["classify_seconds"]["count"] > 0 and d["classify_seconds"]["p95"] > 0
    assert d["ready"] is True


# --------------------------------------------------------------------------------------------
# Headless Chromium
# --------------------------------------------------------------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("Chromium is not installed (Debian: apt-get install chromium chromium-driver; "
                "`make test` in CI installs it): the dashboard is not rendered in a browser")


def _run_chromium(binary: str, profile: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)


def _testid(dom: str, testid: str) -> str:
    m = re.search(rf'data-testid="{testid}"[^>]*>([^<]*)<', dom)
    assert m, f"no element {testid} in the rendered page"
    return m.group(1).strip()


def _number(text: str) -> float:
    return float(text.replace(",", ""))


@pytest.mark.broker
def test_dashboard_renders_live_numbers_in_chromium(observed, tmp_path):
    binary = _chromium()
    w, names = observed["worker"], observed["names"]
    url = w.url + "/dashboard"
    # --virtual-time-budget lets the page's polling run (fetch, render) before the DOM is dumped
    res = _run_chromium(binary, tmp_path / "profile-dom", "--virtual-time-budget=8000", "--dump-dom", url)
    dom = res.stdout.decode("utf-8", "replace")
    assert res.returncode == 0 and "</html>" in dom, res.stderr.decode("utf-8", "replace")[-2000:]
    assert _testid(dom, "updated") != "never", "the page never received /dashboard/data"
    assert _testid(dom, "ready") == "ready"
    for testid in ("events-total", "records-total", "fields-total", "entities-total", "deadletters-total",
                   "unknown-total", "drift-total", "batches-total"):
        assert _number(_testid(dom, testid)) > 0, testid
    assert _number(_testid(dom, "records-peak")) > 0, "the records/s history shows no burst"
    assert _number(_testid(dom, "deadletters-total")) == len(BAD)
    assert _number(_testid(dom, "records-total")) == len(observed["events"])
    assert _testid(dom, "classify-mean") not in ("", "–")
    for table, key in (("routes", names.anonymised), ("deadletters", "invalid_json"),
                       ("categories", "content"), ("entities", "PHONE_NUMBER"), ("drift", "usage-log-fields")):
        section = re.search(rf'data-testid="{table}">(.*?)</table>', dom, re.DOTALL)
        assert section and f'data-key="{key}"' in section.group(1), (table, key)

    shot = tmp_path / "dashboard.png"
    res = _run_chromium(binary, tmp_path / "profile-shot", "--virtual-time-budget=8000",
                        f"--screenshot={shot}", "--window-size=1400,1500", url)
    assert res.returncode == 0 and shot.is_file(), res.stderr.decode("utf-8", "replace")[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    keep = os.environ.get("PRIVACY_PIPELINE_DASHBOARD_SCREENSHOT")  # opt-in copy, e.g. for docs
    if keep:
        shutil.copyfile(shot, keep)
    print(f"dashboard screenshot: {shot}")
