"""Producing a batch's outputs with one record batch per topic partition.

A batch of 128 input records gives about 600 output messages. aiokafka's ``send`` is a
coroutine per message (metadata check, partitioner, accumulator, a future each), and faust's
``Producer.send`` wraps it in another: together about 13-17 µs of the serving process's CPU
per message, measured in session 4. aiokafka's public batch API (``create_batch``,
``BatchBuilder.append``, ``send_batch``) builds the same Kafka record batches with one
coroutine and one future per topic partition: 6-8 µs per message, and the serving process's
one GIL also runs the consumer, the routing and the metrics.

The partition of a message is the one aiokafka would choose (the worker's partitioner, murmur2
of the key as the Java client, a random available partition for a key-less message), and
messages to one partition keep their order, so consumers see what per-message sends give.
A delivery failure fails every message of its record batch (each is dead-lettered, as a failed
per-message send is).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pipeline.records import OutputMessage

log = logging.getLogger("privacy_pipeline.produce")

__all__ = ["BatchSender"]


class BatchSender:
    """``await sender.send_many(outputs) -> list[Awaitable]``: one awaitable per output, in
    order, resolved when the output's record batch is acknowledged (it raises the delivery
    error otherwise; an output whose batch could not be queued gets an already-failed
    awaitable). Build with :meth:`for_producer`.

    ``producer`` is an ``aiokafka.AIOKafkaProducer`` (started); ``partitioner`` is called as
    aiokafka calls its partitioner: ``(key bytes | None, all partitions (sorted list),
    available partitions (list)) -> partition``.
    """

    def __init__(self, producer: Any, partitioner: Callable[[bytes | None, list[int], list[int]], int]):
        self._producer = producer
        self._partitioner = partitioner

    @classmethod
    def for_producer(cls, producer: Any, partitioner: Callable | None = None) -> BatchSender | None:
        """A sender over faust's or aiokafka's started producer, or ``None`` when it has no
        batch API (another transport): the caller then sends message by message.
        ``partitioner`` defaults to the producer's own."""
        aio = producer
        ensure = getattr(producer, "_ensure_producer", None)  # faust's aiokafka driver
        if ensure is not None:
            aio = ensure()
        needed = ("create_batch", "send_batch", "partitions_for", "client")
        if not all(hasattr(aio, name) for name in needed):
            return None
        part = partitioner or getattr(aio, "_partitioner", None)
        if part is None:
            return None
        return cls(aio, part)

    async def send_many(self, outputs: Sequence[OutputMessage]) -> list[Awaitable]:
        """Queue ``outputs`` (see the class doc). Never raises for a delivery problem: a
        topic without metadata or a full queue fails the awaitables of its messages."""
        producer = self._producer
        cluster = producer.client.cluster
        partitions: dict[str, tuple[list[int], list[int]] | BaseException] = {}
        groups: dict[tuple[str, int], list[int]] = {}
        out: list[Awaitable | None] = [None] * len(outputs)
        for i, msg in enumerate(outputs):
            topic = msg.topic
            parts = partitions.get(topic)
            if parts is None:
                try:
                    await producer.partitions_for(topic)  # waits for the topic's metadata
                    parts = (sorted(cluster.partitions_for_topic(topic) or ()),
                             list(cluster.available_partitions_for_topic(topic) or ()))
                    if not parts[0]:
                        raise KeyError("no partitions in the cluster metadata")
                except Exception as exc:
                    parts = exc
                partitions[topic] = parts
            if isinstance(parts, BaseException):
                out[i] = _failed(parts)
                continue
            partition = self._partitioner(msg.key, parts[0], parts[1] or parts[0])
            groups.setdefault((topic, partition), []).append(i)
        for (topic, partition), idx in groups.items():
            for chunk, fut in await self._send_partition(topic, partition, [outputs[i] for i in idx]):
                for j in chunk:
                    out[idx[j]] = fut
        return out  # type: ignore[return-value]

    async def _send_partition(self, topic: str, partition: int, msgs: list[OutputMessage]
                              ) -> list[tuple[range, Awaitable]]:
        """``msgs`` in as many record batches as their size needs, in order; returns
        ``(indices into msgs, awaitable)`` per record batch."""
        producer = self._producer
        done: list[tuple[range, Awaitable]] = []
        start = 0
        while start < len(msgs):
            batch = producer.create_batch()
            end = start
            while end < len(msgs):
                m = msgs[end]
                if batch.append(key=m.key, value=m.value, timestamp=None, headers=list(m.headers)) is None:
                    break  # full: the rest goes in the next record batch
                end += 1
            if end == start:  # cannot happen for messages within max_request_size: fail it alone
                done.append((range(start, start + 1),
                             _failed(ValueError("message larger than a record batch"))))
                start += 1
                continue
            batch.close()  # sent as it is: no linger, nothing appended by per-message sends
            try:
                fut = await producer.send_batch(batch, topic, partition=partition)
            except Exception as exc:
                fut = _failed(exc)
            done.append((range(start, end), fut))
            start = end
        return done


def _failed(exc: BaseException) -> asyncio.Future:
    fut = asyncio.get_running_loop().create_future()
    fut.set_exception(exc)
    fut.exception()  # retrieved here: awaiting it raises; no "never retrieved" warning
    return fut
