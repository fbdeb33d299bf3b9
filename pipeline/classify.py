"""The classifier: every leaf of every record gets a category, its source and its entities.

A chain of small steps per leaf (structlog's idea, STYLE.md), cheapest first:

1. ``rule``    - secrets by name, then the family's rules, the common rules and the CloudEvents
                 attribute rules (JSON Pointer globs over normalised names);
2. ``name``    - name hints for unknown fields (exact normalised name, else its last token);
3. ``detector``- value shape of unknown fields (email, phone, URL, IP, timestamp, id, number,
                 free text);
4. ``default`` - the policy default (content, the most protective).

Steps 1-2 depend only on the field's normalised path, so their decision is cached per
``(family, cloudevents, path)``: a record shape seen once is a dictionary lookup after.
Text fields the policy scans (and unknown free text) go through the detector once per
batch (``Detector.analyze_batch``), so NER runs batched and never on structured fields.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from pipeline import pointers
from pipeline.plans import (
    CHECK_CREDENTIAL,
    CHECK_STRONG,
    CHECK_VALUE,
    FAMILIES_PER_SHAPE,
    LAYOUT_CACHE_SIZE,
    LRU,
    PLAN_CACHE_SIZE,
    DATA_KEY,
    Exotic,
    Layout,
    Plan,
    Shape,
    data_like_keys,
    data_like_signature,
    signature,
)
from pipeline.policy.model import FieldRule, Policy
from pipeline.values import declared_span, value_kind

ENVELOPE_VERSION = 1
#: Families the default policy knows; anything else is classified as ``unknown``.
UNKNOWN_FAMILY = "unknown"


@dataclass(frozen=True, slots=True)
class Decision:
    """How one field was decided: ``category``, ``source`` (rule, name, detector, default),
    ``rule`` name, declared ``entity``, whether to ``scan`` its text, whether it is a ``secret``."""

    category: str
    source: str
    rule: str
    entity: str | None = None
    scan: bool = False
    secret: bool = False


@dataclass(frozen=True, slots=True)
class ClassifyInput:
    """One decoded record to classify.

    ``family`` is ``message``, ``call``, ``account`` or ``auto``; ``raw`` is the original
    value (for the fallback event id); ``source`` is ``{"topic", "partition", "offset"}``
    or ``None`` offline.
    """

    record: dict
    family: str = "auto"
    raw: bytes = b""
    source: dict | None = None


def _input_maker():
    new = object.__new__
    setters = tuple(ClassifyInput.__dict__[n].__set__ for n in ("record", "family", "raw", "source"))
    set_record, set_family, set_raw, set_source = setters

    def classify_input(record: dict, family: str, raw: bytes, source: dict | None) -> ClassifyInput:
        """``ClassifyInput(record, family, raw, source)``: an equal object, built by the
        slots' setters instead of the frozen dataclass's ``__init__`` (four
        ``object.__setattr__`` calls, about twice the cost), for the serving path's one input
        per record."""
        item = new(ClassifyInput)
        set_record(item, record)
        set_family(item, family)
        set_raw(item, raw)
        set_source(item, source)
        return item

    return classify_input


classify_input = _input_maker()


class SecretHasher:
    """Replaces secret values: keyed HMAC-SHA256 (``hash``) or a marker (``remove``).

    Output: ``"[secret:hmac-sha256:<key id>:<32 hex>]"`` or ``"[secret:removed]"``; the
    hash lets downstream services compare secrets without seeing them.
    """

    __slots__ = ("_key", "_key_id", "_action")

    def __init__(self, key: bytes, key_id: str, action: str = "hash"):
        self._key, self._key_id, self._action = key, key_id, action

    def __call__(self, value) -> str:
        if self._action == "remove":
            return "[secret:removed]"
        digest = hmac.new(self._key, str(value).encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return f"[secret:hmac-sha256:{self._key_id}:{digest[:32]}]"


class FieldDecider:
    """Steps 1 and 2 (rules, secrets by name, name hints), cached per normalised path.

    Paths with a key that looks like data (an email, a run of five digits: see
    :func:`pipeline.plans.data_like_keys`; callers pass ``keep=False``) are decided every
    time and never kept, so the cache (at most ``max_cache`` paths, cleared when full)
    holds no phone number or email.
    """

    __slots__ = ("policy", "_cache", "_account_names_strong", "_secret_names", "_hint_index", "_max_cache", "_generic",
                 "_qualifiers", "_rule_indexes")

    def __init__(self, policy: Policy, max_cache: int = 200_000):
        self.policy = policy
        self._cache: dict[tuple, Decision | None] = {}
        #: the ids of a rule list's rules -> its :class:`_RuleIndex` (built on first use)
        self._rule_indexes: dict[tuple, _RuleIndex] = {}
        self._secret_names = frozenset(policy.secrets.names)
        #: names that are account data wherever they stand (notice N-account: names, contact
        #: information, billing address), even below a usage rule's subtree
        self._account_names_strong = _STRONG_ACCOUNT_NAMES
        self._hint_index: dict[str, tuple] = {}
        for hint in policy.name_hints:
            for name in hint.names:
                self._hint_index.setdefault(name, (hint.category, hint.entity))
        self._generic = frozenset(policy.name_context.generic)
        self._qualifiers: dict[str, str] = {}
        for q in policy.name_context.qualifiers:
            for tok in q.tokens:
                self._qualifiers.setdefault(tok, q.category)
        self._max_cache = max_cache

    def decide(self, family: str, cloudevents: bool, norm: tuple[str, ...],
               keep: bool = True) -> Decision | None:
        """The rule or name decision for a normalised path, or ``None`` (unknown by name).

        ``keep=False``: the raw path has a key that looks like data; the decision is not
        kept (normalisation can hide it: ``ann@example.com`` -> ``ann_example_com``)."""
        key = (family, cloudevents, norm)
        try:
            return self._cache[key]
        except KeyError:
            pass
        decision = self._decide(family, cloudevents, norm)
        if not keep:  # a phone number or email used as a key: never kept
            return decision
        if len(self._cache) >= self._max_cache:
            self._cache.clear()
        self._cache[key] = decision
        return decision

    def _decide(self, family: str, cloudevents: bool, norm: tuple[str, ...]) -> Decision | None:
        policy = self.policy
        if cloudevents:
            if norm and norm[0] == "data":
                norm = norm[1:]
            else:
                rule = self._first_rule(policy.cloudevents_rules, norm)
                if rule is not None:
                    return _rule_decision(rule)
        name = _last_key(norm)
        # a credential's key, or any key above it: {"credentials": {"user": .., "pass": ..}}
        if any(seg != "#" and self.is_secret_name(seg) for seg in norm):
            return Decision("account", "rule", "secrets", secret=True)
        fam = policy.families.get(family)
        rule = self._first_rule(fam.rules, norm) if fam is not None else None
        if rule is None:
            rule = self._first_rule(policy.common_rules, norm)
        if rule is not None:
            decision = _rule_decision(rule)
            if (decision.category != "account" and name in self._account_names_strong
                    and not any(p and p[-1] == name for p in rule.compiled)):
                # a rule reaching down a subtree ("/to/**") does not make a customer's name,
                # email or address under it usage: {"to": {"number": .., "email": ..}}
                return Decision("account", "name", "name:account")
            return decision
        return self.hint(norm)

    def _first_rule(self, rules: Sequence[FieldRule], norm: tuple[str, ...]) -> FieldRule | None:
        """:func:`_first_rule` through the list's :class:`_RuleIndex` (same result; paths
        with a data-like key are decided every time, so this is their hot path)."""
        key = tuple(map(id, rules))
        index = self._rule_indexes.get(key)
        if index is None:
            if len(self._rule_indexes) >= 64:  # rule lists changed in place, again and again
                self._rule_indexes.clear()
            index = self._rule_indexes[key] = _RuleIndex(rules)
        return index.first(norm)

    def is_secret_name(self, name: str) -> bool:
        """A normalised key naming a credential: listed whole, or by its last token or its
        last two tokens (``sip_auth_password``, ``x_api_key``)."""
        names = self._secret_names
        if name in names:
            return True
        toks = name.rsplit("_", 2)
        return toks[-1] in names or (len(toks) > 1 and f"{toks[-2]}_{toks[-1]}" in names)

    def hint(self, norm: tuple[str, ...]) -> Decision | None:
        """Step 2, name hints for a field no rule knows (issue 5).

        The exact normalised name first (``first_name``); then its tokens right to left,
        each as a two-token phrase with the token before it (``card_number``) and alone,
        plural ``s`` dropped; a content hint counts only for the last token. A generic token (``name``, ``city``, ``id``, ``url``) is
        decided by the nearest qualifier before it in the name, else in the parent key
        (``/billing/city`` -> account, ``/campaign/name`` and ``chan_name`` -> usage), else
        by its own hint; a generic token without a hint is skipped.
        """
        keys = [seg for seg in norm if seg != "#"]
        if not keys:
            return None
        name = keys[-1]
        hints = self._hint_index
        hit = None if name in self._generic else hints.get(name)
        if hit is not None:
            return Decision(hit[0], "name", f"name:{hit[0]}", entity=hit[1])
        tokens = [t for t in name.split("_") if t]
        # "price_per_message", "number_of_segments": the head noun stands before the preposition
        for i, tok in enumerate(tokens):
            if i > 0 and tok in _PREPOSITIONS:
                tokens = tokens[:i]
                break
        parent = keys[-2].split("_") if len(keys) > 1 else []
        for i in range(len(tokens) - 1, -1, -1):
            tok = tokens[i]
            if i > 0:
                hit = hints.get(f"{tokens[i - 1]}_{tok}")
                if hit is not None:
                    return Decision(hit[0], "name", f"name:{hit[0]}", entity=hit[1])
            base = _singular(tok)
            if tok in self._generic or base in self._generic:
                qual = self._qualifier(tokens[:i], parent, base in _ID_TOKENS)
                if qual is not None:
                    return Decision(qual, "name", f"name:{qual}")
            hit = hints.get(tok) or hints.get(base)
            # a content word that only modifies the name (message_intent, body_length) does
            # not make the field content: only the last token can
            if hit is not None and (hit[0] != "content" or i == len(tokens) - 1):
                return Decision(hit[0], "name", f"name:{hit[0]}", entity=hit[1])
        return None

    def _qualifier(self, before: list[str], parent: list[str], is_id: bool) -> str | None:
        """The category of the nearest qualifier; an id of content (``recording_sid``) is a
        log reference, so content qualifiers do not apply to id tokens."""
        quals = self._qualifiers
        for tok in [*reversed(before), *reversed(parent)]:
            cat = quals.get(tok) or quals.get(_singular(tok))
            if cat is not None and not (is_id and cat == "content"):
                return cat
        return None


_STRONG_ACCOUNT_NAMES = frozenset({
    "email", "email_address", "contact_email", "owner_email", "customer_name", "first_name",
    "last_name", "full_name", "surname", "billing_address", "street", "street_address",
    "street_secondary", "postal_address", "company", "company_name", "friendly_name",
    "customer_email", "account_name", "owner_name",
})

#: Tokens after which a compound name only qualifies its head (``price_per_message``).
_PREPOSITIONS = frozenset({"per", "of"})

#: Generic tokens that name identifiers: never content whatever they identify.
_ID_TOKENS = frozenset({"id", "sid", "uuid"})


def _singular(token: str) -> str:
    if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
        return token[:-1]
    return token


def _first_rule(rules: Sequence[FieldRule], norm: tuple[str, ...]) -> FieldRule | None:
    for rule in rules:
        for pattern in rule.compiled:
            if pointers.glob_match(pattern, norm):
                return rule
    return None


class _RuleIndex:
    """A rule list's patterns by their last segment, for :meth:`first`.

    A pattern ending in a name (``/**/status``) matches only paths ending in that name, so
    for a path only the patterns ending in its last segment or in a wildcard (``*``,
    ``**``) are tried, in the list's order: the same rule as :func:`_first_rule`. Holds
    names from the policy only, never a path's (which may look like data)."""

    __slots__ = ("_by_last", "_rules", "_wild")

    def __init__(self, rules: Sequence[FieldRule]):
        self._rules = tuple(rules)  # keeps the ids the index is looked up by alive
        entries = [(rule, pattern) for rule in self._rules for pattern in rule.compiled]
        self._wild = tuple(e for e in entries if _ends_wild(e[1]))
        names = {pattern[-1] for _rule, pattern in entries if not _ends_wild(pattern)}
        self._by_last = {name: tuple(e for e in entries if _ends_wild(e[1]) or e[1][-1] == name)
                         for name in names}

    def first(self, norm: tuple[str, ...]) -> FieldRule | None:
        """The first rule with a pattern matching ``norm``, or ``None``."""
        candidates = self._by_last.get(norm[-1], self._wild) if norm else self._wild
        for rule, pattern in candidates:
            if pointers.glob_match(pattern, norm):
                return rule
        return None


