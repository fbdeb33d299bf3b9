"""CPU-heavy detection in child processes: :class:`PooledDetector`.

spaCy NER is the bulk of the work and holds the GIL, so one process uses one core. The
pool starts ``processes`` children, each with one :class:`~pipeline.detection.Detector`,
and splits every ``analyze_batch`` call into one list of texts per child, of about equal
characters. Model memory is shared (``share_models``, default): the first child is started
with ``spawn`` (no fork of the caller, which may hold threads), loads and warms its detector
without starting a thread (lingua's batch call is not used there), and forks the other
children; they share the models' pages copy-on-write (measured on this VM: ~300 MB resident
in each child, ~120-150 MB proportional share, ~35 MB private). A child that dies is
replaced by a separately spawned one.
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
import signal
import threading
import time
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
    on two or more cores. The children share their models' memory (forked from the first,
    ~35 MB private each), and a child waits part of the time for its next batch while the
    serving process decodes and routes, so one per core keeps the cores busy: measured on the
    2-core VM (``agents.bench.run_e2e``, 3,000 events with SMS bodies), one child 547-681
    events/s, two 820-848, three 734; worker memory 515 MB (one child) and 498 MB PSS (two).
    0 on a single core: detection runs in the serving process. Cores are those of the CPU
    limit of the container (cgroup quota, rounded up) when one is set, so a pod limited to 2
    CPUs on a large node starts two children, not one per node core."""
    if not cores:
        cores = default_processes()
        quota = cgroup_cpu_limit()
        if quota is not None:
            cores = max(1, min(cores, quota))
    return cores if cores > 1 else 0


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
    :func:`worker_processes` children (two on two cores; in-process on one core),
    1 = in-process, N = N children."""
    n = worker_processes() if not processes else processes
    if n >= 1 and (n > 1 or not processes):
        return PooledDetector(config, model_name=model_name, processes=n)
    from pipeline.detection.engine import Detector

    return Detector(config, model_name=model_name)


# -- the child --------------------------------------------------------------------------------
def _child_main(conn, config_json: str, model_name: str | None, siblings: Sequence = ()) -> None:
    """A detector child: build and warm one detector, then serve ``conn`` until told to stop.

    ``siblings`` (pipe ends of the other children, see :class:`PooledDetector`
    ``share_models``): once warm, this child forks one process per sibling end; each serves
    its own end with a copy-on-write view of this child's memory, so the models (lingua's
    n-gram tables, spaCy's weights) are in memory once for all of them.

    Ctrl-C in a terminal signals the whole process group: the child ignores SIGINT (its
    forks too), so the parent alone decides to stop and closes the pool; otherwise each child
    would die with ``KeyboardInterrupt`` and the parent restart it before it stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(_CHILD_ENV)
    try:
        from pipeline.detection.engine import Detector

        detector = Detector(DetectionConfig.model_validate_json(config_json), model_name=model_name)
        detector.warm_up()
        detector.keep_learned()
    except BaseException as exc:  # report start-up failures (model missing) to the parent
        for c in (conn, *siblings):
            try:
                c.send(("error", f"{type(exc).__name__}: {exc}", None))
                c.close()
            except (OSError, ValueError):
                pass
        return
    if siblings:
        conn = _fork_siblings(conn, list(siblings), detector)
    conn.send(("ready", detector.model_name, os.getpid()))
    _serve(conn, detector)
    conn.close()


def _fork_siblings(conn, siblings: list, detector):
    """Fork one process per end in ``siblings`` (which must be this process's only thread);
    returns the end this process then serves: ``conn`` in the original, the sibling's own end
    in each fork. A sibling that cannot be forked (another thread is running, or ``fork``
    fails) reports ``nofork`` on its end; the parent then starts a separate child for it."""
    import gc
    import signal

    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 0
    if threads != 1 or not hasattr(os, "fork"):
        for c in siblings:
            c.send(("nofork", f"{threads} threads", None))
            c.close()
        return conn
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forks are reaped by the kernel
    gc.collect()
    gc.freeze()  # the collector leaves the shared heap's pages alone
    for k, own in enumerate(siblings):
        try:
            pid = os.fork()
        except OSError as exc:  # out of processes or memory: a separate child instead
            own.send(("nofork", type(exc).__name__, None))
            own.close()
            continue
        if pid == 0:
            code = 0
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                for other in (conn, *siblings[:k], *siblings[k + 1:]):
                    other.close()
                own.send(("ready", detector.model_name, os.getpid()))
                _serve(own, detector)
                own.close()
            except BaseException:
                code = 1
            finally:
                os._exit(code)  # never return into the original's stack
        own.close()
    return conn


def _serve(conn, detector) -> None:
    """Answer batches and tasks on ``conn`` until ``None``, EOF or an interrupt."""
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


def _run_task(task: str, detector, payload):
    """Call ``task`` (``"pipeline.<module>:<function>"``) with ``(detector, payload)``."""
    import importlib

    module, _, name = task.partition(":")
    if not module.startswith("pipeline."):
        raise ValueError("a task must be a function of the pipeline package")
    return getattr(importlib.import_module(module), name)(detector, payload)


