"""``BatchSender`` on the embedded broker: the messages a batch send delivers are the ones
per-message sends deliver (same partition for a key, same order per partition, keys,
values, tombstones, headers), in as many record batches as their size needs."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from agents.app import CachedPartitioner
from agents.produce import BatchSender
from pipeline.records import OutputMessage

pytestmark = pytest.mark.broker

PARTITIONS = 3


def _outputs(topics: list[str]) -> list[OutputMessage]:
    """A table of outputs: many keys over every topic, a key-less message, tombstones,
    headers of every shape, values from empty to larger than a record batch."""
    outs = []
    for i in range(240):
        topic = topics[i % len(topics)]
        key = f"AC{i % 17:032d}".encode()
        value = b'{"n":%d}' % i
        headers = (("event-id", b"E%d" % i), ("privacy-categories", b"usage"))
        if i % 29 == 0:
            value = None  # a tombstone
            headers = ()
        elif i % 31 == 0:
            value = b""
        elif i % 53 == 0:
            value = b"x" * 40_000  # larger than the 16 KB record batch below: a batch of its own
        outs.append(OutputMessage(topic, key, value, headers))
    outs.append(OutputMessage(topics[0], None, b'{"keyless":true}', ()))
    return outs


def _expected(outs: list[OutputMessage]) -> dict[tuple[str, int], list[tuple]]:
    """Per (topic, partition), in send order: what per-message sends with the worker's
    partitioner give (murmur2 of the key, the Java client's choice)."""
    part = CachedPartitioner()
    want: dict[tuple[str, int], list[tuple]] = {}
    for o in outs:
        if o.key is None:
            continue  # a random partition: checked on its own
        p = part(o.key, list(range(PARTITIONS)), list(range(PARTITIONS)))
        want.setdefault((o.topic, p), []).append((o.key, o.value, tuple(o.headers)))
    return want


async def _send_and_read(bootstrap: str, topics: list[str], outs: list[OutputMessage]):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, partitioner=CachedPartitioner(),
                                max_batch_size=16_384, max_request_size=1_048_576, acks="all")
    await producer.start()
    try:
        sender = BatchSender.for_producer(producer)
        assert sender is not None
        futures = await sender.send_many(outs)
        assert len(futures) == len(outs)
        results = await asyncio.gather(*futures)
        batches = len({id(f) for f in futures})
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    got: dict[tuple[str, int], list[tuple]] = {}
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        deadline = asyncio.get_running_loop().time() + 30
        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in tps])

        while await behind():
            assert asyncio.get_running_loop().time() < deadline, "messages missing"
            for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                for m in msgs:
                    got.setdefault((tp.topic, tp.partition), []).append(
                        (m.key, m.value, tuple((k, v) for k, v in m.headers)))
    finally:
        await consumer.stop()
    return got, results, batches


def test_batch_send_delivers_what_per_message_sends_deliver(broker):
    topics = [f"produce-test-{uuid.uuid4().hex[:8]}-{n}" for n in range(3)]
    outs = _outputs(topics)
    got, results, batches = asyncio.run(_send_and_read(broker.bootstrap, topics, outs))
    keyless = [(k, v, h) for msgs in got.values() for (k, v, h) in msgs if k is None]
    assert keyless == [(None, b'{"keyless":true}', ())]
    got = {tp: [m for m in msgs if m[0] is not None] for tp, msgs in got.items()}
    assert {tp: msgs for tp, msgs in got.items() if msgs} == _expected(outs)
    # fewer record batches than messages, more than topic partitions (the 40 KB values and
    # the 16 KB batch size split some partitions)
    assert PARTITIONS * len(topics) < batches < len(outs)
    assert all(r is not None for r in results)


def test_a_topic_without_metadata_fails_its_messages_only(broker):
    """Messages to a topic the broker cannot give metadata for (an invalid name) get failed
    awaitables; the others are delivered; nothing raises."""
    from aiokafka import AIOKafkaProducer

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=3000,
                                    partitioner=CachedPartitioner())
        await producer.start()
        try:
            topic = f"produce-test-{uuid.uuid4().hex[:8]}"
            from aiokafka.admin import AIOKafkaAdminClient, NewTopic

            admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic(topic, 1, 1)])
            finally:
                await admin.close()
            sender = BatchSender.for_producer(producer)
            outs = [OutputMessage(topic, b"k", b"v1"), OutputMessage("bad topic name!", b"k", b"v"),
                    OutputMessage(topic, b"k", b"v2")]
            futures = await sender.send_many(outs)
            return await asyncio.gather(*futures, return_exceptions=True)
        finally:
            await producer.stop()

    ok1, bad, ok2 = asyncio.run(run())
    assert isinstance(bad, Exception)
    assert not isinstance(ok1, Exception) and not isinstance(ok2, Exception)


def test_for_producer_without_a_batch_api_is_none():
    class OnlySend:
        async def send(self, *a, **kw):  # pragma: no cover - never called
            raise AssertionError

    assert BatchSender.for_producer(OnlySend()) is None
