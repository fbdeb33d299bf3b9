"""``privacy-pipeline run``: the main job end to end, and the helpers the tests share.

Without ``--broker`` it starts an embedded broker (it never writes sample events into a
configured cluster), creates the topics, starts a worker subprocess
(``python -m agents.cli worker``), produces the events (a generated Twilio-shaped sample
by default, a few undecodable records included), reads every output topic with manual
partition assignment until each input is accounted for, prints a summary and stops
everything it started.

An input is accounted for when its source coordinates (topic, partition, offset) or its
event id appear in an output topic (``privacy.anonymise.v1`` for messages and calls, a
retention topic, ``privacy.deletions.v1`` or ``privacy.deadletter.v1``); an anonymise
message when its event id reaches ``privacy.anonymised.v1`` or it is dead-lettered.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from agents.broker import EmbeddedBroker, die_with_parent, free_port
from agents.topics import consumer_config, ensure_topics, producer_config, topic_names
from pipeline.errors import PipelineError
from pipeline.settings import Settings, load_settings

log = logging.getLogger(__name__)

__all__ = [
    "InputEvent", "OutputReader", "RunError", "RunReport", "WorkerProcess", "default_sms_path",
    "file_inputs", "produce_events", "run_job", "sample_inputs",
]

Coord = tuple[str, int, int]


class RunError(PipelineError):
    """The job could not finish (worker died, timeout); the message names the log files."""


@dataclass(frozen=True)
class InputEvent:
    """One record to produce, with what is known about it for accounting."""

    topic: str
    key: bytes | None
    value: bytes | None
    event_id: str | None = None
    account_id: str | None = None
    deletes_account: bool = False
    bad: bool = False
    #: Not in the declared ``--format`` (an ``asterisk-csv`` line that is no CDR): not produced.
    rejected: bool = False


def default_sms_path() -> Path | None:
    """``../shared/data/sms_spam_collection.tsv`` next to the checkout, when present."""
    root = Path(__file__).resolve().parents[1]
    for base in (Path.cwd(), root):
        p = (base / ".." / "shared" / "data" / "sms_spam_collection.tsv").resolve()
        if p.is_file():
            return p
    return None


def sample_inputs(settings: Settings, n: int = 3000, *, seed: int = 7,
                  sms_path: str | Path | None = None, bad: int = 6) -> list[InputEvent]:
    """The generated sample (``pipeline.samples``) mapped to the settings' input topics."""
    from pipeline.samples import generate

    names = topic_names(settings)
    topic_of = {"message": names.messages, "call": names.calls, "account": names.accounts}
    return [
        InputEvent(topic_of[e.family], e.key, e.value, None if e.bad else e.event_id,
                   e.account_id, e.deletes_account, e.bad)
        for e in generate(n, seed=seed, sms_path=sms_path, bad=bad)
    ]


def _blank_lines(path: str | Path) -> int:
    """Lines of ``path`` that are empty or whitespace only (:func:`file_inputs` skips them)."""
    from pipeline.offline import iter_lines

    with open(path, "rb") as fh:
        return sum(1 for line in iter_lines(fh) if not line.strip())


def file_inputs(settings: Settings, path: str | Path, fmt: str = "auto") -> list[InputEvent]:
    """Records of a JSON Lines file; each goes to the input topic of its inferred family
    (undecodable lines to the messages topic, to be dead-lettered there). A line not in the
    declared ``fmt`` comes back with ``rejected`` set (:func:`run_job` does not produce it)."""
    from pipeline.adapters import Rejection, adapt_line
    from pipeline.codec import decode_object
    from pipeline.offline import iter_lines

    names = topic_names(settings)
    topic_of = {"message": names.messages, "call": names.calls, "account": names.accounts}
    ident = _identity(settings)
    out = []
    with open(path, "rb") as fh:
        for line in iter_lines(fh):
            if not line.strip():
                continue
            value, hint = adapt_line(line, fmt)
            if isinstance(hint, Rejection):
                out.append(InputEvent(names.calls, None, value, bad=True, rejected=True))
                continue
            family, event_id, account_id = hint or "message", None, None
            try:
                obj = decode_object(value)
            except PipelineError:
                out.append(InputEvent(names.messages, None, value, bad=True))
                continue
            if ident is not None:
                try:
                    event_id, account_id = ident.find_ids(obj, value)
                    family = hint or ident.infer_family(obj, event_id)
                except Exception:  # identity is a hint for accounting only
                    pass
            key = account_id.encode() if isinstance(account_id, str) else None
            out.append(InputEvent(topic_of.get(family, names.messages), key, value, event_id, account_id))
    return out