def _ends_wild(pattern: tuple[str, ...]) -> bool:
    return not pattern or pattern[-1] in ("*", "**")


def _rule_decision(rule: FieldRule) -> Decision:
    return Decision(rule.category, "rule", rule.name, rule.entity, rule.scan, rule.secret)


def _last_key(norm: tuple[str, ...]) -> str | None:
    for seg in reversed(norm):
        if seg != "#":
            return seg
    return None


class Classifier:
    """Turns decoded records into envelopes (DESIGN.md, "Envelope"), a batch at a time.

    ``detector`` is a :class:`~pipeline.detection.Detector` or anything with its
    ``analyze_batch(texts) -> list[list[EntitySpan]]``; ``None`` skips text scanning (only
    for tests of structure). ``schema_check(family, record) -> list[dict]`` lists schema
    mismatches; ``clock`` returns the classification time (UTC).

    What depends only on a record's shape is planned once per shape (:mod:`pipeline.plans`)
    and kept in bounded LRUs: ``plan_cache_size`` shapes (default
    :data:`~pipeline.plans.PLAN_CACHE_SIZE`) and :data:`~pipeline.plans.LAYOUT_CACHE_SIZE`
    layouts. 0: every record takes the generic path, the reference the planned path equals.
    """

    def __init__(
        self,
        policy: Policy,
        detector=None,
        *,
        secret_key: bytes = b"",
        secret_key_id: str = "k0",
        schema_check: Callable[[str, dict], list[dict]] | None = None,
        clock: Callable[[], datetime] | None = None,
        plan_cache_size: int = PLAN_CACHE_SIZE,
    ):
        self.policy = policy
        self.detector = detector
        self.decider = FieldDecider(policy)
        self.hash_secret = SecretHasher(secret_key, secret_key_id, policy.secrets.action)
        self.schema_check = schema_check
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self._id_names = tuple(policy.identity.event_id)
        self._account_names = tuple(policy.identity.account_id)
        pat = policy.identity.account_id_pattern
        self._account_re = re.compile(pat) if pat else None
        self._secret_prefixes = tuple(policy.secrets.value_prefixes)
        #: ``(value hints, {(value kind, default category): Decision})`` (see :meth:`_by_value`)
        self._value_memo: tuple = (None, {})
        #: record shapes -> :class:`~pipeline.plans.Shape` (bounded LRU)
        self.shapes = LRU(plan_cache_size)
        #: ``(plan, overrides)`` -> :class:`~pipeline.plans.Layout` (bounded LRU)
        self.layouts = LRU(LAYOUT_CACHE_SIZE if plan_cache_size > 0 else 0)
        self._planned = plan_cache_size > 0

    # -- family and identity -------------------------------------------------------------
    def infer_family(self, record: dict, event_id: str | None) -> str:
        """The event family of a record (``--event-type auto``): CloudEvents ``type``, then
        the ``sid`` prefix, then the most typical field names; ``unknown`` when nothing fits."""
        family = self._value_family(record, event_id)
        return family if family is not None else self._keys_family(record)

    def _value_family(self, record: dict, event_id: str | None) -> str | None:
        """The family the values say (CloudEvents ``type``, ``sid`` prefix), or ``None``."""
        families = self.policy.families
        ce_type = record.get("type") if _is_cloudevent(record) else None
        if isinstance(ce_type, str):
            low = ce_type.lower()
            for name, fam in families.items():
                if any(t in low for t in fam.cloudevent_types):
                    return name
        if isinstance(event_id, str) and len(event_id) == 34:
            prefix = event_id[:2]
            for name, fam in families.items():
                if prefix in fam.sid_prefixes:
                    return name
        return None

    def _keys_family(self, record: dict) -> str:
        """The family the keys say (depends on the record's shape only)."""
        keys = set()
        for container in _containers(record):
            keys.update(pointers.normalise_name(str(k)) for k in container)
        best = self._best_family(keys)
        if best == UNKNOWN_FAMILY:
            # Deeply nested payloads (webhook batches, entry/changes/value wrappers): every key
            # on every path counts, bounded to the first 2,000 leaves.
            for n, (_ptr, norm, _value) in enumerate(pointers.walk_leaves(record)):
                keys.update(norm)
                if n >= 2000:
                    break
            best = self._best_family(keys)
        return best

    def _best_family(self, keys: set[str]) -> str:
        best, best_score = UNKNOWN_FAMILY, 0
        for name, fam in self.policy.families.items():
            score = sum(1 for n in fam.detect_names if n in keys)
            if score > best_score:
                best, best_score = name, score
        return best

    def find_ids(self, record: dict, raw: bytes) -> tuple[str, str | None]:
        """``(event_id, account_id)`` per DESIGN.md: first identity name found at the top
        level, then in nested containers (``data``, ``payload``...); the event id falls back to
        ``sha256:<32 hex>`` of the raw bytes."""
        found = _named_values(record)
        event_id = _first_named(found, self._id_names)
        account_id = _first_named(found, self._account_names)
        if event_id is None:
            event_id = "sha256:" + hashlib.sha256(raw).hexdigest()[:32]
        if account_id is None and self._account_re is not None and self._account_re.match(event_id):
            account_id = event_id
        return event_id, account_id

    # -- classification ------------------------------------------------------------------
    def classify_batch(self, items: Sequence[ClassifyInput]) -> list[dict]:
        """One envelope per input, same order. Never raises for odd values in a decoded
        object (numbers where text is expected, nulls, unknown nesting)."""
        return [env for env, _layout in self.classify_batch_planned(items)]

    def classify_batch_planned(self, items: Sequence[ClassifyInput]) -> list[tuple[dict, Layout | None]]:
        """Like :meth:`classify_batch`, with each envelope's :class:`~pipeline.plans.Layout`
        (``None`` for records the generic path classified) for the router."""
        out, scan_jobs = self.classify_batch_deferred(items)
        if scan_jobs and self.detector is not None:
            fill_scans(scan_jobs, self.detector.analyze_batch(scan_texts(scan_jobs)))
        return out

    def classify_batch_deferred(self, items: Sequence[ClassifyInput]) -> tuple[list[tuple[dict, Layout | None]], list]:
        """:meth:`classify_batch_planned` without its detector call: ``(envelopes with
        layouts, scan jobs)``. The caller runs the detector over :func:`scan_texts` of the
        jobs (when there is a detector), then :func:`fill_scans` completes the envelopes, so
        the detector's work can overlap other work (the worker routes the previous batch)."""
        out: list[tuple[dict, Layout | None]] = []
        scan_jobs: list[tuple[dict, str, str]] = []  # (field entry, pointer, text)
        now = self.clock().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        if self._planned:
            for item in items:
                out.append(self._classify_planned(item, now, scan_jobs))
        else:
            for item in items:
                out.append((self._classify_one(item, now, scan_jobs), None))
        return out, scan_jobs

    # -- planned path (pipeline/plans.py) ---------------------------------------------------
    def _shape(self, record: dict) -> tuple[Shape, list]:
        """The record's :class:`~pipeline.plans.Shape` (cached) and its leaf values.
        Raises :class:`~pipeline.plans.Exotic` (also for keys that look like data)."""
        sig, vals = signature(record)
        shape = self.shapes.get(sig)
        if shape is None:
            if data_like_signature(sig):
                raise Exotic
            shape = self._build_shape(record)
            if shape.cacheable:
                self.shapes.put(sig, shape)
        return shape, vals

    def _build_shape(self, record: dict) -> Shape:
        ptrs: list[str] = []
        norms: list[tuple[str, ...]] = []
        paths: list[tuple] = []
        _leaf_paths(record, "", (), (), ptrs, norms, paths)
        index = {path: i for i, path in enumerate(paths)}
        cands: dict[str, list[int]] = {}
        for cpath, container in _containers_with_paths(record):
            for k, v in container.items():
                if isinstance(v, (str, int)) and not isinstance(v, bool):
                    cands.setdefault(pointers.normalise_name(str(k)), []).append(index[cpath + (k,)])
        id_cands = tuple(i for name in self._id_names for i in cands.get(name, ()))
        account_cands = tuple(i for name in self._account_names for i in cands.get(name, ()))
        return Shape(tuple(ptrs), tuple(norms), tuple(paths), _is_cloudevent(record), id_cands,
                     account_cands, cacheable=not data_like_keys(paths))

    def _build_plan(self, shape: Shape, family: str, vals: list) -> Plan:
        decide = self.decider.decide
        items = []
        for ptr, norm, value in zip(shape.ptrs, shape.norms, vals):
            d = decide(family, shape.cloudevents, norm, shape.cacheable)
            checks = 0
            if type(value) is str and (d is None or not (d.secret or d.category == "content")):
                checks |= CHECK_CREDENTIAL
            if d is None:
                checks |= CHECK_VALUE
            elif d.source == "name" and d.category != "account" and isinstance(value, str):
                checks |= CHECK_STRONG
            items.append((ptr, d, checks))
        plan = Plan(shape, family, tuple(items))
        if shape.cacheable and len(shape.plans) < FAMILIES_PER_SHAPE:
            shape.plans[family] = plan
        return plan

    def _classify_planned(self, item: ClassifyInput, now: str, scan_jobs: list) -> tuple[dict, Layout | None]:
        record = item.record
        try:
            shape, vals = self._shape(record)
        except (Exotic, RecursionError):  # RecursionError: nesting too deep for the recursive
            return self._classify_one(item, now, scan_jobs), None  # signature; walk is iterative
        event_id = account_id = None
        for i in shape.id_cands:
            v = vals[i]
            if v.__class__ is not str or v:
                event_id = str(v)
                break
        for i in shape.account_cands:
            v = vals[i]
            if v.__class__ is not str or v:
                account_id = str(v)
                break
        if event_id is None:
            event_id = "sha256:" + hashlib.sha256(item.raw).hexdigest()[:32]
        if account_id is None and self._account_re is not None and self._account_re.match(event_id):
            account_id = event_id
        family = item.family
        if family in (None, "", "auto"):
            family = self._value_family(record, event_id)
            if family is None:
                if shape.keys_family is None:
                    shape.keys_family = self._keys_family(record)
                family = shape.keys_family
        plan = shape.plans.get(family)
        if plan is None:
            plan = self._build_plan(shape, family, vals)
        vh = self.policy.value_hints
        default_cat = self.policy.default.category
        secrets: list[str] = []
        overrides = []
        cred = plan.credential_values
        if cred is None or not _may_hold_credential("\0".join(cred(vals))):
            # no value can hold a credential: the plan's shared base entries (one C-level copy
            # of the dict, see pipeline.plans.SHARED_ENTRIES), then the leaves that need more
            # get entries of their own
            fields = plan.base_fields.copy()
            spans = plan.span_entries
            for i, ptr, ent, find in plan.declared:
                span = find(vals[i])
                if span is not None:
                    fields[ptr] = spans.get((ptr, span)) or plan.span_entry(ptr, ent, span)
            for i, ptr, base, checks in plan.dynamic:
                value = vals[i]
                d = base
                if checks:
                    if checks & CHECK_VALUE:
                        d = self._decide_by_value(value, vh, default_cat)
                    else:
                        d = self._strong_value(d, value, vh)
                    if d is not base:
                        overrides.append((i, d))
                if d is base and not d.secret and not d.scan:
                    # the shared base entry is the entry, unless a declared entity is found
                    ent = d.entity
                    if ent is not None:
                        span = declared_span(ent, value)
                        if span is not None:
                            fields[ptr] = spans.get((ptr, span)) or plan.span_entry(ptr, ent, span)
                else:
                    fields[ptr] = _field_entry(d, ptr, value, secrets, scan_jobs)
        else:
            fields = self._planned_fields(plan, vals, secrets, overrides, scan_jobs)
        overrides = tuple(overrides)
        last = plan.last_layout  # the plan's last layout: most records of a shape share one
        if last is not None and last[0] == overrides:
            layout = last[1]
        else:
            key = (plan, overrides)
            layout = self.layouts.get(key)
            if layout is None:
                decisions = [d for _p, d, _c in plan.items]
                for i, d in overrides:
                    decisions[i] = d
                layout = Layout(plan, tuple(decisions), pointers.mask_pointer)
                if shape.cacheable:
                    self.layouts.put(key, layout)
            if shape.cacheable:
                plan.last_layout = (overrides, layout)
        if secrets:
            record = pointers.replace(record, secrets, self.hash_secret)
        schema_errors = self._layout_schema_check(layout, family, record) if self.schema_check else []
        if item.source is not None:
            env = {"envelope_version": ENVELOPE_VERSION, "event_id": event_id, "event_type": family,
                   "account_id": account_id, "policy_version": self.policy.version, "classified_at": now,
                   "source": item.source, "fields": fields, "categories": list(layout.categories), "routes": [],
                   "schema_errors": schema_errors, "record": record}
        else:
            env = {"envelope_version": ENVELOPE_VERSION, "event_id": event_id, "event_type": family,
                   "account_id": account_id, "policy_version": self.policy.version, "classified_at": now,
                   "fields": fields, "categories": list(layout.categories), "routes": [],
                   "schema_errors": schema_errors, "record": record}
        return env, layout

    def _layout_schema_check(self, layout: Layout, family: str, record: dict) -> list[dict]:
        """``schema_check(family, record)``, through the check the checker compiles for the
        layout's records (``for_shape``: same top-level keys and value types, secrets
        replaced alike) when it has one; kept in the layout."""
        kept = layout.schema
        checker = self.schema_check
        if kept is None or kept[0] is not checker:
            for_shape = getattr(checker, "for_shape", None)
            kept = layout.schema = (checker, None if for_shape is None else for_shape(family, record))
        check = kept[1]
        return checker(family, record) if check is None else check(record)

    def _planned_fields(self, plan: Plan, vals: list, secrets: list, overrides: list, scan_jobs: list) -> dict:
        """The field entries of a record some value of which may hold a credential: every
        leaf checked in turn, as :meth:`_classify_one` does."""
        vh = self.policy.value_hints
        default_cat = self.policy.default.category
        fields: dict[str, dict] = {}
        i = -1
        for ptr, base, checks in plan.items:
            i += 1
            value = vals[i]
            d = base
            if checks:
                if checks & CHECK_CREDENTIAL and _holds_credential(value):
                    d = _CREDENTIAL_VALUE
                elif checks & CHECK_VALUE:
                    d = self._decide_by_value(value, vh, default_cat)
                elif checks & CHECK_STRONG:
                    d = self._strong_value(d, value, vh)
                if d is not base:
                    overrides.append((i, d))
            fields[ptr] = _field_entry(d, ptr, value, secrets, scan_jobs)
        return fields

    def _classify_one(self, item: ClassifyInput, now: str, scan_jobs: list) -> dict:
        record = item.record
        event_id, account_id = self.find_ids(record, item.raw)
        family = item.family
        if family in (None, "", "auto"):
            family = self.infer_family(record, event_id)
        cloudevents = _is_cloudevent(record)
        decide = self.decider.decide
        data_key = DATA_KEY.search
        vh = self.policy.value_hints
        default_cat = self.policy.default.category
        fields: dict[str, dict] = {}
        secrets: list[str] = []
        for ptr, norm, value in pointers.walk_leaves(record):
            decision = decide(family, cloudevents, norm, data_key(ptr) is None)
            if type(value) is str and (decision is None or not (decision.secret or decision.category == "content")) \
                    and _holds_credential(value):
                # content (a body) is never rewritten here: it must still reach the operator
                decision = _CREDENTIAL_VALUE
            if decision is None:
                decision = self._decide_by_value(value, vh, default_cat)
            elif decision.source == "name" and decision.category != "account" and isinstance(value, str):
                decision = self._strong_value(decision, value, vh)
            fields[ptr] = _field_entry(decision, ptr, value, secrets, scan_jobs)
        if secrets:
            record = pointers.replace(record, secrets, self.hash_secret)
        schema_errors = self.schema_check(family, record) if self.schema_check else []
        categories = sorted({e["category"] for e in fields.values()})
        env = {
            "envelope_version": ENVELOPE_VERSION,
            "event_id": str(event_id),
            "event_type": family,
            "account_id": None if account_id is None else str(account_id),
            "policy_version": self.policy.version,
            "classified_at": now,
        }
        if item.source is not None:
            env["source"] = item.source
        env.update({"fields": fields, "categories": categories, "routes": [],
                    "schema_errors": schema_errors, "record": record})
        return env

    def _strong_value(self, decision: Decision, value: str, vh) -> Decision:
        """A name hint is weaker than unambiguous value evidence: an email or an account id
        in a field whose name says usage or content is account data, and a media or
        recording URL in a field whose name says usage is content (issue 5)."""
        if "@" in value or value[:2] in vh.account_sid_prefixes or (
                decision.category == "usage" and ("://" in value or "." in value)):
            kind, prefix = value_kind(value, vh.free_text_min_words)
            if kind == "email":
                return self._by_value(vh, None, "strong:email")
            if kind == "sid" and prefix in vh.account_sid_prefixes:
                return self._by_value(vh, None, "strong:account_sid")
            if kind == "media_url" and decision.category == "usage":
                return self._by_value(vh, None, "strong:media_url")
        return decision

    def _decide_by_value(self, value, vh, default_cat: str) -> Decision:
        if isinstance(value, str) and value.startswith(self._secret_prefixes):
            return _SECRET_VALUE
        kind, prefix = value_kind(value, vh.free_text_min_words)
        if kind == "sid":
            kind = "sid:account" if prefix in vh.account_sid_prefixes else "sid"
        return self._by_value(vh, default_cat, kind)

    def _by_value(self, vh, default_cat: str | None, kind: str) -> Decision:
        """The (immutable, shared) decision for a value ``kind`` under value hints ``vh``:
        a frozen dataclass costs about a microsecond to build, several times per record."""
        memo = self._value_memo
        if memo[0] is not vh:
            memo = self._value_memo = (vh, {})
        key = (kind, default_cat)
        d = memo[1].get(key)
        if d is None:
            d = memo[1][key] = self._value_decision(kind, vh, default_cat)
        return d

    @staticmethod
    def _value_decision(kind: str, vh, default_cat: str | None) -> Decision:
        if kind == "strong:email":
            return Decision(vh.email, "detector", "value:email", entity="EMAIL_ADDRESS")
        if kind == "strong:account_sid":
            return Decision("account", "detector", "value:account_sid")
        if kind == "strong:media_url":
            return Decision(vh.media_url, "detector", "value:media_url", entity="URL")
        if kind == "sid:account":
            return Decision("account", "detector", "value:sid")
        if kind == "sid":
            return Decision(vh.sid, "detector", "value:sid")
        if kind == "other":
            return Decision(default_cat, "default", "default")
        if kind == "email":
            return Decision(vh.email, "detector", "value:email", entity="EMAIL_ADDRESS")
        if kind == "phone":
            return Decision(vh.phone, "detector", "value:phone", entity="PHONE_NUMBER")
        if kind == "media_url":
            return Decision(vh.media_url, "detector", "value:media_url", entity="URL")
        if kind == "url":
            return Decision(vh.url, "detector", "value:url", entity="URL")
        if kind == "ip":
            return Decision(vh.ip, "detector", "value:ip", entity="IP_ADDRESS")
        if kind == "timestamp":
            return Decision(vh.timestamp, "detector", "value:timestamp")
        if kind == "number":
            return Decision(vh.number, "detector", "value:number")
        if kind == "boolean":
            return Decision(vh.boolean, "detector", "value:boolean")
        return Decision(vh.free_text, "detector", "value:free_text", scan=vh.scan_free_text)


