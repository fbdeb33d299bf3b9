"""The pipelined batch loop (``agents.app.run_pipelined``) and the worker's detector default,
without a broker: batch N+1 is processed while batch N is delivered, and a batch's offsets
become safe to commit only once its outputs are delivered, in batch order."""

from __future__ import annotations

import asyncio

import pytest

from agents.app import BatchOutcome, PreparedBatch, run_pipelined


class _Message:
    """Faust's ``Message`` reference counting: the conductor takes one reference per stream;
    the last ack marks the offset safe to commit (``Consumer.ack``)."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.refcount = 1
        self.acked = False
        self.safe = False

    def incref(self, n: int = 1) -> None:
        self.refcount += n

    def ack(self, consumer=None) -> bool:
        if not self.acked:
            self.refcount = max(0, self.refcount - 1)
            if not self.refcount:
                self.acked = self.safe = True
                return True
        return False


class _Event:
    def __init__(self, offset: int) -> None:
        self.message = _Message(offset)

    def ack(self) -> bool:
        return self.message.ack()


async def _take(batches, gap: float = 0.0):
    """``take_events``: yields each batch and acks its events when the loop body returns."""
    for batch in batches:
        try:
            yield batch
        finally:
            for ev in batch:
                ev.ack()
        await asyncio.sleep(gap)


class _Handler:
    def __init__(self, prepare_s: float = 0.05, deliver_s: float = 0.1, fail: frozenset[int] = frozenset()):
        self.prepare_s, self.deliver_s, self.fail = prepare_s, deliver_s, fail
        self.name = "classify"
        self.log: list[tuple[str, str, int]] = []

    async def prepare(self, messages):
        first = messages[0].offset
        self.log.append(("prepare", "start", first))
        await asyncio.sleep(self.prepare_s)
        self.log.append(("prepare", "end", first))
        return PreparedBatch([first], 0.0)

    async def deliver(self, batch):
        first = batch.results[0]
        self.log.append(("deliver", "start", first))
        await asyncio.sleep(self.deliver_s)
        self.log.append(("deliver", "end", first))
        return BatchOutcome([], 1 if first in self.fail else 0)


def _batches(n: int, size: int = 3):
    return [[_Event(b * size + i) for i in range(size)] for b in range(n)]


def test_the_next_batch_is_processed_while_the_previous_one_is_delivered():
    handler, batches = _Handler(), _batches(4)
    asyncio.run(run_pipelined(handler, _take(batches)))
    log = handler.log
    # batch 3 was prepared before batch 0's delivery ended
    assert log.index(("prepare", "end", 3)) < log.index(("deliver", "end", 0))
    # deliveries never overlap and follow the batch order
    delivers = [e for e in log if e[0] == "deliver"]
    assert delivers == [("deliver", k, b * 3) for b in range(4) for k in ("start", "end")]
    assert all(ev.message.safe for b in batches for ev in b)


def test_a_batch_is_safe_to_commit_only_after_its_delivery():
    handler, batches = _Handler(prepare_s=0.0, deliver_s=0.3), _batches(1)
    seen = {}

    async def main():
        task = asyncio.ensure_future(run_pipelined(handler, _take(batches)))
        await asyncio.sleep(0.1)  # take_events has acked the batch; its delivery is still running
        seen["during"] = [ev.message.safe for ev in batches[0]]
        await task

    asyncio.run(main())
    assert seen["during"] == [False, False, False]
    assert all(ev.message.safe for ev in batches[0])


def test_an_undelivered_batch_and_every_later_one_are_withheld_and_the_worker_stops():
    handler, batches = _Handler(fail=frozenset({3})), _batches(4)
    stopped = []

    async def on_failure():
        stopped.append(True)

    asyncio.run(run_pipelined(handler, _take(batches), on_failure=on_failure))
    assert stopped == [True]
    assert all(ev.message.safe for ev in batches[0])
    for batch in batches[1:]:  # batch 1 failed; 2 and 3 come after it: never committed
        assert not any(ev.message.safe for ev in batch)
    # a batch after a failed one is not delivered at all
    assert ("deliver", "start", 9) not in handler.log


def test_stopping_lets_the_batches_in_flight_finish_within_the_grace_period():
    handler, batches = _Handler(prepare_s=0.2, deliver_s=0.2), _batches(2)

    async def main():
        task = asyncio.ensure_future(run_pipelined(handler, _take(batches), grace_s=5))
        await asyncio.sleep(0.3)  # batch 0 delivering, batch 1 being prepared
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert ("deliver", "end", 3) in handler.log
    # both delivered and acked (take_events' own ack of batch 1 comes when its generator is
    # closed, as Faust closes the stream when the worker stops)
    assert all(ev.message.safe for b in batches for ev in b)


def test_a_batch_outliving_the_grace_period_stays_uncommitted():
    handler, batches = _Handler(prepare_s=0.0, deliver_s=2.0), _batches(1)

    async def main():
        task = asyncio.ensure_future(run_pipelined(handler, _take(batches), grace_s=0.1))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert not any(ev.message.safe for ev in batches[0])


@pytest.mark.parametrize("cores, children", [(1, 0), (2, 2), (3, 3), (8, 8)])
def test_worker_detector_default_is_one_child_per_core(cores, children):
    from pipeline.detection import pool

    assert pool.worker_processes(cores) == children


def test_worker_detector_default_builds(monkeypatch):
    from pipeline.detection import pool


    built = []

    class FakePool:
        def __init__(self, config, *, model_name, processes):
            built.append(("pool", processes))

    class FakeDetector:
        def __init__(self, config, *, model_name):
            built.append(("in-process", None))

    from pipeline.detection import engine

    monkeypatch.setattr(pool, "PooledDetector", FakePool)
    monkeypatch.setattr(engine, "Detector", FakeDetector)
    monkeypatch.setattr(pool, "default_processes", lambda: 2)
    pool.build_worker_detector(None, processes=0)  # automatic on 2 cores: two children
    pool.build_worker_detector(None, processes=1)  # explicit 1: in the serving process
    pool.build_worker_detector(None, processes=3)
    monkeypatch.setattr(pool, "default_processes", lambda: 1)
    pool.build_worker_detector(None, processes=0)  # one core: in the serving process
    assert built == [("pool", 2), ("in-process", None), ("pool", 3), ("in-process", None)]


def test_the_consumer_waits_at_most_fetch_max_wait_ms():
    from agents.app import _fetch_wait_consumer

    consumer_cls = _fetch_wait_consumer(50)
    assert consumer_cls.fetch_max_wait_ms == 50
    from faust.transport.drivers import aiokafka as driver

    assert issubclass(consumer_cls, driver.Consumer)


def test_the_worker_default_follows_the_container_cpu_limit(monkeypatch):
    import io

    from pipeline.detection import pool

    files = {"/sys/fs/cgroup/cpu.max": "200000 100000\n"}

    def fake_open(path, *a, **k):
        if path in files:
            return io.StringIO(files[path])
        raise FileNotFoundError(path)

    monkeypatch.setattr(pool, "open", fake_open, raising=False)
    monkeypatch.setattr(pool, "default_processes", lambda: 16)
    assert pool.cgroup_cpu_limit() == 2
    assert pool.worker_processes() == 2  # a 2-CPU pod on a 16-core node: two children
    files["/sys/fs/cgroup/cpu.max"] = "150000 100000\n"
    assert pool.cgroup_cpu_limit() == 2  # 1.5 CPUs rounds up
    files["/sys/fs/cgroup/cpu.max"] = "max 100000\n"
    assert pool.cgroup_cpu_limit() is None
    assert pool.worker_processes() == 16
    del files["/sys/fs/cgroup/cpu.max"]
    files["/sys/fs/cgroup/cpu/cpu.cfs_quota_us"] = "400000\n"
    files["/sys/fs/cgroup/cpu/cpu.cfs_period_us"] = "100000\n"
    assert pool.cgroup_cpu_limit() == 4
    assert pool.worker_processes() == 4