def _identity(settings: Settings):
    """A detector-less classifier for family and id inference (no spaCy load), or ``None``."""
    try:
        from pipeline.classify import Classifier
        from pipeline.policy import load_policy

        return Classifier(load_policy(settings.policy), None,
                          secret_key=settings.secret_hash_key.get_secret_value().encode(),
                          secret_key_id=settings.secret_hash_key_id)
    except Exception as exc:  # pragma: no cover - depends on pipeline internals
        log.debug("no identity inference: %s", type(exc).__name__)
        return None


def produce_events(settings: Settings, events: Sequence[InputEvent], *, bootstrap: str | None = None,
                   on_progress: Callable[[int], None] | None = None) -> list[Coord]:
    """Produce ``events`` in order; returns each one's (topic, partition, offset)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(**producer_config(settings, bootstrap=bootstrap))
    try:
        futures = []
        for i, ev in enumerate(events, 1):
            futures.append(producer.send(ev.topic, key=ev.key, value=ev.value))
            if on_progress and i % 100 == 0:
                on_progress(100)
        if on_progress:
            on_progress(len(events) % 100)
        producer.flush()
        coords = []
        for fut in futures:
            md = fut.get(timeout=60)
            coords.append((md.topic, md.partition, md.offset))
        return coords
    finally:
        producer.close(timeout=10)


# --------------------------------------------------------------------------------------------
# Reading the outputs
# --------------------------------------------------------------------------------------------


@dataclass
class OutputRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


class OutputReader:
    """Reads every partition of the output topics (manual assignment, no group) from the
    offsets they had at construction, keeping counts and what accounting needs.

    ``keep`` names topics whose records are kept whole in ``records[topic]`` (tests).
    """

    def __init__(self, settings: Settings, topics: Iterable[str], *, bootstrap: str | None = None,
                 from_beginning: bool = False, keep: Iterable[str] = ()) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.names = topic_names(settings)
        self.topics = list(topics)
        self.keep = set(keep)
        self.consumer = KafkaConsumer(**consumer_config(
            settings, bootstrap=bootstrap, max_poll_records=2000, fetch_max_wait_ms=200))
        tps = []
        for t in self.topics:
            parts = self._partitions(t)
            tps.extend(TopicPartition(t, p) for p in parts)
        self.consumer.assign(tps)
        if from_beginning:
            self.consumer.seek_to_beginning(*tps)
        else:
            for tp, off in self.consumer.end_offsets(tps).items():
                self.consumer.seek(tp, off)
        self.counts: Counter[str] = Counter()
        self.records: dict[str, list[OutputRecord]] = defaultdict(list)
        self.seen_coords: set[Coord] = set()
        self.seen_ids: dict[str, set[str]] = defaultdict(set)
        #: anonymise message coordinates -> (event id, source coordinates of its input)
        self.anonymise_msgs: dict[Coord, tuple[str | None, Coord | None]] = {}
        self.deletion_keys: set[bytes] = set()
        self.deadletter_reasons: Counter[str] = Counter()
        self.first_output_at: float | None = None

    def _partitions(self, topic: str) -> list[int]:
        deadline = time.monotonic() + 30
        while True:
            parts = self.consumer.partitions_for_topic(topic)
            if parts:
                return sorted(parts)
            if time.monotonic() > deadline:
                raise RunError(f"output topic {topic} has no partitions (was it created?)")
            time.sleep(0.2)

    def poll(self, timeout_ms: int = 500) -> int:
        n = 0
        names = self.names
        for tp, msgs in self.consumer.poll(timeout_ms=timeout_ms).items():
            for m in msgs:
                n += 1
                headers = {k: (v or b"") for k, v in (m.headers or [])}
                self.counts[tp.topic] += 1
                eid = headers.get("event-id", b"").decode("utf-8", "replace") or None
                if eid:
                    self.seen_ids[tp.topic].add(eid)
                if tp.topic in self.keep:
                    self.records[tp.topic].append(
                        OutputRecord(tp.topic, tp.partition, m.offset, m.key, m.value, headers))
                if tp.topic == names.deletions and m.key is not None:
                    self.deletion_keys.add(m.key)
                if tp.topic != names.anonymised and m.value:
                    src = _source_of(m.value)
                    if src is not None:
                        self.seen_coords.add(src)
                    if tp.topic == names.anonymise:
                        self.anonymise_msgs[(tp.topic, tp.partition, m.offset)] = (eid, src)
                    if tp.topic == names.deadletter:
                        self.deadletter_reasons[
                            headers.get("deadletter-reason", b"").decode() or _dl_kind(m.value)] += 1
        if n and self.first_output_at is None:
            self.first_output_at = time.monotonic()
        return n

    def accounted(self, coord: Coord, event_id: str | None) -> bool:
        n = self.names
        if coord in self.seen_coords:
            return True
        return event_id is not None and any(
            event_id in ids for t, ids in self.seen_ids.items() if t != n.anonymised)

    def missing_inputs(self, inputs: Sequence[InputEvent], coords: Sequence[Coord]) -> list[tuple[Coord, InputEvent]]:
        out = []
        for c, ev in zip(coords, inputs):
            if ev.value is None:  # tombstone: a deletion on the accounts topic, else skipped
                if c[0] == self.names.accounts and ev.key and ev.key not in self.deletion_keys:
                    out.append((c, ev))
            elif not self.accounted(c, ev.event_id):
                out.append((c, ev))
        return out

    def missing_anonymised(self, coords: Iterable[Coord] | None = None) -> list[Coord]:
        """``privacy.anonymise.v1`` messages not yet anonymised (nor dead-lettered); with
        ``coords``, only those made from these inputs (older messages are not waited for)."""
        done_ids = self.seen_ids[self.names.anonymised]
        wanted = set(coords) if coords is not None else None
        return [c for c, (eid, src) in self.anonymise_msgs.items()
                if (wanted is None or src is None or src in wanted)
                and not ((eid and eid in done_ids) or c in self.seen_coords)]

    def close(self) -> None:
        self.consumer.close()


def _source_of(value: bytes) -> Coord | None:
    try:
        src = orjson.loads(value).get("source")
        if isinstance(src, dict) and src.get("partition") is not None and src.get("offset") is not None:
            return (str(src["topic"]), int(src["partition"]), int(src["offset"]))
    except Exception:
        pass
    return None


def _dl_kind(value: bytes) -> str:
    try:
        return str(orjson.loads(value)["error"]["kind"])
    except Exception:
        return "unknown"


# --------------------------------------------------------------------------------------------
# The worker subprocess
# --------------------------------------------------------------------------------------------


class WorkerProcess:
    """``python -m agents.cli worker`` in a subprocess, pointed at ``bootstrap``."""

    def __init__(self, bootstrap: str, *, workdir: Path, web_port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.bootstrap = bootstrap
        self.web_port = web_port or free_port()
        self.workdir = Path(workdir)
        self.log_path = self.workdir / "worker.log"
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> WorkerProcess:
        env = dict(os.environ)
        env.pop("KAFKA_BROKER", None)
        env.update({
            "PRIVACY_PIPELINE_KAFKA_BROKER": self.bootstrap,
            "PRIVACY_PIPELINE_DATA_DIR": str(self.workdir / "data"),
            "PRIVACY_PIPELINE_WEB_HOST": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv(),
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=str(Path(__file__).resolve().parents[1]), start_new_session=True,
            preexec_fn=die_with_parent,
        )
        return self

    def argv(self) -> list[str]:
        """The worker's command line (tests substitute a launcher around ``create_app``)."""
        return [sys.executable, "-m", "agents.cli", "worker", "--web-port", str(self.web_port)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Seconds until ``/readyz`` answered 200; raises :class:`RunError` if the worker died."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if not self.alive():
                raise RunError(f"the worker exited with code {self.proc.returncode} during start-up; "
                               f"see {self.log_path}\n{self.log_tail()}")
            try:
                status, _ = self.get("/readyz", timeout=2)
                if status == 200:
                    return time.monotonic() - start
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.25)
        raise RunError(f"the worker was not ready after {timeout:.0f} s; see {self.log_path}")

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        proc, self.proc = self.proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            code = proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text -> ``{sample name: [(labels, value), ...]}``."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list] = defaultdict(list)
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name].append((dict(s.labels), s.value))
    return out


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------


