"""The Processor: Kafka records in, messages to produce out (pure; no Kafka imports).

``agents/`` stays thin (quix-streams' idea, STYLE.md): it consumes, calls
:meth:`Processor.process_batch` off the event loop, produces the outputs and counts the
stats. Everything that decides is here and testable without a broker.
"""

from __future__ import annotations

import gc
import logging
from collections import Counter
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

from pipeline.anonymise import Anonymiser
from pipeline.classify import Classifier, ClassifyInput, classify_input, fill_scans, scan_texts
from pipeline.codec import decode_object, encode
from pipeline.consent import ConsentReader, merge
from pipeline.deadletter import build_deadletter
from pipeline.drift import DriftMonitor
from pipeline.errors import DecodeError
from pipeline.logsafety import cap_text_logging_libraries
from pipeline.policy import Policy, load_policy
from pipeline.records import OutputMessage, ProcessResult, RecordStats, SourceRecord, TopicSpec
from pipeline.router import Router, headers_for
from pipeline.settings import Settings
from pipeline.shredding import KeyRing, master_keys
from pipeline.topics import TopicNames

log = logging.getLogger("privacy_pipeline.processing")


#: Allocations between young-generation collections once the heap is frozen (see
#: :meth:`Processor.from_settings`).
GC_YOUNG_THRESHOLD = 20_000


