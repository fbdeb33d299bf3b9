"""CPU-heavy detection in child processes: :class:`PooledDetector`.

spaCy NER is the bulk of the work and holds the GIL, so one process uses one core. The
pool starts ``processes`` children (``spawn``: no fork of a process holding threads), each
building one :class:`~pipeline.detection.Detector` at start-up, and splits every
``analyze_batch`` call into one list of texts per child, of about equal characters.
Results come back as plain tuples and are rebuilt as :class:`EntitySpan` here, in input
order.

Template cache (A2P traffic, see :mod:`pipeline.detection.engine`): a child reports the
templates it learned (key, language, NER spans) with its results, and the pool hands them
to every other child with its next batch, so NER and lingua run about once per template in
the whole pool, not once per child. Texts are routed by a cheap hint (:func:`_route_hint`,
the first alphabetic words): all texts with a hint not seen before go to one child, so a
template new to the pool is not analysed by two children in the same batch; the others are
spread freely, so the children stay balanced. Results equal those of one in-process
detector: a template's language and NER spans are a function of its key.

Children count nothing: metrics are counted by the caller in the serving process
(PITFALLS.md, process pools). A child that dies is restarted once and its slice retried;
if it fails again, :class:`DetectorPoolError` is raised (the classifier then retries the
records one by one and dead-letters what still fails).

    detector = build_detector(policy.detection, model_name="auto", processes=None)
    spans = detector.analyze_batch(["call me at +1 415 555 0101"])
    detector.close()
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence

from pipeline.detection.config import DetectionConfig
from pipeline.detection.engine import TEMPLATE_MAX_CHARS, needs_ner
from pipeline.detection.types import EntitySpan
from pipeline.errors import PipelineError

log = logging.getLogger("privacy_pipeline.detection.pool")

__all__ = ["DetectorPoolError", "PooledDetector", "build_detector", "build_worker_detector",
           "cgroup_cpu_limit", "default_processes", "worker_processes"]

#: Environment of every child: one thread per native library, the pool is the parallelism.
_CHILD_ENV = {"RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1", "BLIS_NUM_THREADS": "1"}
#: Below this many characters a batch goes to one child (splitting costs more than it saves).
_MIN_SPLIT_CHARS = 2_000


class DetectorPoolError(PipelineError):
    """A detector child process failed to start or died twice on the same slice."""


def default_processes() -> int:
    """The cores this process may use (``sched_getaffinity``), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def build_detector(config: DetectionConfig | None = None, *, model_name: str | None = "auto",
                   processes: int | None = None):
    """A :class:`PooledDetector` with ``processes`` children (``None`` or ``0``: one per
    core), or an in-process :class:`~pipeline.detection.Detector` when that is 1."""
    n = processes or default_processes()
    if n <= 1:
        from pipeline.detection.engine import Detector

        return Detector(config, model_name=model_name)
    return PooledDetector(config, model_name=model_name, processes=n)


def worker_processes(cores: int | None = None) -> int:
    """Detector children a worker starts by default (``detector_processes`` 0): one per core
    but one. The worker's serving process needs about a core of its own at full load (Kafka
    I/O, decoding, routing, anonymisation, sealing), so one child per core leaves the children
    waiting for it and costs a model's memory (~330 MB) each. 0 on a single core: detection
    runs in the serving process. Cores are those of the CPU limit of the container (cgroup
    quota, rounded up) when one is set, so a pod limited to 2 CPUs on a large node starts one
    child, not one per node core."""
    if not cores:
        cores = default_processes()
        quota = cgroup_cpu_limit()
        if quota is not None:
            cores = max(1, min(cores, quota))
    return max(0, cores - 1)