def scan_texts(scan_jobs: Sequence[tuple[dict, str, str]]) -> list[str]:
    """The texts the detector scans for :meth:`Classifier.classify_batch_deferred`'s jobs."""
    return [_scannable(text) for _, _, text in scan_jobs]


def fill_scans(scan_jobs: Sequence[tuple[dict, str, str]], results: Sequence) -> None:
    """Add the detector's spans (one list of ``EntitySpan`` per job, same order) to the
    jobs' field entries (the envelopes :meth:`Classifier.classify_batch_deferred` made)."""
    for (entry, _ptr, _text), spans in zip(scan_jobs, results):
        entry["entities"].extend(s.to_json() for s in spans)


_SURROGATES = re.compile("[\ud800-\udfff]")


def _scannable(text: str) -> str:
    """``text`` with lone surrogates (valid in JSON escapes, not in UTF-8) replaced by U+FFFD,
    one code point for one, so entity offsets still point into the original."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", text)


_URL_USERINFO = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
_AUTH_SCHEME = re.compile(
    r"\b(?:Bearer|Basic|Digest)\s+(?=[A-Za-z0-9._~+/=-]*\d)[A-Za-z0-9._~+/=-]{8,}|"
    r"\b(?:Bearer|Basic|Digest)\s+[A-Za-z0-9._~+/=-]{20,}")
_CREDENTIAL_VALUE = Decision("account", "detector", "secret-value", secret=True)
_SECRET_VALUE = Decision("account", "detector", "secret-value", secret=True)


def _may_hold_credential(text: str) -> bool:
    """The cheap necessary condition of :func:`_holds_credential` (on one value, or on
    several joined by NUL: then ``False`` means none of them holds a credential)."""
    return ("://" in text and "@" in text) or "Bearer" in text or "Basic" in text or "Digest" in text


def _holds_credential(value: str) -> bool:
    """A value carrying a credential wherever it stands: a URL with a password
    (``https://user:pass@host``) or an HTTP auth scheme and token (``Bearer eyJ...``)."""
    if "://" in value and "@" in value and _URL_USERINFO.search(value):
        return True
    return ("Bearer" in value or "Basic" in value or "Digest" in value) and bool(_AUTH_SCHEME.search(value))


def _is_cloudevent(record: dict) -> bool:
    return "specversion" in record and isinstance(record.get("data"), (dict, list))


_NESTED_CONTAINERS = ("data", "payload", "variables", "channel_data", "event", "object")


def _containers(record: dict):
    """The record and its well-known nested objects, breadth first (max depth 3)."""
    level = [record]
    for _ in range(3):
        nxt = []
        for container in level:
            yield container
            for name in _NESTED_CONTAINERS:
                child = container.get(name)
                if isinstance(child, dict):
                    nxt.append(child)
        level = nxt
        if not level:
            break


def _containers_with_paths(record: dict):
    """:func:`_containers` with each container's raw key path."""
    level = [((), record)]
    for _ in range(3):
        nxt = []
        for path, container in level:
            yield path, container
            for name in _NESTED_CONTAINERS:
                child = container.get(name)
                if isinstance(child, dict):
                    nxt.append((path + (name,), child))
        level = nxt
        if not level:
            break


def _leaf_paths(value, ptr: str, norm: tuple, path: tuple, ptrs: list, norms: list, paths: list) -> None:
    """Pointers, normalised segments and raw key paths of the leaves, as
    :func:`pipeline.pointers.walk_leaves` orders them. Raises
    :class:`~pipeline.plans.Exotic` for non-string keys."""
    stack = [(value, ptr, norm, path)]
    while stack:
        value, ptr, norm, path = stack.pop()
        if isinstance(value, dict) and value:
            for key, child in reversed(list(value.items())):
                if type(key) is not str:
                    raise Exotic
                stack.append((child, ptr + "/" + pointers.escape(key), norm + (pointers.normalise_name(key),),
                              path + (key,)))
        elif isinstance(value, list) and value:
            for i in range(len(value) - 1, -1, -1):
                stack.append((value[i], f"{ptr}/{i}", norm + ("#",), path + (i,)))
        else:
            ptrs.append(ptr)
            norms.append(norm)
            paths.append(path)


def _named_values(record: dict) -> dict[str, object]:
    """Normalised key -> value of the scalar fields of the record and its nested containers;
    at equal name, the shallower container wins."""
    found: dict[str, object] = {}
    for container in _containers(record):
        for k, v in container.items():
            if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v):
                found.setdefault(pointers.normalise_name(str(k)), v)
    return found


