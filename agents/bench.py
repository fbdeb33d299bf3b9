"""``privacy-pipeline bench``: the offline benchmark (``pipeline.benchmark``) plus the end-to-end
part through an embedded broker and real workers (issue 10).

End to end: one worker (``python -m agents.bench worker``: the production worker, its
detector sized by ``PRIVACY_PIPELINE_DETECTOR_PROCESSES``, by default one child per core)
consumes the generated mixed stream; latency is the output record's Kafka timestamp minus
the input record's (set by the producer), per input, the latest of its routed
outputs on the retention topics. Full load: every event produced at once. Half load: a
paced producer at half the full-load rate. Then two workers in one group (each with the
default detector, as one worker) on fresh topics. Peak memory is the worker's process tree:
proportional set size (each page once; the children share their models' pages) and, for
comparison, resident set size summed over the processes.

    run_bench(args)   # args: sms (path|None), events (int), skip_e2e (bool); returns exit code
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson

from agents.broker import EmbeddedBroker
from agents.runner import WorkerProcess, _topic_specs
from agents.topics import consumer_config, ensure_topics, producer_config, topic_names
from pipeline.benchmark import (
    RssSampler,
    build_stream,
    default_sms_path,
    render_table,
    run_offline,
    save_results,
)
from pipeline.settings import Settings, load_settings

log = logging.getLogger(__name__)

__all__ = ["BenchWorker", "run_bench", "run_e2e"]


class BenchWorker(WorkerProcess):
    """:class:`~agents.runner.WorkerProcess` running ``python -m agents.bench worker``."""

    def start(self) -> BenchWorker:
        import subprocess

        env = dict(os.environ)
        env.pop("KAFKA_BROKER", None)
        env.update({"PRIVACY_PIPELINE_KAFKA_BROKER": self.bootstrap,
                    "PRIVACY_PIPELINE_DATA_DIR": str(self.workdir / "data"),
                    "PRIVACY_PIPELINE_WEB_HOST": "127.0.0.1",
                    "PRIVACY_PIPELINE_WEB_PORT": str(self.web_port), "PYTHONUNBUFFERED": "1"})
        env.update(self.extra_env)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agents.bench", "worker"], stdout=self._log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=str(Path(__file__).resolve().parents[1]), start_new_session=True)
        return self


def _worker_main() -> int:
    """The production worker (``create_app`` builds the detector from the settings:
    ``PRIVACY_PIPELINE_DETECTOR_PROCESSES``, by default one child per core)."""
    import faust

    from agents.app import create_app

    settings = load_settings()
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()
    return 0


# -- producing and reading ------------------------------------------------------------------
#: Paced production sends the records due within this many seconds at once: one produce
#: request per tick instead of one per record (kafka-python builds requests in pure Python,
#: CPU taken from the worker on a small machine). Each record's timestamp is still taken
#: right before it is sent.
PACE_TICK_S = 0.02


def _produce(settings: Settings, bootstrap: str, records, *, rate: float | None = None) -> dict:
    """Produce ``records`` (SourceRecords: topic, key, value) with CreateTime timestamps;
    paced at ``rate`` events/s when given (in ticks of :data:`PACE_TICK_S`). Returns
    ``{(topic, partition, offset): ts_ms}``."""
    from kafka import KafkaProducer

    producer = KafkaProducer(**producer_config(settings, bootstrap=bootstrap))
    futures = []
    t0 = time.perf_counter()
    try:
        for i, rec in enumerate(records):
            if rate:
                due = t0 + i / rate
                delay = due - time.perf_counter()
                if delay > PACE_TICK_S:
                    producer.flush() if delay > 0.05 else None
                    time.sleep(max(0.0, due - time.perf_counter()))
            ts = int(time.time() * 1000)
            futures.append((producer.send(rec.topic, key=rec.key, value=rec.value, timestamp_ms=ts), ts))
        producer.flush()
        out = {}
        for fut, ts in futures:
            md = fut.get(timeout=60)
            out[(md.topic, md.partition, md.offset)] = ts
        return out
    finally:
        producer.close(timeout=10)


class _Reader:
    """Latest output timestamp per input coordinate, on the retention topics."""

    def __init__(self, settings: Settings, bootstrap: str, topics: list[str]):
        from kafka import KafkaConsumer, TopicPartition

        # check_crcs off: kafka-python checks CRC32C in pure Python (~0.1 s per MB), CPU the
        # reader would take from the worker on a small machine; latencies come from the
        # records' timestamps, not from when this reader sees them.
        # Few large fetches (at most 0.5 s late, which no measurement sees) rather than many
        # small ones parsed in pure Python.
        self.consumer = KafkaConsumer(**consumer_config(settings, bootstrap=bootstrap,
                                                        max_poll_records=2000, fetch_max_wait_ms=500,
                                                        fetch_min_bytes=256 * 1024, check_crcs=False))
        tps = []
        for t in topics:
            deadline = time.monotonic() + 30
            parts = None
            while not parts and time.monotonic() < deadline:
                parts = self.consumer.partitions_for_topic(t)
                if not parts:
                    time.sleep(0.2)
            tps += [TopicPartition(t, p) for p in sorted(parts or ())]
        self.consumer.assign(tps)
        for tp, off in self.consumer.end_offsets(tps).items():
            self.consumer.seek(tp, off)
        self.done: dict[tuple, int] = {}

    def poll(self, timeout_ms: int = 200) -> None:
        for _tp, msgs in self.consumer.poll(timeout_ms=timeout_ms).items():
            for m in msgs:
                try:
                    src = orjson.loads(m.value).get("source") if m.value else None
                except orjson.JSONDecodeError:
                    continue
                if isinstance(src, dict):
                    key = (src.get("topic"), src.get("partition"), src.get("offset"))
                    if m.timestamp > self.done.get(key, 0):
                        self.done[key] = m.timestamp

    def wait(self, coords: dict, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            if all(c in self.done for c in coords):
                return True
        return False

    def close(self) -> None:
        self.consumer.close()


def _phase(settings, bootstrap, reader: _Reader, records, *, rate=None, timeout=300.0) -> dict:
    t0 = time.time()
    coords = _produce(settings, bootstrap, records, rate=rate)
    complete = reader.wait(coords, timeout)
    lat = sorted(reader.done[c] - ts for c, ts in coords.items() if c in reader.done)
    last = max((reader.done[c] for c in coords if c in reader.done), default=int(t0 * 1000))
    secs = max(1e-3, last / 1000 - t0)
    out = {"events": len(records), "accounted": len(lat), "complete": complete,
           "seconds": round(secs, 2), "events_per_s": round(len(lat) / secs, 1),
           "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99), "max_ms": lat[-1] if lat else None}
    if rate:
        out["offered_rate"] = round(rate, 1)
    return out


def _pct(values: list[int], p: float):
    if not values:
        return None
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def _setup(settings: Settings, bootstrap: str) -> list[str]:
    from pipeline.processing import Processor

    specs = _topic_specs(settings, Processor)
    ensure_topics(settings, specs, bootstrap=bootstrap)
    names = topic_names(settings)
    return [names.retention(c) for c in ("content", "usage", "account")] + [names.deadletter]


def _detector_processes(settings: Settings) -> int:
    """Detector child processes of one worker with ``settings`` (0: detection in-process)."""
    from pipeline.detection.pool import worker_processes

    n = settings.detector_processes
    return worker_processes() if n == 0 else (0 if n == 1 else n)


def _start_workers(n: int, bootstrap: str, workdir: Path, env: dict) -> list[BenchWorker]:
    workers = [BenchWorker(bootstrap, workdir=workdir / f"w{i}", env=env).start() for i in range(n)]
    for w in workers:
        w.wait_ready(timeout=240)
    return workers


def run_e2e(*, events: int = 3000, sms_path=None, seed: int = 23, two_workers: bool = True,
            offline_rate: float | None = None, status=lambda msg: None) -> dict:
    """The end-to-end measurements (see module doc); returns a dict. ``sms_path``: SMS
    bodies, by default :func:`~pipeline.benchmark.default_sms_path` as in ``make bench``
    (generated bodies only when that file is absent: they are easier, so figures differ)."""
    from pipeline.detection.pool import default_processes

    if sms_path is None:
        sms_path = default_sms_path()

    cores = default_processes()
    base = load_settings()
    workdir = Path(tempfile.mkdtemp(prefix="privacy-bench-"))
    res: dict = {"cores": cores, "workdir": str(workdir)}
    env_common = {"PRIVACY_PIPELINE_SESSION_TIMEOUT_S": "10",
                  "PRIVACY_PIPELINE_HEARTBEAT_INTERVAL_S": "1"}
    with EmbeddedBroker(log_dir=workdir) as broker:
        bootstrap = broker.bootstrap
        for label, n_workers in (("one", 1), ("two", 2)):
            if label == "two" and not two_workers:
                break
            prefix = f"bench{label}."
            settings = base.model_copy(update={"kafka_broker": bootstrap, "topic_prefix": prefix})
            topics = _setup(settings, bootstrap)
            family_topic = {f: t for t, f in settings.topic_names.input_families().items()}
            stream = build_stream(events + 200, seed=seed, sms_path=sms_path, topics=family_topic)
            warm, main = stream[:200], stream[200:]
            env = dict(env_common, PRIVACY_PIPELINE_TOPIC_PREFIX=prefix,
                       PRIVACY_PIPELINE_APP_ID=f"privacy-bench-{label}-{os.getpid()}")
            # every worker with the production default (settings.detector_processes): with two
            # workers on 2 cores, two children each (measured: 1.21x one worker; one
            # in-process detector each: 0.97x)
            status(f"e2e: starting {n_workers} worker(s)")
            workers = _start_workers(n_workers, bootstrap, workdir / label, env)
            reader = _Reader(settings, bootstrap, topics)
            try:
                with RssSampler(workers[0].proc.pid) as rss:
                    status("e2e: warm-up")
                    _phase(settings, bootstrap, reader, warm, timeout=180)
                    status(f"e2e: full load ({len(main)} events)")
                    full = _phase(settings, bootstrap, reader, main)
                    if label == "one":
                        res["full"] = full
                        half_n = max(200, min(len(main), int(full["events_per_s"] * 15)))
                        half_stream = build_stream(half_n, seed=seed + 1, sms_path=sms_path,
                                                   topics=family_topic)
                        status(f"e2e: half load ({half_n} events at {full['events_per_s'] / 2:.0f}/s)")
                        res["half"] = _phase(settings, bootstrap, reader, half_stream,
                                             rate=max(1.0, full["events_per_s"] / 2))
                    else:
                        res["two_workers"] = full
                if label == "one":
                    res["worker_rss_peak_mb"] = round(rss.peak / 2**20, 1)
                    res["worker_pss_peak_mb"] = round(rss.peak_pss / 2**20, 1)
                    res["detector_processes"] = _detector_processes(base)
            finally:
                reader.close()
                for w in workers:
                    w.stop()
    if "two_workers" in res and res.get("full"):
        res["two_vs_one"] = round(res["two_workers"]["events_per_s"] / res["full"]["events_per_s"], 2)
    if offline_rate:
        res["share_of_offline"] = round(res["full"]["events_per_s"] / offline_rate, 2)
    return res


def run_bench(args) -> int:
    """``privacy-pipeline bench [--sms FILE] [--events N] [--skip-e2e]``: offline + e2e,
    prints the table and one JSON line, saves ``bench/results/<date>-<time>.json``."""
    from rich.console import Console

    console = Console(stderr=True)
    status = lambda msg: console.print(f"[dim]{msg}[/dim]")  # noqa: E731
    sms = getattr(args, "sms", None) or default_sms_path()
    events = int(getattr(args, "events", None) or 3000)
    res = run_offline(events=events, sms_path=sms, status=status)
    if not getattr(args, "skip_e2e", False):
        try:
            res["e2e"] = run_e2e(events=events, sms_path=sms, status=status,
                                 offline_rate=res["ours"]["machine"]["events_per_s"])
        except Exception as exc:  # report what was measured; the table shows the failure
            log.exception("end-to-end benchmark failed")
            res["e2e"] = {"error": f"{type(exc).__name__}: {exc}"}
        e2e = res["e2e"]
        if not e2e.get("error"):
            res["targets"]["e2e_share>=0.5"] = (e2e.get("share_of_offline") or 0) >= 0.5
            res["targets"]["e2e_half_p99<=1000ms"] = (e2e["half"].get("p99_ms") or 1e9) <= 1000
            res["targets"]["worker_memory<=800MB"] = e2e.get("worker_pss_peak_mb", 1e9) <= 800
    render_table(res, Console())
    path = save_results(res, Path(__file__).resolve().parents[1] / "bench" / "results")
    print(json.dumps(res, sort_keys=True, separators=(",", ":")))
    console.print(f"saved {path}")
    return 0


def _main(argv: list[str]) -> int:  # pragma: no cover - entry points
    import argparse

    if argv[:1] == ["worker"]:
        return _worker_main()
    ap = argparse.ArgumentParser(prog="python -m agents.bench")
    ap.add_argument("--sms")
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--skip-e2e", action="store_true")
    return run_bench(ap.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main(sys.argv[1:]))