@dataclass
class RunReport:
    inputs: int = 0
    bad_inputs: int = 0
    accounted: int = 0
    missing: list[tuple[Coord, InputEvent]] = field(default_factory=list)
    missing_anonymised: list[Coord] = field(default_factory=list)
    routes: dict[str, int] = field(default_factory=dict)
    deadletter_reasons: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, list] = field(default_factory=dict)
    startup_s: float = 0.0
    processing_s: float = 0.0
    total_s: float = 0.0
    broker: str = ""
    embedded: bool = True
    workdir: str = ""
    worker_log: str = ""
    broker_log: str = ""
    deleted_accounts: int = 0

    @property
    def ok(self) -> bool:
        return not self.missing and not self.missing_anonymised

    @property
    def events_per_s(self) -> float:
        return self.inputs / self.processing_s if self.processing_s > 0 else 0.0


def run_job(
    *,
    settings: Settings | None = None,
    input_path: str | Path | None = None,
    fmt: str = "auto",
    events: int = 3000,
    broker: str | None = None,
    seed: int = 7,
    timeout: float = 300.0,
    sms_path: str | Path | None = None,
    status: Callable[[str], None] = lambda msg: None,
) -> RunReport:
    """Run the main job; ``status`` receives one-line progress messages."""
    t_start = time.monotonic()
    settings = settings or load_settings()
    workdir = Path(tempfile.mkdtemp(prefix="privacy-run-"))
    report = RunReport(workdir=str(workdir), embedded=broker is None)
    embedded: EmbeddedBroker | None = None
    worker: WorkerProcess | None = None
    reader: OutputReader | None = None
    try:
        if broker is None:
            embedded = EmbeddedBroker(log_dir=workdir).start()
            bootstrap = embedded.bootstrap
            report.broker_log = str(embedded.log_path)
            status(f"embedded broker on {bootstrap} (log {embedded.log_path})")
        else:
            from pipeline.settings import normalise_broker

            bootstrap = normalise_broker(broker)
        report.broker = bootstrap
        settings = settings.model_copy(update={"kafka_broker": bootstrap})

        if input_path is not None:
            inputs = file_inputs(settings, input_path, fmt)
            status(f"{len(inputs)} records from {input_path}")
            blank = _blank_lines(input_path)
            if blank:
                status(f"{blank} blank lines skipped (no event in them; `classify` makes each an "
                       "`empty` dead letter)")
            rejected = [e for e in inputs if e.rejected]
            if rejected:
                inputs = [e for e in inputs if not e.rejected]
                status(f"{len(rejected)} lines not in the format {fmt} were not produced")
            limit = settings.producer_max_request_size
            oversize = [e for e in inputs if len(e.value or b"") + len(e.key or b"") + 512 > limit]
            if oversize:
                # the input producer refuses them before they reach the worker: say so, go on
                inputs = [e for e in inputs if len(e.value or b"") + len(e.key or b"") + 512 <= limit]
                status(f"{len(oversize)} records over the producer limit of {limit} bytes were not "
                       "produced (raise PRIVACY_PIPELINE_PRODUCER_MAX_REQUEST_SIZE, or use `classify`)")
        else:
            sms = sms_path if sms_path is not None else default_sms_path()
            inputs = sample_inputs(settings, events, seed=seed, sms_path=sms)
            status(f"{len(inputs)} generated events, seed {seed} (bodies from {sms or 'generated texts'})")
        report.inputs = len(inputs)
        report.bad_inputs = sum(1 for e in inputs if e.bad)

        # Topics first, so the producer never auto-creates one with default configs.
        from pipeline.processing import Processor

        specs = _topic_specs(settings, Processor)
        ensure_topics(settings, specs, bootstrap=bootstrap)
        names = topic_names(settings)
        inputs_set = set(names.input_families())
        out_topics = [s.name for s in specs if s.name not in inputs_set]
        reader = OutputReader(settings, out_topics, bootstrap=bootstrap)

        worker_env = {
            "PRIVACY_PIPELINE_SESSION_TIMEOUT_S": str(min(settings.session_timeout_s, 10.0)),
            "PRIVACY_PIPELINE_HEARTBEAT_INTERVAL_S": str(min(settings.heartbeat_interval_s, 1.0)),
        }
        if broker is not None:
            # Never join the production consumer group; a stable group of its own, so a second
            # run goes on from the first one's committed offsets instead of reprocessing.
            worker_env["PRIVACY_PIPELINE_APP_ID"] = f"{settings.app_id}-run"
        worker = WorkerProcess(bootstrap, workdir=workdir, env=worker_env).start()
        report.worker_log = str(worker.log_path)
        status(f"worker starting (pid {worker.proc.pid}, log {worker.log_path})")
        report.startup_s = worker.wait_ready(timeout=min(timeout, 180.0))
        status(f"worker ready after {report.startup_s:.1f} s; producing")

        t_produce = time.monotonic()
        coords = produce_events(settings, inputs, bootstrap=bootstrap)
        status(f"produced {len(coords)} records; waiting for every one to be accounted for")

        deadline = time.monotonic() + timeout
        t_done = None
        missing: list = []
        missing_anon: list = []
        last_check = 0.0
        while time.monotonic() < deadline:
            reader.poll(500)
            now = time.monotonic()
            if now - last_check < 0.5:
                continue
            last_check = now
            missing = reader.missing_inputs(inputs, coords)
            missing_anon = reader.missing_anonymised(coords)
            if not missing and not missing_anon:
                t_done = now
                break
            if not worker.alive():
                raise RunError(f"the worker exited with code {worker.proc.returncode}; see "
                               f"{worker.log_path}\n{worker.log_tail()}")
        report.missing, report.missing_anonymised = missing, missing_anon
        report.accounted = report.inputs - len(missing)
        report.processing_s = (t_done or time.monotonic()) - t_produce
        reader.poll(300)  # pick up stragglers on other routes
        report.routes = {t: reader.counts.get(t, 0) for t in out_topics}
        report.deadletter_reasons = dict(reader.deadletter_reasons)
        report.deleted_accounts = len(reader.deletion_keys)
        try:
            code, body = worker.get("/metrics", timeout=10)
            if code == 200:
                report.metrics = parse_metrics(body.decode())
        except (OSError, urllib.error.URLError):
            log.warning("could not read the worker's /metrics")
        return report
    finally:
        if reader is not None:
            reader.close()
        if worker is not None:
            code = worker.stop()
            status(f"worker stopped (exit code {code})")
        if embedded is not None:
            embedded.stop()
            status("embedded broker stopped")
        report.total_s = time.monotonic() - t_start