class Processor:
    """Classifies, routes and anonymises batches of records.

    Build with :meth:`from_settings` (loads the policy and spaCy, about 2 s). The instance
    holds no per-record state: deleted accounts, consent flags and data keys are passed in by
    the caller (the worker's Faust tables and key state), so any number of workers can share
    a consumer group.
    """

    def __init__(self, policy: Policy, settings: Settings, detector=None, *, schema_check=None):
        cap_text_logging_libraries()
        self.policy = policy
        self.settings = settings
        self.topics: TopicNames = settings.topic_names
        self.classifier = Classifier(
            policy, detector,
            secret_key=settings.secret_hash_key.get_secret_value().encode(),
            secret_key_id=settings.secret_hash_key_id,
            schema_check=schema_check,
        )
        self.router = Router(policy, self.topics, prefix=settings.topic_prefix)
        self.consent = ConsentReader(policy.consent)
        masters, current, self.dev_master_key = master_keys(settings)
        #: master keys only (no data keys): batches get a view of the caller's key state
        self.keyring = KeyRing(masters, current)
        self.drift = DriftMonitor.from_policy(policy)
        self.anonymiser = Anonymiser.from_settings(policy, settings)
        self.anonymiser.detector = detector  # rescans unscanned text before anonymising
        self.anonymiser.in_detector = settings.anonymise_in_detector
        self.max_bytes = settings.producer_max_request_size
        self.input_topics: dict[str, str] = self.topics.input_families()

    @classmethod
    def from_settings(cls, settings: Settings, *, detector=None, policy: Policy | None = None,
                      freeze_heap: bool = True) -> "Processor":
        """Load the policy (``settings.policy`` or the packaged default) and the detector.

        ``freeze_heap``: once everything is loaded, move the objects alive (spaCy, Presidio,
        the policy: hundreds of thousands of long-lived objects) out of the cyclic garbage
        collector's sight (``gc.freeze``). Its full collections otherwise walk that heap every
        few thousand records: about 70 us per structured event, more than the classification
        itself. Objects freed later by reference counting are still freed. The youngest
        generation's threshold is raised to :data:`GC_YOUNG_THRESHOLD` allocations (CPython's
        default 700): each record allocates a few hundred short-lived containers, almost all
        freed by reference counting, and young collections cost about 4.5% of the structured
        path (same-process A/B, 2026-12-01).

        Raises :class:`~pipeline.errors.PolicyError` or
        :class:`~pipeline.errors.ModelNotInstalledError`.
        """
        from pipeline.detection.pool import build_detector
        from schemas import SchemaChecker

        policy = policy or load_policy(settings.policy)
        if detector is None:
            detector = build_detector(policy.detection, model_name=settings.spacy_model,
                                      processes=settings.detector_processes or None)
        processor = cls(policy, settings, detector, schema_check=SchemaChecker())
        if freeze_heap:
            gc.collect()
            gc.freeze()
            threshold, *older = gc.get_threshold()
            gc.set_threshold(max(threshold, GC_YOUNG_THRESHOLD), *older)
        return processor

    # -- topics --------------------------------------------------------------------------
    def topic_specs(self) -> list[TopicSpec]:
        """Every topic the worker needs, with partitions, ``retention.ms`` and ``cleanup.policy``
        from the policy (categories for retention topics, ``transit`` for the others)."""
        t, p, n = self.topics, self.policy, self.settings.partitions
        specs = [TopicSpec(name, n, {}) for name in (t.messages, t.calls, t.accounts)]
        for cat, spec in p.categories.items():
            specs.append(TopicSpec(t.retention(cat), n, _cfg(spec.retention_ms, spec.cleanup_policy)))
        for name, topic in (("anonymise", t.anonymise), ("deadletter", t.deadletter),
                            ("anonymised", t.anonymised), ("carrier", t.carrier),
                            ("carrier", t.carrier_address), ("audit", t.audit),
                            ("deletions", t.deletions)):
            spec = p.transit.get(name)
            specs.append(TopicSpec(topic, n, _cfg(spec.retention_ms, spec.cleanup_policy) if spec else {}))
        # issue 7: wrapped data keys (compacted: a tombstone shreds), legal holds, purpose routes
        specs.append(TopicSpec(t.keys, n, _cfg(-1, "compact")))
        if p.legal_hold is not None:
            specs.append(TopicSpec(t.legal_hold, n, _cfg(p.legal_hold.retention_ms, p.legal_hold.cleanup_policy)))
        for route in p.routes.purposes:
            specs.append(TopicSpec(self.settings.topic_prefix + route.topic, n,
                                   _cfg(route.retention_ms, route.cleanup_policy)))
        return specs

    # -- classification ------------------------------------------------------------------
    def process_batch(self, records: Sequence[SourceRecord], *,
                      deleted_accounts: Container[str] = frozenset(),
                      event_type: str | None = None,
                      consents: Mapping[str, Mapping[str, bool]] | None = None,
                      data_keys: Mapping[str, Mapping[str, bytes]] | None = None) -> list[ProcessResult]:
        """One :class:`ProcessResult` per record, same order. Never raises for bad input:
        undecodable values become dead letters, tombstones on ``cpaas.accounts.v1`` become
        deletions, other tombstones are skipped (counted). ``event_type`` overrides the
        family the input topic implies (offline ``--event-type``).

        Issue 7 state, read but never changed (a batch's own changes apply to its later
        records): ``deleted_accounts``; ``consents`` (account id -> consent flags, for
        purpose routes; a record that changes them says so in ``ProcessResult.consents``);
        ``data_keys`` (account id -> {dek id: key}, the worker's key state). With
        ``data_keys`` the record of sealed routes is encrypted with the account's data key,
        a new key comes back as a key-topic message placed before the first output that uses
        it, and a deletion tombstones the account's keys. Without it (offline) nothing is
        sealed.

        The three steps are also callable one by one (the worker overlaps the detector step
        of a batch with the routing of the previous one): :meth:`classify_stage`,
        :meth:`detect_stage`, :meth:`route_stage`."""
        staged = self.classify_stage(records, event_type=event_type)
        self.detect_stage(staged)
        return self.route_stage(staged, deleted_accounts=deleted_accounts, consents=consents,
                                data_keys=data_keys)

    def process_batches(self, batches: Iterable[tuple[Sequence[SourceRecord], str | None]]
                        ) -> Iterator[list[ProcessResult]]:
        """:meth:`process_batch` over ``(records, event_type)`` pairs, yielding each batch's
        results in order; for offline callers, with no batch state (no deleted accounts,
        consents or data keys). With a detector in other processes (the pool) and
        ``settings.detect_in_parallel``, the steps overlap as in the worker: batch N+1 is
        classified and its detection queued while batch N is in the detector, and batch N is
        routed while N+1 is (a thread waits for the detector; the children never wait for
        this process when it is the faster side). Results are the same as batch by batch
        (classification reads no batch state). Closing the generator early waits for the
        detection in flight."""
        if not self.detects_out_of_process:
            for records, event_type in batches:
                yield self.process_batch(records, event_type=event_type)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="privacy-detect") as executor:
            previous: tuple[StagedBatch, Future] | None = None
            for records, event_type in batches:
                staged = self.classify_stage(records, event_type=event_type)
                detecting = executor.submit(self.detect_stage, staged)
                if previous is not None:
                    previous[1].result()
                    yield self.route_stage(previous[0])
                previous = (staged, detecting)
            if previous is not None:
                previous[1].result()
                yield self.route_stage(previous[0])

    @property
    def detects_out_of_process(self) -> bool:
        """Whether the detector runs in other processes (the pool: its calls release this
        process's GIL while they wait) and ``settings.detect_in_parallel`` is on, so that
        detection may overlap this process's own steps."""
        detector = self.classifier.detector
        return bool(getattr(detector, "out_of_process", False)) and self.settings.detect_in_parallel

    def classify_stage(self, records: Sequence[SourceRecord], *,
                       event_type: str | None = None) -> StagedBatch:
        """Step 1 of :meth:`process_batch`: decode (undecodable values become dead letters)
        and classify, without the detector; reads no batch state. Never raises (a failing
        classification is retried record by record in :meth:`route_stage`)."""
        results: list[ProcessResult | None] = [None] * len(records)
        pending: list[tuple[int, ClassifyInput]] = []
        for i, rec in enumerate(records):
            family = event_type or self.input_topics.get(rec.topic, "auto")
            if rec.value is None:
                continue  # in record order below: a deletion applies to the records after it
            try:
                obj = decode_object(rec.value)
            except DecodeError as exc:
                results[i] = self._deadletter(rec, exc.kind, exc.message)
                continue
            src = None if rec.partition is None else {"topic": rec.topic, "partition": rec.partition,
                                                        "offset": rec.offset}
            pending.append((i, classify_input(obj, family, rec.value, src)))
        staged = StagedBatch(records, event_type, results, pending)
        if pending:
            try:
                staged.envelopes, staged.scan_jobs = self.classifier.classify_batch_deferred(
                    [ci for _, ci in pending])
                if self.classifier.detector is not None:
                    staged.texts = scan_texts(staged.scan_jobs)
            except Exception:
                staged.envelopes = None
        return staged

    def detect_stage(self, staged: StagedBatch) -> None:
        """Step 2 of :meth:`process_batch`: the detector over the batch's texts (the CPU-heavy
        part, in the detector processes with a pool), its spans put into the envelopes. Never
        raises (a failure makes :meth:`route_stage` classify the records again, one by one
        if need be). Runs in any thread when the detector is a pool."""
        if staged.envelopes is None or not staged.texts:
            return
        try:
            spans = self.classifier.detector.analyze_batch(staged.texts)
            if len(spans) != len(staged.texts):
                raise ValueError("the detector gave a result per text")
            fill_scans(staged.scan_jobs, spans)
        except Exception as exc:
            log.warning("batch detection failed (%s); classifying %d records again",
                        type(exc).__name__, len(staged.pending))
            staged.envelopes = None

    def route_stage(self, staged: StagedBatch, *,
                    deleted_accounts: Container[str] = frozenset(),
                    consents: Mapping[str, Mapping[str, bool]] | None = None,
                    data_keys: Mapping[str, Mapping[str, bytes]] | None = None) -> list[ProcessResult]:
        """Step 3 of :meth:`process_batch`: route each record with the batch state (arguments
        as for :meth:`process_batch`); one :class:`ProcessResult` per record, same order."""
        records, event_type, results, pending = staged.records, staged.event_type, staged.results, staged.pending
        state = _BatchState(deleted_accounts, consents or {},
                            None if data_keys is None else self.keyring.for_batch(data_keys))
        envelopes = staged.envelopes
        if envelopes is None:  # classification or detection failed for the batch: again, isolated
            envelopes = self._classify_isolated([ci for _, ci in pending])
        env_of = {i: env for (i, _), env in zip(pending, envelopes)}  # (envelope, layout) or error
        for i, rec in enumerate(records):
            if results[i] is not None:
                continue
            if rec.value is None:
                results[i] = self._tombstone(rec, event_type or self.input_topics.get(rec.topic, "auto"), state)
                continue
            env = env_of[i]
            if isinstance(env, Exception):
                results[i] = self._deadletter(rec, "classify_error",
                                              f"classification failed with {type(env).__name__}")
                continue
            env, layout = env
            try:
                results[i] = self._route(rec, env, state, layout)
            except Exception as exc:  # a routing bug must not lose the record
                log.exception("routing failed for topic=%s partition=%s offset=%s",
                              rec.topic, rec.partition, rec.offset)
                results[i] = self._deadletter(rec, "route_error", f"routing failed with {type(exc).__name__}")
        return results  # type: ignore[return-value]

    def _classify_isolated(self, items: list[ClassifyInput]) -> list:
        """``(envelope, layout or None)`` per item, or the exception that item raised."""
        if not items:
            return []
        try:
            return self.classifier.classify_batch_planned(items)
        except Exception:
            log.warning("batch classification failed; retrying %d records one by one", len(items))
        out = []
        for item in items:
            try:
                out.append(self.classifier.classify_batch_planned([item])[0])
            except Exception as exc:
                log.error("classification failed: %s (topic=%s offset=%s)", type(exc).__name__,
                          (item.source or {}).get("topic"), (item.source or {}).get("offset"))
                out.append(exc)
        return out

    def _route(self, rec: SourceRecord, env: dict, state: "_BatchState", layout=None) -> ProcessResult:
        account = env.get("account_id")
        router = self.router
        deletion = router.is_deletion(env, layout)
        deleted = account is not None and state.is_deleted(account)
        flags = None
        if account and env["event_type"] == "account" and not deletion and not deleted \
                and (layout is None or router.compiled(env, layout).consent_marks):
            update = self.consent.flags(env["record"])
            if update:
                flags = state.set_consents(account, update)
        new_keys: list[OutputMessage] = []
        seal = None
        if state.ring is not None and account and not deleted and not deletion:
            seal = partial(self._seal, state.ring, account, new_keys)
        outputs = router.route(env, input_key=rec.key, deleted=deleted,
                               consents=state.consents_of(account), seal=seal, layout=layout)
        if deletion and account:
            outputs.extend(self._shred(account, state))
        outcome = "deletion" if deletion else "classified"
        # a new data key is produced (and awaited by the worker) before the content it seals
        outputs = self._fit_all(rec, outputs, new_keys)
        stats = _layout_stats(env, outputs, layout, self.topics.deadletter) if layout is not None \
            else _stats(env, outputs, None, self.topics.deadletter)
        flagged = self.drift.sample(env, layout)
        if flagged:
            stats.drift.update(flagged)
        return ProcessResult(rec, outputs, outcome, env["event_type"], env["event_id"], account, stats, env, flags)

    # -- crypto-shredding (issue 7) ------------------------------------------------------
    def _seal(self, ring: KeyRing, account: str, new_keys: list[OutputMessage], msg: dict) -> None:
        """Replace ``msg["record"]`` by ``msg["record_encrypted"]`` (the account's data key)."""
        blob, new = ring.encrypt(account, encode(msg.pop("record")))
        if new is not None:
            new_keys.append(OutputMessage(self.topics.keys, new[0], new[1]))
        msg["record_encrypted"] = blob

    def _shred(self, account: str, state: "_BatchState") -> list[OutputMessage]:
        """A deletion: later records of the batch see the account deleted; tombstones for
        every data key of the account the key state knows."""
        state.deleted.add(account)
        if state.ring is None:
            return []
        return [OutputMessage(self.topics.keys, k, None) for k in state.ring.forget(account)]

    def _fit(self, rec: SourceRecord, out: OutputMessage) -> OutputMessage:
        """``out``, or the dead letter that replaces it when it is over the producer's size
        limit (:meth:`_fit_all` of one output)."""
        return self._fit_all(rec, (out,), [])[0]

    def _fit_all(self, rec: SourceRecord, outputs, into: list[OutputMessage]) -> list[OutputMessage]:
        """``into`` extended with ``outputs``, each replaced by a dead letter when over the
        producer's size limit; returns ``into``. Counted: the key and value bytes plus, per
        header, its name's characters and its value's bytes; the count must leave
        :data:`_SIZE_MARGIN` bytes under ``max_bytes``. One loop for a record's outputs (the
        serving path routes ~5 per record)."""
        limit = self.max_bytes - _SIZE_MARGIN
        for out in outputs:
            value, key = out.value, out.key
            size = (len(value) if value else 0) + (len(key) if key else 0)
            for k, v in out.headers:
                size += len(k) + len(v)
            into.append(out if size <= limit else self._too_large(rec, out, size))
        return into

    def _too_large(self, rec: SourceRecord, out: OutputMessage, size: int) -> OutputMessage:
        """The dead letter that replaces ``out``, ``size`` bytes as counted by :meth:`_fit`
        (the message names the topic and sizes only)."""
        dl = build_deadletter(rec, "output_too_large",
                              f"output for {out.topic} is {size} bytes, over the producer limit of "
                              f"{self.max_bytes}", max_bytes=self.max_bytes)
        return OutputMessage(self.topics.deadletter, rec.key, encode(dl),
                             _dl_headers(out.headers, "output_too_large") + _carried(rec))

    def reject(self, rec: SourceRecord, kind: str, message: str) -> ProcessResult:
        """The dead-letter result for ``rec`` with the error ``kind`` and ``message``, for a
        record its caller refuses before classification (offline: a line not in the
        declared ``--format``). ``message`` must not quote the record's content."""
        return self._deadletter(rec, kind, message)

    def _deadletter(self, rec: SourceRecord, kind: str, message: str) -> ProcessResult:
        dl = build_deadletter(rec, kind, message, max_bytes=self.max_bytes)
        headers = (("event-id", ("sha256:" + dl["raw_sha256"][:32]).encode()),
                   ("deadletter-reason", kind.encode()),
                   ("privacy-policy", self.policy.version.encode()), ("envelope-version", b"1"))
        headers += _carried(rec)
        out = OutputMessage(self.topics.deadletter, rec.key, encode(dl), headers)
        return ProcessResult(rec, [out], "deadletter", None, None, None,
                             RecordStats(deadletter_reason=kind, routes=[self.topics.deadletter]))

    def _tombstone(self, rec: SourceRecord, family: str, state: "_BatchState | None" = None) -> ProcessResult:
        if family == "account" and rec.key:
            account = rec.key.decode("utf-8", "replace")
            env = {"envelope_version": 1, "event_id": f"tombstone:{account}", "account_id": account,
                   "policy_version": self.policy.version,
                   "classified_at": self.classifier.clock().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"}
            event = self.router.deletion_event(env)
            event["signal"] = "tombstone"
            hdrs = headers_for(env, {})
            outputs = [OutputMessage(self.topics.deletions, rec.key, encode(event), hdrs),
                       OutputMessage(self.topics.retention_account, rec.key, None, hdrs),
                       *self.router.deletion_audits(env, key=rec.key),
                       *(self._shred(account, state) if state is not None else [])]
            return ProcessResult(rec, outputs, "deletion", "account", env["event_id"], account,
                                 RecordStats(routes=[o.topic for o in outputs]))
        return ProcessResult(rec, [], "tombstone_skipped", family if family != "auto" else None)

    # -- anonymisation -------------------------------------------------------------------
    def anonymise_batch(self, records: Sequence[SourceRecord]) -> list[ProcessResult]:
        """Envelopes from ``privacy.anonymise.v1`` -> anonymised envelopes for
        ``privacy.anonymised.v1`` (keyed by the account pseudonym). A value that is not an
        envelope becomes a dead letter. The batch's rescans go to the detector in one call;
        with a pool of detector processes and ``settings.anonymise_in_detector`` the batch is
        anonymised in one of them (``Anonymiser.anonymise_batch_values``)."""
        results = []
        for rec, item in zip(records, self.anonymiser.anonymise_batch_values([r.value for r in records])):
            if item[0] != "ok":
                results.append(self._deadletter(rec, item[1], item[2]))
                continue
            _, token, value, event_id, categories, entities, policy_version, event_type = item
            key = token.encode() if token else rec.key
            headers = (("event-id", str(event_id).encode()), ("privacy-categories", categories.encode()),
                       ("privacy-entities", entities.encode()), ("privacy-policy", policy_version.encode()),
                       ("envelope-version", b"1"))
            out = self._fit(rec, OutputMessage(self.topics.anonymised, key, value, headers))
            results.append(ProcessResult(rec, [out], "classified", event_type, event_id,
                                         None, RecordStats(routes=[out.topic])))
        return results


class StagedBatch:
    """A batch between the steps of :meth:`Processor.process_batch` (opaque to callers):
    the records, dead letters so far, the records to classify, their envelopes (``None``
    when classification or detection failed) and the detector's texts and jobs."""

    __slots__ = ("envelopes", "event_type", "pending", "records", "results", "scan_jobs", "texts")

    def __init__(self, records: Sequence[SourceRecord], event_type: str | None,
                 results: list, pending: list):
        self.records, self.event_type, self.results, self.pending = records, event_type, results, pending
        self.envelopes: list | None = []
        self.scan_jobs: list = []
        self.texts: list[str] = []


class _BatchState:
    """Issue 7 state during one batch: the caller's mappings plus this batch's changes."""

    __slots__ = ("base_deleted", "deleted", "base_consents", "consents", "ring")

    def __init__(self, deleted: Container[str], consents: Mapping[str, Mapping[str, bool]],
                 ring: KeyRing | None):
        self.base_deleted, self.deleted = deleted, set()
        self.base_consents, self.consents = consents, {}
        self.ring = ring

    def is_deleted(self, account: str) -> bool:
        return account in self.deleted or account in self.base_deleted

    def consents_of(self, account: str | None) -> Mapping[str, bool] | None:
        if account is None:
            return None
        if account in self.consents:
            return self.consents[account]
        return self.base_consents.get(account)

    def set_consents(self, account: str, update: Mapping[str, bool]) -> dict[str, bool]:
        flags = merge(self.consents_of(account), update)
        self.consents[account] = flags
        return flags


def _cfg(retention_ms: int, cleanup: str) -> dict[str, str]:
    return {"retention.ms": str(retention_ms), "cleanup.policy": cleanup}


#: Bytes an output must leave under ``producer_max_request_size`` (the producer's own
#: framing of the message: record batch header, lengths, timestamps).
_SIZE_MARGIN = 512

#: Input headers a dead letter carries over: ``replay-attempt`` (set by ``privacy-pipeline
#: replay``) so the attempt count survives another failure and a poison record stops.
REPLAY_ATTEMPT_HEADER = "replay-attempt"
_CARRIED_HEADERS = (REPLAY_ATTEMPT_HEADER,)


def _carried(rec: SourceRecord) -> tuple[tuple[str, bytes], ...]:
    return tuple((k, v) for k, v in (rec.headers or ()) if k in _CARRIED_HEADERS)


def _dl_headers(headers, kind: str):
    kept = tuple((k, v) for k, v in headers if k in ("event-id", "privacy-policy", "envelope-version"))
    return kept + (("deadletter-reason", kind.encode()),)


def _counter() -> Counter:
    """An empty :class:`~collections.Counter` without the Python-level ``__init__``."""
    return Counter.__new__(Counter)


def _layout_stats(env: dict, outputs: list[OutputMessage], layout,
                  deadletter_topic: str | None) -> RecordStats:
    """:func:`_stats` for an envelope with its ``layout`` (same result): the counts that
    depend on decisions only are the layout's own (``fields``, ``unknown_pointers``: shared,
    read-only, see :class:`~pipeline.records.RecordStats`); per record, the entities of the entries
    that may hold some (``layout.entity_entries``) are counted (or come from the
    layout's :meth:`~pipeline.plans.Layout.entity_view`), and a ``deadletter-reason``
    header is looked for only when an output goes to ``deadletter_topic`` (every output when
    it is ``None``)."""
    counts = layout.field_counts
    view = layout.entity_view(env["fields"])
    if view is not None:  # the entities of shared entries, counted once
        ents = view.counts
    else:
        ents = _counter()
        for entry in layout.entity_entries(env["fields"]):
            for e in entry["entities"]:
                t = e["type"]
                ents[t] = ents.get(t, 0) + 1
    routes = [o.topic for o in outputs]
    st = RecordStats(counts, ents, layout.unknown_fields, layout.unknown_pointers, None, _counter(), routes)
    if deadletter_topic is None or deadletter_topic in routes:
        st.deadletter_reason = _deadletter_reason(outputs, deadletter_topic)
    return st


def _deadletter_reason(outputs: list[OutputMessage], deadletter_topic: str | None) -> str | None:
    """The ``deadletter-reason`` header of the first output to ``deadletter_topic`` (any
    topic when ``None``) that carries one, decoded; ``None`` when none does."""
    for o in outputs:
        if (deadletter_topic is None or o.topic == deadletter_topic) and o.headers:
            reason = dict(o.headers).get("deadletter-reason")
            if reason:
                return reason.decode()
    return None


def _stats(env: dict, outputs: list[OutputMessage], layout=None, deadletter_topic: str | None = None) -> RecordStats:
    """The record's :class:`RecordStats`. With the envelope's ``layout`` the counts that
    depend on decisions only come precomputed; with ``deadletter_topic`` only outputs to it
    are looked at for a ``deadletter-reason`` header (the only ones that carry it)."""
    if layout is not None:
        return _layout_stats(env, outputs, layout, deadletter_topic)
    from pipeline.pointers import mask_pointer

    st = RecordStats()
    for ptr, f in env["fields"].items():
        st.fields[(f["category"], f["source"])] += 1
        for e in f["entities"]:
            st.entities[e["type"]] += 1
        if f["source"] != "rule":
            st.unknown_fields += 1
            st.unknown_pointers.append(mask_pointer(ptr))
    st.routes = [o.topic for o in outputs]
    st.deadletter_reason = _deadletter_reason(outputs, deadletter_topic)
    return st

