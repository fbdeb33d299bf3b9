"""Every worker's copy of the key topic (crypto-shredding, issue 7).

The wrapped per-account data keys live in the compacted key topic (``privacy.keys.v1``, key
``<account id>/<dek id>``; a tombstone shreds). Every worker must know every key, whichever
worker created it, so this is not a Faust table (its changelog writes are not ordered with
our own produce calls, and a key must be delivered *before* the content it seals): each worker
runs a plain aiokafka consumer with manual assignment of every partition (no consumer group),
from the beginning, and applies each message to a :class:`~pipeline.shredding.KeyRing`.

* ``ready`` is set once the consumer reached the end offsets it saw at start: the classify
  agent waits for it, so a restarted worker does not create a second key for an account.
* Keys this worker creates are applied as soon as they are delivered (:meth:`apply`), not
  only when they come back from the topic.
* Reconciliation (:meth:`reconcile`, after every poll): a key of an account in the
  deleted-accounts table is tombstoned, whoever created it. This covers records that another
  worker sealed before the deletion reached it (a key created there after the deleting worker
  wrote its tombstones). After a master-key rotation, keys wrapped with an old master key are
  re-wrapped with the current one (then the old key can be retired).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Container, Iterable
from typing import Any

from pipeline.records import OutputMessage
from pipeline.settings import Settings
from pipeline.shredding import KeyRing

log = logging.getLogger(__name__)

__all__ = ["KeyState", "aiokafka_config"]


def aiokafka_config(settings: Settings) -> dict[str, Any]:
    """aiokafka client keyword arguments from the settings (security included)."""
    from agents.topics import CLIENT_ID, _bootstrap, _check_security, ssl_context

    _check_security(settings)
    conf: dict[str, Any] = {
        "bootstrap_servers": _bootstrap(settings),
        "client_id": CLIENT_ID + "-keys",
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol.startswith("SASL_"):
        conf.update(sasl_mechanism=settings.sasl_mechanism, sasl_plain_username=settings.sasl_username,
                    sasl_plain_password=settings.sasl_password.get_secret_value())
    ctx = ssl_context(settings)
    if ctx is not None:
        conf["ssl_context"] = ctx
    return conf


class KeyState:
    """The key topic read into a :class:`KeyRing` (``ring.data_keys`` is what
    ``process_batch(data_keys=...)`` gets)."""

    def __init__(self, settings: Settings, topic: str, ring: KeyRing) -> None:
        self.settings = settings
        self.topic = topic
        self.ring = ring
        self.ready = asyncio.Event()
        self.applied = 0

    def apply(self, outputs: Iterable[OutputMessage]) -> None:
        """Apply key-topic messages this worker produced (delivered)."""
        for out in outputs:
            if out.topic == self.topic and out.key is not None:
                self.ring.apply(out.key, out.value)

    async def reconcile(self, send: Callable[[OutputMessage], Awaitable[Any]],
                        deleted: Callable[[], Container[str]]) -> int:
        """Tombstone the keys of deleted accounts; re-wrap keys of retired master keys.
        Returns how many messages were written."""
        gone = deleted()
        out = [OutputMessage(self.topic, k, None)
               for account in [a for a in list(self.ring.data_keys) if a in gone]
               for k in self.ring.forget(account)]
        out += [OutputMessage(self.topic, k, v) for k, v in self.ring.stale()]
        for msg in out:
            await (await send(msg))
            if msg.value is not None:
                self.ring.apply(msg.key, msg.value)
        if out:
            log.info("key state: wrote %d key messages (shredded keys of deleted accounts, re-wrapped keys)",
                     len(out))
        return len(out)

    async def run(self, send: Callable[[OutputMessage], Awaitable[Any]],
                  deleted: Callable[[], Container[str]], *, poll_ms: int = 500) -> None:
        """Consume the key topic until cancelled."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                                    key_deserializer=None, value_deserializer=None,
                                    **aiokafka_config(self.settings))
        await consumer.start()
        try:
            parts = None
            for _ in range(300):
                await consumer.topics()
                parts = consumer.partitions_for_topic(self.topic)
                if parts:
                    break
                await asyncio.sleep(0.1)
            if not parts:
                raise RuntimeError(f"key topic {self.topic} has no partitions")
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            pending = {tp for tp, off in end.items() if off > 0}
            while True:
                batches = await consumer.getmany(*tps, timeout_ms=poll_ms, max_records=5000)
                for tp, msgs in batches.items():
                    for m in msgs:
                        if m.key is not None:
                            self.ring.apply(bytes(m.key), bytes(m.value) if m.value is not None else None)
                            self.applied += 1
                if not self.ready.is_set():
                    for tp in list(pending):
                        if await consumer.position(tp) >= end[tp]:
                            pending.discard(tp)
                    if not pending:
                        self.ready.set()
                        log.info("key state: %d key messages read, %d accounts with keys", self.applied,
                                 len(self.ring.data_keys))
                if self.ready.is_set():
                    try:
                        await self.reconcile(send, deleted)
                    except Exception as exc:  # retried after the next poll
                        log.warning("key state: reconciliation failed: %s", type(exc).__name__)
        finally:
            await consumer.stop()