def _topic_specs(settings: Settings, processor_cls) -> list:
    """Topic specs without loading spaCy: a Processor with the policy only."""
    from pipeline.policy import load_policy

    try:
        proc = processor_cls.__new__(processor_cls)
        proc.policy = load_policy(settings.policy)
        proc.settings = settings
        proc.topics = topic_names(settings)
        return proc.topic_specs()
    except Exception:
        return processor_cls.from_settings(settings).topic_specs()


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def _metric_sum(report: RunReport, name: str, by: Sequence[str]) -> Counter:
    out: Counter = Counter()
    for labels, value in report.metrics.get(name, []):
        out[tuple(labels.get(b, "") for b in by)] += value
    return out


def render_summary(report: RunReport, console) -> None:
    """Print the run summary as rich tables."""
    from rich.table import Table

    names_order = list(report.routes)
    routes = Table(title="Messages per output topic", title_justify="left")
    routes.add_column("topic")
    routes.add_column("messages", justify="right")
    for t in names_order:
        n = report.routes[t]
        routes.add_row(t, f"{n:,}" if n else "[red]0[/red]")

    fields = _metric_sum(report, "privacy_fields_total", ("category", "source"))
    sources = sorted({s for _, s in fields})
    cats = Table(title="Fields per category and deciding source", title_justify="left")
    cats.add_column("category")
    for s in sources:
        cats.add_column(s, justify="right")
    cats.add_column("total", justify="right")
    for cat in sorted({c for c, _ in fields}):
        row = [int(fields.get((cat, s), 0)) for s in sources]
        cats.add_row(cat, *(f"{v:,}" for v in row), f"{sum(row):,}")

    ents = _metric_sum(report, "privacy_entities_total", ("entity_type",))
    etab = Table(title="Entities per type", title_justify="left")
    etab.add_column("entity type")
    etab.add_column("count", justify="right")
    for (etype,), n in sorted(ents.items(), key=lambda kv: (-kv[1], kv[0])):
        etab.add_row(etype, f"{int(n):,}")

    unknown = _metric_sum(report, "privacy_unknown_fields_total", ("event_type",))
    outcomes = _metric_sum(report, "privacy_outcomes_total", ("outcome",))
    dl = Table(title="Dead letters per reason", title_justify="left")
    dl.add_column("reason")
    dl.add_column("count", justify="right")
    for reason, n in sorted(report.deadletter_reasons.items()):
        dl.add_row(reason, f"{n:,}")

    totals = Table(title="Run", title_justify="left", show_header=False)
    totals.add_column("what")
    totals.add_column("value", justify="right")
    totals.add_row("broker", f"{report.broker} ({'embedded' if report.embedded else 'external'})")
    totals.add_row("input records", f"{report.inputs:,} ({report.bad_inputs} undecodable)")
    totals.add_row("accounted for", f"{report.accounted:,}")
    totals.add_row("accounts deleted", f"{report.deleted_accounts}")
    totals.add_row("unknown fields", ", ".join(f"{k[0]} {int(v):,}" for k, v in sorted(unknown.items())) or "0")
    totals.add_row("outcomes (worker)",
                   ", ".join(f"{k[0]} {int(v):,}" for k, v in sorted(outcomes.items())) or "-")
    totals.add_row("worker start-up", f"{report.startup_s:.1f} s")
    totals.add_row("processing", f"{report.processing_s:.1f} s")
    totals.add_row("events/s after start-up", f"{report.events_per_s:,.0f}")
    totals.add_row("total", f"{report.total_s:.1f} s")

    console.print(routes)
    console.print(cats)
    console.print(etab)
    console.print(dl)
    console.print(totals)
    if report.missing:
        console.print(f"[red]{len(report.missing)} input records not accounted for[/red], first ones:")
        for (t, p, o), ev in report.missing[:10]:
            console.print(f"  {t}[{p}]@{o} event_id={ev.event_id or '?'}")
    if report.missing_anonymised:
        console.print(f"[red]{len(report.missing_anonymised)} anonymise messages not anonymised[/red]")
    console.print(f"logs: {report.workdir}")