def cgroup_cpu_limit() -> int | None:
    """The container's CPU limit in whole cores (cgroup v2 ``cpu.max`` or v1 CFS quota,
    rounded up), ``None`` without a limit."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, _, period = fh.read().strip().partition(" ")
        if quota != "max" and period:
            return max(1, -(-int(quota) // int(period)))
        return None
    except (OSError, ValueError):
        pass
    for base in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"):
        try:
            with open(f"{base}/cpu.cfs_quota_us") as fh:
                quota_us = int(fh.read())
            with open(f"{base}/cpu.cfs_period_us") as fh:
                period_us = int(fh.read())
        except (OSError, ValueError):
            continue
        if quota_us > 0 and period_us > 0:
            return max(1, -(-quota_us // period_us))
        return None
    return None


def build_worker_detector(config: DetectionConfig | None = None, *, model_name: str | None = "auto",
                          processes: int = 0):
    """The detector of a streaming worker for the ``detector_processes`` setting: 0 =
    :func:`worker_processes` children (a pool of one child on two cores; in-process on one
    core), 1 = in-process, N = N children."""
    n = worker_processes() if not processes else processes
    if n >= 1 and (n > 1 or not processes):
        return PooledDetector(config, model_name=model_name, processes=n)
    from pipeline.detection.engine import Detector

    return Detector(config, model_name=model_name)


# -- the child --------------------------------------------------------------------------------
def _child_main(conn, config_json: str, model_name: str | None) -> None:
    os.environ.update(_CHILD_ENV)
    try:
        from pipeline.detection.engine import Detector

        detector = Detector(DetectionConfig.model_validate_json(config_json), model_name=model_name)
        detector.warm_up()
        detector.keep_learned()
    except BaseException as exc:  # report start-up failures (model missing) to the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        conn.close()
        return
    conn.send(("ready", detector.model_name))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            break
        if msg is None:
            break
        if isinstance(msg, dict):  # a task (PooledDetector.run_task)
            try:
                result = _run_task(msg["task"], detector, msg["payload"])
                conn.send(("ok", result, detector.take_learned()))
            except Exception as exc:  # the type only: a task's message may quote its data
                conn.send(("error", type(exc).__name__))
            except KeyboardInterrupt:
                break
            continue
        texts, entities, shared = msg
        try:
            if shared:
                detector.add_templates(shared)
            result = detector.analyze_batch(texts, entities=entities)
            conn.send(("ok", [[(s.type, s.start, s.end, s.score, s.recognizer) for s in spans]
                              for spans in result], detector.take_learned()))
        except Exception as exc:  # the parent raises it; the child stays usable
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        except KeyboardInterrupt:
            break
    conn.close()


def _run_task(task: str, detector, payload):
    """Call ``task`` (``"pipeline.<module>:<function>"``) with ``(detector, payload)``."""
    import importlib

    module, _, name = task.partition(":")
    if not module.startswith("pipeline."):
        raise ValueError("a task must be a function of the pipeline package")
    return getattr(importlib.import_module(module), name)(detector, payload)


class _Child:
    __slots__ = ("conn", "proc")

    def __init__(self, ctx, config_json: str, model_name: str | None):
        parent, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_child_main, args=(child, config_json, model_name),
                                name="privacy-detector", daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent

    def wait_ready(self, timeout: float) -> str:
        if not self.conn.poll(timeout):
            raise DetectorPoolError(f"a detector process did not start within {timeout:.0f} s")
        status, detail = self.conn.recv()
        if status != "ready":
            raise DetectorPoolError(f"a detector process failed to start: {detail}")
        return detail

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout)
        self.conn.close()


# -- the pool -----------------------------------------------------------------------------------
class PooledDetector:
    """The :class:`~pipeline.detection.Detector` interface over ``processes`` children.

    ``analyze_batch(texts, *, entities=None) -> list[list[EntitySpan]]``, same results as
    one in-process detector (the children share what their template caches learn, through
    this process: see the module doc). Calls are serialised
    (one batch at a time uses every child). :meth:`close` stops the children; it also runs
    at interpreter exit.
    """

    def __init__(self, config: DetectionConfig | None = None, *, model_name: str | None = "auto",
                 processes: int | None = None, start_timeout: float = 180.0):
        self.config = config or DetectionConfig()
        self.processes = processes or default_processes()
        self._model_arg = model_name
        self._config_json = self.config.model_dump_json()
        self._ctx = mp.get_context("spawn")
        self._lock = threading.Lock()
        self._start_timeout = start_timeout
        self._children: list[_Child] = []
        #: Routing hints (see :func:`_route_hint`) of texts routed so far (LRU, at most
        #: ``config.template_cache``): a hint not in it marks a template no child knows yet.
        self._hints: OrderedDict[str, None] = OrderedDict()
        #: Per child: templates other children learned, handed over with its next batch.
        self._pending: list[list] = [[] for _ in range(self.processes)]
        try:
            self._children = [_Child(self._ctx, self._config_json, model_name)
                              for _ in range(self.processes)]
            names = {c.wait_ready(start_timeout) for c in self._children}
        except BaseException:
            self.close()
            raise
        self.model_name = names.pop()
        self._finalizer = weakref.finalize(self, _stop_all, self._children)
        atexit.register(self._finalizer)

    # -- public -------------------------------------------------------------------------------
    def analyze_batch(self, texts: Sequence[str], *,
                      entities: Sequence[str] | None = None) -> list[list[EntitySpan]]:
        """Entities per text, in input order (see :meth:`Detector.analyze_batch`)."""
        texts = list(texts)
        if not texts:
            return []
        ents = list(entities) if entities is not None else None
        with self._lock:
            if not self._children:
                raise DetectorPoolError("the detector pool is closed")
            groups = self._route(texts, self._hints_of(texts, ents))
            msgs = [(group, ([texts[i] for i in group], ents,
                             self._take_pending(k) if group else []))
                    for k, group in enumerate(groups)]
            sent = [self._send(k, msg) if group else False
                    for k, (group, msg) in enumerate(msgs)]
            out: list = [None] * len(texts)
            failed: DetectorPoolError | None = None
            for k, (group, msg) in enumerate(msgs):
                if not group:
                    continue
                try:
                    rows, learned = self._receive(k, msg, sent[k])
                except DetectorPoolError as exc:  # read every other reply first
                    failed = failed or exc
                    continue
                for i, spans in zip(group, rows):
                    out[i] = [EntitySpan(*row) for row in spans]
                self._learn(k, learned)
            if failed is not None:
                raise failed
        return out

    _task_turn = 0

    def run_task(self, task: str, payload):
        """Run ``task`` (``"pipeline.<module>:<function>"``, called as ``function(detector,
        payload)``) in one child process, next to its detector; returns what it returns
        (``payload`` and the result are pickled). For CPU work that needs the detector
        (anonymisation and its rescans): it leaves the calling process, in one round trip.
        Children take tasks in turn; calls are serialised with :meth:`analyze_batch`. A child
        that dies is restarted and the task sent again (tasks must be idempotent). Raises
        :class:`DetectorPoolError` (the task raised: its exception type only, or the child
        died twice)."""
        msg = {"task": task, "payload": payload}
        with self._lock:
            if not self._children:
                raise DetectorPoolError("the detector pool is closed")
            k = self._task_turn % len(self._children)
            self._task_turn += 1
            result, learned = self._receive(k, msg, self._send(k, msg))
            self._learn(k, learned)
        return result

    def child_pids(self) -> list[int]:
        """Process ids of the children (for RSS accounting)."""
        return [c.proc.pid for c in self._children if c.proc.pid is not None]

    def close(self) -> None:
        """Stop every child. Idempotent."""
        children, self._children = self._children, []
        _stop_all(children)

    def __enter__(self) -> PooledDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------
    def _send(self, k: int, msg) -> bool:
        try:
            self._children[k].conn.send(msg)
            return True
        except (OSError, ValueError, EOFError):
            return False

    def _receive(self, k: int, msg, sent: bool):
        for attempt in (0, 1):
            if sent:
                try:
                    reply = self._children[k].conn.recv()
                except (OSError, EOFError):
                    reply = ("died", None)
                status, payload = reply[0], reply[1]
                if status == "ok":
                    return payload, reply[2]
                if status == "error":
                    raise DetectorPoolError(f"detection failed in a child process: {payload}")
            if attempt:
                break
            log.warning("detector process %d died; restarting it", k)
            self._restart(k)
            sent = self._send(k, msg)
        raise DetectorPoolError("a detector process died twice on the same batch")

    def _restart(self, k: int) -> None:
        old = self._children[k]
        try:
            old.stop(timeout=1.0)
        except Exception:
            pass
        child = _Child(self._ctx, self._config_json, self._model_arg)
        self._children[k] = child
        child.wait_ready(self._start_timeout)
        # the new child's template cache is empty: what it lacks it learns again

    def _hints_of(self, texts: list[str], ents: list[str] | None) -> list[str | None]:
        """The routing hint of each text (``None``: route freely; always when the template
        cache or NER is off for this request)."""
        wanted = ents if ents is not None else self.config.entities
        if self.config.template_cache <= 0 or not needs_ner(self.config, wanted):
            return [None] * len(texts)
        return [_route_hint(text) for text in texts]

    def _route(self, texts: list[str], hints: list[str | None]) -> list[list[int]]:
        """Input indices per child, each list ascending; about equal characters per child
        (all on the first child below ``_MIN_SPLIT_CHARS`` per child). All texts with a
        routing hint not seen before go to one child (the texts of a template new to the
        pool: its NER runs once, not once per child); the others are spread freely."""
        n = len(texts)
        groups: list[list[int]] = [[] for _ in self._children]
        sizes = [len(t) + 16 for t in texts]  # per-text overhead counts too
        parts = max(1, min(len(groups), n, sum(sizes) // _MIN_SPLIT_CHARS or 1))
        seen = self._hints
        new: dict[str, list[int]] = {}
        free: list[int] = []
        for i, hint in enumerate(hints):
            if hint is None:
                free.append(i)
            elif hint in seen:
                seen.move_to_end(hint)
                free.append(i)
            else:
                new.setdefault(hint, []).append(i)
        for hint in new:
            seen[hint] = None
        limit = max(self.config.template_cache, 1)
        while len(seen) > limit:
            seen.popitem(last=False)
        if parts == 1:
            groups[0] = list(range(n))
            return groups
        loads = [0] * parts
        for idx in sorted(new.values(), key=len, reverse=True):
            k = loads.index(min(loads))
            groups[k].extend(idx)
            loads[k] += sum(sizes[i] for i in idx)
        for i in free:
            k = loads.index(min(loads))
            groups[k].append(i)
            loads[k] += sizes[i]
        if new:
            for group in groups:
                group.sort()
        return groups

    def _take_pending(self, k: int) -> list:
        """The templates child ``k`` has not been given yet (cleared)."""
        pending = self._pending[k]
        if not pending:
            return pending
        self._pending[k] = []
        return pending

    def _learn(self, k: int, learned: list) -> None:
        """Queue the templates child ``k`` learned for every other child (at most
        ``config.template_cache`` per child, the newest)."""
        if not learned:
            return
        limit = self.config.template_cache
        for j, pending in enumerate(self._pending):
            if j != k:
                pending.extend(learned)
                if len(pending) > limit:
                    del pending[:len(pending) - limit]


def _route_hint(text: str) -> str | None:
    """A cheap stand-in for the template key, to route texts: the first four purely
    alphabetic words of the first 80 characters (values, which hold digits, are skipped).
    Texts of one template share it; a few templates may share one. ``None`` when there is
    none, or for a text too long for the template cache."""
    if len(text) > TEMPLATE_MAX_CHARS:
        return None
    words = [w for w in text[:80].split() if w.isalpha()]
    return " ".join(words[:4]) if words else None


def _stop_all(children: list[_Child]) -> None:
    for c in list(children):
        try:
            c.conn.send(None)
        except (OSError, ValueError):
            pass
    for c in list(children):
        try:
            c.stop()
        except Exception:
            pass
    children.clear()