class _Child:
    """One detector child as the pool sees it: its pipe end and its process (``proc``, a
    ``multiprocessing`` process of this one, or ``None`` for a fork of another child: then
    only its ``pid`` is known)."""

    __slots__ = ("conn", "pid", "proc")

    def __init__(self, conn, proc=None):
        self.conn = conn
        self.proc = proc
        self.pid: int | None = proc.pid if proc is not None else None

    @classmethod
    def start(cls, ctx, config_json: str, model_name: str | None, forks: int = 0) -> list[_Child]:
        """Start one child process; with ``forks``, it forks that many more once its models
        are loaded. Returns the ``1 + forks`` children (not yet ready)."""
        pairs = [ctx.Pipe(duplex=True) for _ in range(1 + forks)]
        proc = ctx.Process(target=_child_main,
                           args=(pairs[0][1], config_json, model_name, [c for _, c in pairs[1:]]),
                           name="privacy-detector", daemon=True)
        proc.start()
        for _, child_end in pairs:
            child_end.close()
        return [cls(pairs[0][0], proc), *(cls(parent_end) for parent_end, _ in pairs[1:])]

    def wait_ready(self, timeout: float) -> str:
        """The model name once the child is ready. Raises :class:`DetectorPoolError`
        (start-up failed or took longer than ``timeout`` seconds) or :class:`_NoFork`."""
        try:
            if not self.conn.poll(timeout):
                raise DetectorPoolError(f"a detector process did not start within {timeout:.0f} s")
            status, detail, pid = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise DetectorPoolError("a detector process exited while starting") from exc
        if status == "nofork":
            raise _NoFork(detail)
        if status != "ready":
            raise DetectorPoolError(f"a detector process failed to start: {detail}")
        self.pid = pid
        return detail

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.is_alive()
        if self.pid is None:
            return False
        try:
            with open(f"/proc/{self.pid}/stat") as fh:
                return fh.read().rpartition(")")[2].split()[0] != "Z"  # a zombie has exited
        except (OSError, IndexError):
            pass
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        if self.proc is not None:
            self.proc.join(timeout)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(timeout)
        elif self.pid is not None:
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            if self.alive():
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except OSError:
                    pass
        self.conn.close()


class _NoFork(Exception):
    """A child could not fork its siblings (it was not single-threaded)."""


# -- the pool -----------------------------------------------------------------------------------
class PooledDetector:
    """The :class:`~pipeline.detection.Detector` interface over ``processes`` children.

    ``analyze_batch(texts, *, entities=None) -> list[list[EntitySpan]]``, same results as
    one in-process detector (the children share what their template caches learn, through
    this process: see the module doc). Calls are serialised
    (one batch at a time uses every child). :meth:`close` stops the children; it also runs
    at interpreter exit.
    """

    #: calls wait for other processes with this process's GIL released (see
    #: :attr:`pipeline.processing.Processor.detects_out_of_process`)
    out_of_process = True

    def __init__(self, config: DetectionConfig | None = None, *, model_name: str | None = "auto",
                 processes: int | None = None, start_timeout: float = 180.0,
                 share_models: bool = True):
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
        #: children forked from the first one (sharing its models' memory)
        self.shared_children = 0
        try:
            self.model_name = self._start_children(share_models and self.processes > 1)
        except BaseException:
            self.close()
            raise
        self._finalizer = weakref.finalize(self, _stop_all, self._children)
        atexit.register(self._finalizer)

    def _start_children(self, share: bool) -> str:
        """Start the children; returns the model name. With ``share``, one child is spawned
        and forks the others once its models are loaded and warm (copy-on-write: lingua's
        n-gram tables and spaCy's weights are then in memory once, ~35 MB of private memory
        per further child instead of ~300 MB, measured with ``/proc/<pid>/smaps_rollup``);
        a fork it cannot make is started as a separate child instead."""
        if share:
            self._children = _Child.start(self._ctx, self._config_json, self._model_arg,
                                          forks=self.processes - 1)
        else:
            self._children = [c for _ in range(self.processes)
                              for c in _Child.start(self._ctx, self._config_json, self._model_arg)]
        names = set()
        for k, child in enumerate(self._children):
            try:
                names.add(child.wait_ready(self._start_timeout))
                if share and k:
                    self.shared_children += 1
            except _NoFork:
                child.conn.close()
                self._children[k] = _Child.start(self._ctx, self._config_json, self._model_arg)[0]
                names.add(self._children[k].wait_ready(self._start_timeout))
        return names.pop()

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
        return [c.pid for c in self._children if c.pid is not None]

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
        child = _Child.start(self._ctx, self._config_json, self._model_arg)[0]
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
    """Stop every child: all are told at once, then each is waited for, the forks before the
    child they were forked from (which reaps them)."""
    for c in list(children):
        try:
            c.conn.send(None)
        except (OSError, ValueError):
            pass
    for c in reversed(list(children)):
        try:
            c.stop()
        except Exception:
            pass
    children.clear()