def _first_named(found: dict[str, object], names: tuple[str, ...]) -> str | None:
    """The value of the first of ``names`` (priority order) in ``found``."""
    for name in names:
        if name in found:
            return str(found[name])
    return None


def _field_entry(d, ptr: str, value, secrets: list, scan_jobs: list) -> dict:
    """The envelope entry of one leaf decided ``d``: ``{"category", "source", "rule",
    "entities"[, "secret"]}``. A secret pointer is appended to ``secrets``; a text the
    detector must scan is appended to ``scan_jobs`` as ``(entry, ptr, value)`` (its entities
    are filled in after the batch's detector call). A rule's declared entity (e.g. a phone
    number in ``/to``) becomes a span with score 1.0 and recognizer ``"rule"``."""
    if d.secret:
        secrets.append(ptr)
        return {"category": d.category, "source": d.source, "rule": d.rule, "entities": [], "secret": True}
    entry = {"category": d.category, "source": d.source, "rule": d.rule, "entities": []}
    if d.entity is not None:
        span = declared_span(d.entity, value)
        if span is not None:
            entry["entities"].append({"type": d.entity, "start": span[0], "end": span[1],
                                      "score": 1.0, "recognizer": "rule"})
    if d.scan and isinstance(value, str) and value.strip():
        scan_jobs.append((entry, ptr, value))
    return entry
