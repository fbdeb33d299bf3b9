"""The router: from an envelope, the messages to produce (DESIGN.md, "Data flow").

In produce order:

- one message per category present to ``privacy.retention.<category>.v1`` (unless the
  account is deleted), holding only that category's pointers;
- every message and call record, complete, to ``privacy.anonymise.v1`` (the analytics
  feed, anonymised by the anonymise agent);
- outbound messages and calls to ``privacy.carrier.v1``: the policy's allow-list for the
  family and direction, minus anything tagged account or secret whatever the allow-list
  says, keyed by event id, without ``account_id`` (nothing identifying the customer goes to
  an operator); followed by a ``privacy.audit.v1`` record;
- account events explicitly marked for number provisioning (policy
  ``routes.carrier_address.marker``) to ``privacy.carrier.address.v1``: the address fields
  the policy allows (tagged account, the one regulated exception), never a secret; always
  followed by a ``privacy.audit.v1`` record, even when nothing could be shared;
- account deletions: an event to ``privacy.deletions.v1``, a tombstone to
  ``privacy.retention.account.v1`` and one ``privacy.audit.v1`` record per legal hold;
- consent-gated purpose routes (policy ``routes.purposes``, e.g. ``privacy.marketing.v1``):
  only when the account's consent flags grant the route's flag (``consents``), never for a
  deleted account, never content or secrets;
- legal holds (policy ``legal_hold``): the held fields to ``privacy.legalhold.v1`` in clear,
  also after the account's deletion (then audited per record).

``seal`` (crypto-shredding, issue 7) is called on each message of a retention topic of a
shredded category and of every purpose route before it is encoded; the processor's seal
replaces ``record`` by ``record_encrypted``.

Audit records hold the event id, route, policy version and the pointers sent and withheld
(data-like segments masked), never values.

Redaction (policy ``routes.redaction``, in the style of Twilio's Message Redaction): when
the policy, the account or the record (``ContentRetention: discard``, ``AddressRetention:
obfuscate``) asks for it, the stored routes (``apply_to``: retention, anonymise) carry
blank content fields and the non-platform number with its last four digits replaced by
``X``; the carrier still gets what it needs to deliver. Secrets were already replaced by the
classifier, so no route carries one in clear.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from functools import lru_cache
from operator import itemgetter
from typing import NamedTuple

import orjson

from pipeline import pointers
from pipeline.codec import encode
from pipeline.consent import allows
from pipeline.plans import EntityView, Layout, compile_projection, project
from pipeline.policy.model import CATEGORIES, HoldSpec, Policy
from pipeline.records import OutputMessage, output_message
from pipeline.topics import TopicNames

_META_KEYS = ("envelope_version", "event_id", "event_type", "account_id", "policy_version",
              "classified_at", "source")


def headers_for(env: dict, fields: dict) -> tuple[tuple[str, bytes], ...]:
    """Kafka headers of a routed message: ``event-id``, ``privacy-categories`` and
    ``privacy-entities`` (sorted, comma-separated, of the fields it holds),
    ``privacy-policy`` and ``envelope-version`` (DESIGN.md)."""
    cats = sorted({f["category"] for f in fields.values()})
    ents = sorted({e["type"] for f in fields.values() for e in f["entities"]})
    return (
        ("event-id", str(env["event_id"]).encode()),
        ("privacy-categories", ",".join(cats).encode()),
        ("privacy-entities", ",".join(ents).encode()),
        ("privacy-policy", str(env["policy_version"]).encode()),
        ("envelope-version", str(env["envelope_version"]).encode()),
    )


def restrict(env: dict, ptrs: list[str], *, drop_account_id: bool = False) -> dict:
    """The envelope restricted to ``ptrs``: ``fields`` and ``record`` hold only those pointers."""
    out = {k: env[k] for k in _META_KEYS if k in env}
    if drop_account_id:
        out.pop("account_id", None)
    fields = {p: env["fields"][p] for p in ptrs}
    out["fields"] = fields
    out["categories"] = sorted({f["category"] for f in fields.values()})
    out["routes"] = env.get("routes", [])
    out["schema_errors"] = env.get("schema_errors", [])
    out["record"] = pointers.subset(env["record"], ptrs)
    return out


def obfuscate_number(value: str) -> str:
    """The last four digits replaced by ``X`` (``+14155550100`` -> ``+1415555XXXX``), as
    Twilio's AddressRetention does; fewer than eight digits: every digit."""
    digits = [i for i, c in enumerate(value) if c.isdigit()]
    hide = set(digits[-4:] if len(digits) >= 8 else digits)
    return "".join("X" if i in hide else c for i, c in enumerate(value))


class Router:
    """Routes envelopes per the policy; topic names come from settings (prefix applied)."""

    __slots__ = ("policy", "topics", "_deletion_fields", "_deletion_values", "_direction_fields",
                 "_outbound", "_inbound", "purpose_topics", "_holds", "_sealed", "_tails")

    def __init__(self, policy: Policy, topics: TopicNames, *, prefix: str = ""):
        self.policy = policy
        self.topics = topics
        #: purpose route name -> full topic name (``prefix`` applied)
        self.purpose_topics = {r.name: prefix + r.topic for r in policy.routes.purposes}
        self._holds = tuple(policy.legal_hold.holds) if policy.legal_hold else ()
        self._sealed = frozenset([topics.retention(c) for c in policy.shredding.categories]
                                 + list(self.purpose_topics.values()))
        self._deletion_fields = frozenset(policy.routes.deletion.fields)
        self._deletion_values = frozenset(v.lower() for v in policy.routes.deletion.values)
        direction = policy.routes.carrier.direction
        self._direction_fields = frozenset(direction.fields)
        self._outbound = tuple(p.lower() for p in direction.outbound_prefixes)
        self._inbound = tuple(p.lower() for p in direction.inbound_prefixes)
        #: (policy version, envelope version) -> their headers (see :meth:`_header_tail`)
        self._tails: dict[tuple[str, int], tuple] = {}

    # -- signals -------------------------------------------------------------------------
    def is_deletion(self, env: dict, layout: Layout | None = None) -> bool:
        """An account event with ``action: deleted`` or ``status: closed`` (policy ``deletion``).
        ``layout``: the envelope's layout (where the markers stand is then precompiled)."""
        if env["event_type"] != "account":
            return False
        if layout is not None:
            return bool(_marked_at(env["record"], self.compiled(env, layout).deletion_marks,
                                   self._deletion_values))
        return bool(_marked(env["record"], self._deletion_fields, self._deletion_values))

    def compiled(self, env: dict, layout: Layout) -> _Compiled:
        """The routes compiled for ``layout`` (built from ``env``, an envelope of that layout,
        on first use and kept in the layout)."""
        compiled = layout.route
        if compiled is None:
            compiled = layout.route = _Compiled(self, env, layout)
        return compiled

    def direction(self, env: dict) -> str | None:
        """``outbound`` (sent by the customer to an end user), ``inbound`` or ``None``: the
        first direction field (top level, ``/data``, ``/data/payload``) with a known prefix."""
        record = env["record"]
        data = record.get("data")
        for container in (record, data, data.get("payload") if isinstance(data, dict) else None):
            if isinstance(container, dict):
                for k, v in container.items():
                    if isinstance(v, str) and pointers.normalise_name(str(k)) in self._direction_fields:
                        low = v.lower()
                        if low.startswith(self._outbound):
                            return "outbound"
                        if low.startswith(self._inbound):
                            return "inbound"
        return None

    def is_outbound(self, env: dict) -> bool:
        """A record whose ``direction`` starts with an outbound prefix (``outbound-api``...)."""
        return self.direction(env) == "outbound"

    def is_provisioning(self, env: dict) -> bool:
        """An event the policy allows to share a physical address with a carrier: its family
        is listed in ``carrier_address.families`` and it carries the explicit marker."""
        spec = self.policy.routes.carrier_address
        if spec is None or env["event_type"] not in spec.families or self.is_deletion(env):
            return False
        return bool(_marked(env["record"], frozenset(spec.marker.fields), frozenset(spec.marker.values)))

    # -- routing -------------------------------------------------------------------------
    def sealed(self, topic: str) -> bool:
        """Whether messages to ``topic`` are sealed (encrypted with the account's data key)."""
        return topic in self._sealed

    def route(self, env: dict, *, input_key: bytes | None, deleted: bool = False,
              consents: Mapping[str, bool] | None = None,
              seal: Callable[[dict], None] | None = None,
              layout: Layout | None = None) -> list[OutputMessage]:
        """The messages for one envelope, in produce order; fills ``env["routes"]``.

        ``deleted``: the account is deleted (only anonymisation and legal holds);
        ``consents``: the account's consent flags (purpose routes); ``seal``: see the module
        docstring; ``layout``: the envelope's :class:`~pipeline.plans.Layout` from
        :meth:`~pipeline.classify.Classifier.classify_batch_planned` (its compiled routes
        are reused for every record of the shape; same result as without)."""
        if layout is not None:
            return self._route_compiled(env, self.compiled(env, layout), input_key=input_key, deleted=deleted,
                                        consents=consents, seal=seal)
        topics = self.topics
        key = env["account_id"].encode() if env.get("account_id") else input_key
        by_cat: dict[str, list[str]] = {c: [] for c in CATEGORIES}
        for ptr, f in env["fields"].items():
            by_cat[f["category"]].append(ptr)
        # (topic, pointers or None for the deletion event, key, kind)
        plan: list[tuple[str, list[str] | None, bytes | None, str]] = []
        deletion = self.is_deletion(env)
        if deletion:
            plan.append((topics.deletions, None, key, "deletion"))
        elif not deleted:
            for cat in CATEGORIES:
                if by_cat[cat]:
                    plan.append((topics.retention(cat), by_cat[cat], key, "retention"))
            if env.get("account_id"):
                for spec in self.policy.routes.purposes:
                    if env["event_type"] in spec.families and allows(consents, spec.consent):
                        ptrs = self.purpose_pointers(env, spec)
                        if ptrs:
                            plan.append((self.purpose_topics[spec.name], ptrs, key, "purpose"))
        holds = {} if deletion else self.hold_pointers(env)
        for name, ptrs in holds.items():
            plan.append((topics.legal_hold, ptrs, key, "hold:" + name))
        if env["event_type"] in self.policy.routes.anonymise_families:
            plan.append((topics.anonymise, list(env["fields"]), key, "anonymise"))
        shared: list[tuple[str, list[str], list[str]]] = []  # (route, sent, withheld)
        carrier_ptrs, withheld = self.carrier_pointers(env)
        if carrier_ptrs:
            plan.append((topics.carrier, carrier_ptrs, _carrier_key(env), "carrier"))
            shared.append((topics.carrier, carrier_ptrs, withheld))
        if self.is_provisioning(env):
            addr_ptrs, addr_withheld = self.address_pointers(env)
            if addr_ptrs:
                plan.append((topics.carrier_address, addr_ptrs, _carrier_key(env), "carrier"))
            shared.append((topics.carrier_address, addr_ptrs, addr_withheld))
        audited = shared or (deleted and holds) or (deletion and self._holds)
        routes = [t for t, *_ in plan] + (
            [topics.retention_account] if deletion and env.get("account_id") else []) + (
            [topics.audit] if audited else [])
        env["routes"] = list(dict.fromkeys(routes))

        redacted = None
        stored_kinds = set(self.policy.routes.redaction.apply_to)
        out: list[OutputMessage] = []
        audits = {route: (sent, held) for route, sent, held in shared}
        for topic, ptrs, k, kind in plan:
            if ptrs is None:  # deletion event
                out.append(OutputMessage(topic, k, encode(self.deletion_event(env)), headers_for(env, {})))
                continue
            source = env
            hold = kind[5:] if kind.startswith("hold:") else None
            stored = "retention" if kind in ("purpose", "retention") or hold else kind
            if stored in stored_kinds:
                if redacted is None:
                    redacted = self.redacted(env)
                source = redacted
            if kind == "carrier":
                msg = self.carrier_message(env, ptrs)
            else:
                msg = restrict(source, ptrs)
            headers = headers_for(msg, msg["fields"])
            if hold:
                msg["legal_hold"] = hold
                headers += (("privacy-legal-hold", hold.encode()),)
            elif seal is not None and topic in self._sealed:
                seal(msg)
            out.append(OutputMessage(topic, k, encode(msg), headers))
            if topic in audits:
                out.append(self.audit_message(env, topic, *audits.pop(topic), key=key))
            if hold and deleted:
                out.append(self.hold_audit(env, self._hold(hold), "held_after_deletion", ptrs, key=key))
        for topic, (sent, held) in audits.items():  # audited although nothing was shared
            out.append(self.audit_message(env, topic, sent, held, key=key))
        if deletion and env.get("account_id"):
            out.append(OutputMessage(topics.retention_account, env["account_id"].encode(), None,
                                     headers_for(env, {})))
            out.extend(self.deletion_audits(env, key=key))
        return out

    def _route_compiled(self, env: dict, c: _Compiled, *, input_key: bytes | None, deleted: bool,
                        consents: Mapping[str, bool] | None,
                        seal: Callable[[dict], None] | None) -> list[OutputMessage]:
        """:meth:`route` with the shape-dependent work precompiled in ``c`` (same output): the
        record's few routing flags select a cached :class:`_RoutePlan`; per record only what
        depends on values remains (keys, ids, redaction, the message bytes)."""
        record = env["record"]
        account = env.get("account_id")
        key = account.encode() if account else input_key
        plan = c.route_plan(record, account, deleted, consents, seal is not None)
        env["routes"] = list(plan.routes)

        redacted = None
        out: list[OutputMessage] = []
        event_id = str(env["event_id"]).encode()
        tail = self._header_tail(env["policy_version"], env["envelope_version"])
        assembler = _Assembler(env, c) if c.assemble is not None else None
        event_item = ("event-id", event_id)
        carrier_key = _carrier_key(env) if plan.carrier_keyed else None
        for topic, kind, ptrs, proj, hold, redactable, sealed, fast, audit, hold_audit, after_fields in plan.steps:
            if ptrs is None:  # deletion event
                out.append(OutputMessage(topic, key, encode(self.deletion_event(env)), headers_for(env, {})))
                continue
            source = env
            if redactable:
                if redacted is None:
                    redacted = self._redacted_compiled(env, c)
                source = redacted
            value = None
            if fast and source is env:
                # the common case: bytes assembled from pre-encoded pieces (same bytes as encode(msg))
                if kind == _CARRIER:
                    value = assembler.carrier(proj, after_fields)
                    if value is not None:
                        headers = assembler.headers(("event-id", assembler.carrier_id), proj, tail)
                else:
                    value = assembler.restricted(proj, after_fields)
                    if value is not None:
                        headers = assembler.headers(event_item, proj, tail)
            if value is None:
                if kind == _CARRIER:
                    if proj is None:
                        msg = self.carrier_message(env, ptrs)
                        headers = headers_for(msg, msg["fields"])
                    else:
                        msg = self._carrier_compiled(env, proj)
                        headers = _headers_compiled(str(msg["event_id"]).encode(), proj, msg["fields"], tail)
                elif proj is None:
                    msg = restrict(source, ptrs)
                    headers = headers_for(msg, msg["fields"])
                else:
                    msg = _restrict_compiled(source, proj)
                    headers = _headers_compiled(event_id, proj, msg["fields"], tail)
                if hold:
                    msg["legal_hold"] = hold
                    headers += (("privacy-legal-hold", hold.encode()),)
                elif sealed:
                    seal(msg)
                value = encode(msg)
            out.append(output_message(topic, carrier_key if kind == _CARRIER else key, value, headers))
            if audit is not None:
                out.append(self._audit_compiled(env, *audit, key, event_id, tail))
            if hold_audit:
                out.append(self.hold_audit(env, self._hold(hold), "held_after_deletion", ptrs, key=key))
        for audit in plan.late_audits:  # audited although nothing was shared
            out.append(self._audit_compiled(env, *audit, key, event_id, tail))
        if plan.tombstone:
            out.append(OutputMessage(self.topics.retention_account, account.encode(), None,
                                     headers_for(env, {})))
            out.extend(self.deletion_audits(env, key=key))
        return out

    def _header_tail(self, policy_version, envelope_version) -> tuple[tuple[str, bytes], ...]:
        """The ``privacy-policy`` and ``envelope-version`` headers (:func:`headers_for`),
        kept for the few version pairs of a stream: a ``str`` policy version and an ``int``
        envelope version, at most :data:`HEADER_TAILS_KEPT` pairs (others built each time)."""
        cacheable = type(policy_version) is str and type(envelope_version) is int
        if cacheable:
            tail = self._tails.get((policy_version, envelope_version))
            if tail is not None:
                return tail
        tail = (("privacy-policy", str(policy_version).encode()), ("envelope-version", str(envelope_version).encode()))
        if cacheable and len(self._tails) < HEADER_TAILS_KEPT:
            self._tails[(policy_version, envelope_version)] = tail
        return tail

    def _carrier_compiled(self, env: dict, proj: _Proj) -> dict:
        msg = _restrict_compiled(env, proj, drop_account_id=True)
        msg["schema_errors"] = []
        account = env.get("account_id")
        if account and account in str(env["event_id"]):
            msg["event_id"] = _carrier_key(env).decode()
        return msg

    def _audit_compiled(self, env: dict, route: str, sent: list[str], msent: list[str], mheld: list[str],
                        key: bytes | None, event_id: bytes, tail: tuple) -> OutputMessage:
        audit = {
            "envelope_version": env["envelope_version"], "event_id": env["event_id"],
            "event_type": env["event_type"], "account_id": env.get("account_id"), "route": route,
            "policy_version": env["policy_version"], "shared_at": env["classified_at"],
            "shared": bool(sent),
            "pointers_sent": msent,
            "pointers_withheld": mheld,
        }
        return output_message(self.topics.audit, key, encode(audit),
                              (("event-id", event_id), _NO_CATEGORIES, _NO_ENTITIES, tail[0], tail[1]))

    def _redacted_compiled(self, env: dict, c: _Compiled) -> dict:
        """:meth:`redacted`, with the common no-redaction case decided from compiled markers."""
        spec = self.policy.routes.redaction
        if spec.content != "discard" and spec.address != "obfuscate" \
                and not spec.accounts.get(env.get("account_id") or ""):
            if not c.redaction_marks:
                return env
            record = env["record"]
            if not any(_marked_at(record, marks, values) for marks, values in c.redaction_marks):
                return env
        return self.redacted(env)

    # -- legal hold and purposes -----------------------------------------------------------
    def hold_pointers(self, env: dict) -> dict[str, list[str]]:
        """``{hold name: pointers}`` of the legal holds that keep fields of this record."""
        if not self._holds:
            return {}
        out: dict[str, list[str]] = {}
        cloud = _is_cloud(env)
        for hold in self._holds:
            if env["event_type"] not in hold.families:
                continue
            ptrs = [p for p, f in env["fields"].items() if f["category"] == hold.category
                    and not f.get("secret") and _allowed(p, hold.compiled, cloud)]
            if ptrs:
                out[hold.name] = ptrs
        return out

    def purpose_pointers(self, env: dict, spec) -> list[str]:
        """Pointers of a purpose route: the route's categories and allow-list, never a secret."""
        cloud = _is_cloud(env)
        return [p for p, f in env["fields"].items() if f["category"] in spec.categories
                and not f.get("secret") and _allowed(p, spec.compiled, cloud)]

    def _hold(self, name: str) -> HoldSpec:
        return next(h for h in self._holds if h.name == name)

    def deletion_audits(self, env: dict, *, key: bytes | None) -> list[OutputMessage]:
        """One ``privacy.audit.v1`` record per legal hold when an account is deleted: these
        fields of the account are kept (not shredded) for the legal period."""
        return [self.hold_audit(env, hold, "account_deleted", [], key=key) for hold in self._holds]

    def hold_audit(self, env: dict, hold: HoldSpec, reason: str, held: list[str], *,
                   key: bytes | None) -> OutputMessage:
        """An audit record of a legal hold (pointers masked, never values)."""
        spec = self.policy.legal_hold
        audit = {
            "envelope_version": env["envelope_version"], "event_id": env["event_id"],
            "event_type": env.get("event_type", "account"), "account_id": env.get("account_id"),
            "route": self.topics.legal_hold, "policy_version": env["policy_version"],
            "audited_at": env["classified_at"], "action": "legal_hold", "reason": reason,
            "legal_hold": {"name": hold.name, "category": hold.category,
                           "retention_ms": spec.retention_ms if spec else None, "cites": hold.cites},
            "pointers_held": [pointers.mask_pointer(p) for p in held],
        }
        return OutputMessage(self.topics.audit, key, encode(audit), headers_for(env, {}))

    # -- carrier -------------------------------------------------------------------------
    def carrier_pointers(self, env: dict) -> tuple[list[str], list[str]]:
        """``(sent, withheld)`` pointers for the carrier projection; ``([], [])`` when the
        family and direction have no allow-list. Never sends an account-tagged field or a
        secret, whatever the allow-list says (notice, carrier sharing)."""
        carrier = self.policy.routes.carrier
        family = env["event_type"]
        if family not in carrier.families:
            return [], []
        allow = carrier.compiled_for(family, self.direction(env))
        if not allow:
            return [], []
        sent, withheld = [], []
        cloud, holds_account = _is_cloud(env), _account_finder(env)
        for ptr, f in env["fields"].items():
            if f["category"] != "account" and not f.get("secret") and _allowed(ptr, allow, cloud) \
                    and not holds_account(env["record"], ptr):
                sent.append(ptr)
            else:
                withheld.append(ptr)
        return sent, withheld

    def address_pointers(self, env: dict) -> tuple[list[str], list[str]]:
        """``(sent, withheld)`` pointers for ``privacy.carrier.address.v1``: the policy's
        address allow-list (account-tagged fields included), never a secret."""
        spec = self.policy.routes.carrier_address
        if spec is None:
            return [], []
        sent, withheld = [], []
        cloud, holds_account = _is_cloud(env), _account_finder(env)
        for ptr, f in env["fields"].items():
            if not f.get("secret") and _allowed(ptr, spec.compiled, cloud) and not holds_account(env["record"], ptr):
                sent.append(ptr)
            else:
                withheld.append(ptr)
        return sent, withheld

    def carrier_message(self, env: dict, ptrs: list[str]) -> dict:
        """The envelope restricted to ``ptrs`` for an operator: no ``account_id``, no schema
        errors, an event id that cannot be the account id."""
        msg = restrict(env, ptrs, drop_account_id=True)
        msg["schema_errors"] = []
        account = env.get("account_id")
        if account and account in str(env["event_id"]):
            msg["event_id"] = _carrier_key(env).decode()
        return msg

    def audit_message(self, env: dict, route: str, sent: list[str], withheld: list[str], *,
                      key: bytes | None) -> OutputMessage:
        """One ``privacy.audit.v1`` record: what was shared with whom under which policy;
        pointers (data-like segments masked), never values."""
        audit = {
            "envelope_version": env["envelope_version"], "event_id": env["event_id"],
            "event_type": env["event_type"], "account_id": env.get("account_id"), "route": route,
            "policy_version": env["policy_version"], "shared_at": env["classified_at"],
            "shared": bool(sent),
            "pointers_sent": [pointers.mask_pointer(p) for p in sent],
            "pointers_withheld": [pointers.mask_pointer(p) for p in withheld],
        }
        return OutputMessage(self.topics.audit, key, encode(audit), headers_for(env, {}))

    # -- redaction -----------------------------------------------------------------------
    def redaction_for(self, env: dict) -> tuple[bool, bool, list[str]]:
        """``(discard content, obfuscate address, flag pointers)``: the strictest of the
        policy default, the account's options and the record's flags."""
        spec = self.policy.routes.redaction
        content = spec.content == "discard"
        address = spec.address == "obfuscate"
        account = spec.accounts.get(env.get("account_id") or "")
        if account:
            content = content or account.get("content") == "discard"
            address = address or account.get("address") == "obfuscate"
        flag_ptrs: list[str] = []
        for name, marker in spec.flags.items():
            hits = _marked(env["record"], frozenset(marker.fields), frozenset(marker.values))
            if hits:
                flag_ptrs.extend(hits)
                if name == "content":
                    content = True
                else:
                    address = True
        return content, address, flag_ptrs

    def redacted(self, env: dict) -> dict:
        """``env`` with the redaction it asks for applied (the same object when none):
        content fields blanked (``""``; ``null`` for non-strings), the non-platform number
        obfuscated; their ``fields`` entries say ``"redacted": "discard" | "obfuscate"``."""
        content, address, flags = self.redaction_for(env)
        if not (content or address):
            return env
        spec = self.policy.routes.redaction
        globs = spec.address_globs(self.direction(env)) if address else ()
        cloud = _is_cloud(env)
        changes: dict[str, object] = {}
        fields = dict(env["fields"])
        for ptr, f in env["fields"].items():
            if ptr in flags:
                continue
            value = _get(env["record"], ptr)
            if content and f["category"] == "content":
                if value is None or isinstance(value, bool):
                    continue
                changes[ptr] = "" if isinstance(value, str) else None
                fields[ptr] = dict(f, entities=[], redacted="discard")
            elif globs and f["category"] != "account" and _allowed(ptr, globs, cloud) \
                    and isinstance(value, (str, int)) and not isinstance(value, bool):
                new = obfuscate_number(str(value))
                if new != str(value):
                    changes[ptr] = new
                    fields[ptr] = dict(f, redacted="obfuscate")
        if not changes:
            return env
        record = pointers.replace(env["record"], list(changes), _Sequence(list(changes.values())))
        return dict(env, fields=fields, record=record)

    def deletion_event(self, env: dict) -> dict:
        """The ``privacy.deletions.v1`` value: which account, when, why (never other values)."""
        return {"envelope_version": env["envelope_version"], "account_id": env.get("account_id"),
                "event_id": env["event_id"], "requested_at": env["classified_at"],
                "signal": "event", "policy_version": env["policy_version"],
                "legal_holds": [h.name for h in self._holds]}


@lru_cache(maxsize=65536)
def _allowed(ptr: str, globs, cloud: bool) -> bool:
    """Whether ``ptr`` matches one of the compiled ``globs`` (cached: pointers repeat across
    records of one shape)."""
    norm = tuple(pointers.normalise_name(s) for s in pointers.split(ptr))
    if cloud and norm and norm[0] == "data":
        norm = norm[1:]
    return any(pointers.glob_match(p, norm) for p in globs)


def _account_finder(env: dict):
    """``fn(record, ptr)``: whether the value at ``ptr`` holds the customer's account id
    (``/uri`` often does): such a field never goes to an operator."""
    account = env.get("account_id")
    if not account:
        return lambda _record, _ptr: False
    return lambda record, ptr: account in str(_get(record, ptr))


def _marked(record: dict, names, values) -> list[str]:
    """Pointers of top-level (or ``/data``) string fields named in ``names`` whose value
    (case-insensitive) is one of ``values``."""
    hits = []
    for prefix, container in (("", record), ("/data", record.get("data"))):
        if isinstance(container, dict):
            for k, v in container.items():
                if isinstance(v, str) and v.lower() in values and pointers.normalise_name(str(k)) in names:
                    hits.append(f"{prefix}/{pointers.escape(str(k))}")
    return hits


def _carrier_key(env: dict) -> bytes:
    """The carrier topics' key: the event id, unless it holds the account id (then a hash)."""
    event_id, account = str(env["event_id"]), env.get("account_id")
    if account and account in event_id:
        return ("sha256:" + hashlib.sha256(event_id.encode()).hexdigest()[:32]).encode()
    return event_id.encode()


def _get(record, ptr: str):
    node = record
    for seg in pointers.split(ptr):
        node = node[int(seg)] if isinstance(node, list) else node[seg]
    return node


class _Sequence:
    __slots__ = ("_values", "_i")

    def __init__(self, values: list):
        self._values, self._i = values, 0

    def __call__(self, _old):
        v = self._values[self._i]
        self._i += 1
        return v


def _is_cloud(env: dict) -> bool:
    rec = env["record"]
    return "specversion" in rec and isinstance(rec.get("data"), (dict, list))



# -- compiled routes (per record layout, pipeline/plans.py) ------------------------------------
class _Proj:
    """One routed projection: its pointers, sorted categories (and their header value),
    the pointers whose entries may hold entities, and the record projection program."""

    __slots__ = ("_entities_items", "categories", "cats_header", "cats_item", "cats_part", "entity_key",
                 "entity_ptrs", "full", "no_entities", "program", "ptrs", "segs", "values")

    def __init__(self, ptrs: list[str], index: dict[str, int], layout: Layout, cats: dict[str, str]):
        self.ptrs = ptrs
        self.categories = sorted({cats[p] for p in ptrs})
        self.cats_header = ",".join(self.categories).encode()
        capable = set(layout.entity_ptrs)
        self.entity_ptrs = [p for p in ptrs if p in capable]
        self.entity_key = tuple(self.entity_ptrs)
        self.cats_item = ("privacy-categories", self.cats_header)
        self.no_entities = _NO_ENTITIES
        #: ``fn(fields)`` -> the entries of ``ptrs``, in order
        self.values = itemgetter(*ptrs) if len(ptrs) > 1 else (lambda f, _p=ptrs[0]: (f[_p],))
        self.full = len(ptrs) == len(index)
        self.program = compile_projection(layout.plan.shape.paths, [index[p] for p in ptrs])
        #: for :class:`_Assembler`: ``'},"categories":[...],"routes":'``
        self.cats_part = b'},"categories":' + orjson.dumps(self.categories) + b',"routes":'
        self.segs = None  # filled by _Compiled.proj when the layout can be assembled
        self._entities_items: dict[tuple, tuple] = {}

    def entities_item(self, types: tuple[str, ...]) -> tuple[str, bytes]:
        """The ``privacy-entities`` header of a message of this projection whose fields hold
        entities of ``types`` (in field order, repeats kept): kept per projection for the
        few combinations of entity types met (at most :data:`ENTITY_HEADERS_PER_PROJECTION`)."""
        item = self._entities_items.get(types)
        if item is None:
            item = ("privacy-entities", ",".join(sorted(set(types))).encode()) if types else _NO_ENTITIES
            if len(self._entities_items) < ENTITY_HEADERS_PER_PROJECTION:
                self._entities_items[types] = item
        return item


#: Entity-type combinations whose ``privacy-entities`` header a projection keeps.
ENTITY_HEADERS_PER_PROJECTION = 64


class _Compiled:
    """What :meth:`Router.route` decides from a layout alone (family, pointers, categories,
    secrets, shape): per-category retention projections, purposes, holds, carrier and
    address candidates per direction, and where markers and direction fields stand."""

    __slots__ = ("_address", "_carrier", "_none_allowed", "_plans", "_projs", "_purpose_flags", "account_family",
                 "address_family", "anonymise", "assemble", "assemble_dynamic", "assemble_empty", "assemble_keyed",
                 "carrier_family", "cats", "cloud", "consent_marks", "deletion_marks", "direction_paths", "holds",
                 "index", "layout", "paths", "provisioning_marks", "provisioning_values", "purposes",
                 "redaction_marks", "retention", "router", "secret", "stored_kinds")

    def __init__(self, router: Router, env: dict, layout: Layout):
        policy = router.policy
        self.router, self.layout = router, layout
        fields = env["fields"]
        ptrs = list(fields)
        self.index = {p: i for i, p in enumerate(ptrs)}
        self.cats = {p: f["category"] for p, f in fields.items()}
        self.secret = {p for p, f in fields.items() if f.get("secret")}
        self.paths = layout.plan.shape.paths
        self.cloud = cloud = _is_cloud(env)
        self._projs: dict[tuple, _Proj] = {}
        #: pointer -> the encoded ``"pointer":{entry}`` of a field whose entry is the same in
        #: every envelope of the layout, or ``None`` for one that may hold entities (encoded per
        #: envelope); ``None`` when the layout's messages are not assembled from bytes
        self.assemble = _static_fragments(fields, layout, self.paths)
        #: pointer -> the encoded entry, without entities, of a field that may hold some
        self.assemble_empty = self.assemble_dynamic = self.assemble_keyed = None
        if self.assemble is not None:
            try:
                self.assemble_empty = _empty_fragments(layout)
                #: ``(pointer, b'"pointer":', entry without entities encoded)`` of those fields
                self.assemble_keyed = tuple((p, orjson.dumps(p) + b":", empty)
                                            for p, empty in self.assemble_empty.items())
            except TypeError:  # orjson.JSONEncodeError: a lone surrogate in a key
                self.assemble = None
            else:
                #: pointer -> index among the layout's fields encoded per envelope
                self.assemble_dynamic = {p: i for i, p in enumerate(self.assemble_empty)}
        family = env["event_type"]
        topics = router.topics
        by_cat: dict[str, list[str]] = {c: [] for c in CATEGORIES}
        for p in ptrs:
            by_cat[self.cats[p]].append(p)
        self.retention = [(topics.retention(cat), self.proj(by_cat[cat])) for cat in CATEGORIES if by_cat[cat]]
        self.purposes = []
        for spec in policy.routes.purposes:
            if family in spec.families:
                pp = [p for p in ptrs if self.cats[p] in spec.categories and p not in self.secret
                      and _allowed(p, spec.compiled, cloud)]
                if pp:
                    self.purposes.append((spec, self.proj(pp)))
        self._purpose_flags = tuple(spec.consent for spec, _proj in self.purposes)
        self._none_allowed = (False,) * len(self.purposes)
        self.holds = {}
        for hold in router._holds:
            if family not in hold.families:
                continue
            hp = [p for p in ptrs if self.cats[p] == hold.category and p not in self.secret
                  and _allowed(p, hold.compiled, cloud)]
            if hp:
                self.holds[hold.name] = self.proj(hp)
        self.anonymise = self.proj(ptrs) if family in policy.routes.anonymise_families else None
        self.carrier_family = family in policy.routes.carrier.families
        record = env["record"]
        self.direction_paths = []
        data = record.get("data")
        for path, container in (((), record), (("data",), data),
                                (("data", "payload"), data.get("payload") if isinstance(data, dict) else None)):
            if isinstance(container, dict):
                for k, v in container.items():
                    if isinstance(v, str) and pointers.normalise_name(str(k)) in router._direction_fields:
                        self.direction_paths.append(path + (k,))
        self.deletion_marks = _marks(record, router._deletion_fields)
        spec = policy.routes.carrier_address
        self.provisioning_marks = _marks(record, frozenset(spec.marker.fields)) if spec is not None else []
        self.provisioning_values = frozenset(spec.marker.values) if spec is not None else frozenset()
        red = policy.routes.redaction
        self.redaction_marks = [(marks, frozenset(m.values)) for m in red.flags.values()
                                if (marks := _marks(record, frozenset(m.fields)))]
        self.stored_kinds = set(red.apply_to)
        #: whether the record has a container the consent reader looks at (else no flags)
        consent_fields = frozenset(policy.consent.fields) if policy.consent else frozenset()
        self.consent_marks = any(
            isinstance(v, Mapping) and pointers.normalise_name(str(k)) in consent_fields
            for container in (record, data if isinstance(data, Mapping) else None) if container is not None
            for k, v in container.items())
        self.account_family = family == "account"
        self.address_family = spec is not None and family in spec.families
        self._carrier: dict = {}
        self._address = None
        #: routing flags -> :class:`_RoutePlan` (at most :data:`ROUTE_PLANS_PER_LAYOUT`)
        self._plans: dict[tuple, _RoutePlan] = {}

    def proj(self, ptrs: list[str]) -> _Proj:
        """The (cached) projection of ``ptrs`` (a document-ordered subset of the fields)."""
        key = tuple(ptrs)
        p = self._projs.get(key)
        if p is None:
            p = self._projs[key] = _Proj(ptrs, self.index, self.layout, self.cats)
            if self.assemble is not None:
                p.segs = _segments(ptrs, self.assemble, self.assemble_dynamic)
        return p

    def carrier_share(self, direction: str | None):
        """``(sent, withheld)`` before the account-id check, or ``None`` without allow-list."""
        try:
            return self._carrier[direction]
        except KeyError:
            pass
        allow = self.router.policy.routes.carrier.compiled_for(self.layout.plan.family, direction)
        share = None
        if allow:
            sent, withheld = [], []
            for p in self.index:
                if self.cats[p] != "account" and p not in self.secret and _allowed(p, allow, self.cloud):
                    sent.append(p)
                else:
                    withheld.append(p)
            share = self._share(sent, withheld)
        self._carrier[direction] = share
        return share

    def address_share(self):
        """``(sent, withheld)`` for the address route before the account-id check."""
        if self._address is None:
            spec = self.router.policy.routes.carrier_address
            sent, withheld = [], []
            for p in self.index:
                if p not in self.secret and _allowed(p, spec.compiled, self.cloud):
                    sent.append(p)
                else:
                    withheld.append(p)
            self._address = self._share(sent, withheld)
        return self._address

    def _share(self, sent, withheld):
        return (sent, withheld, self.proj(sent) if sent else None,
                [pointers.mask_pointer(p) for p in sent], [pointers.mask_pointer(p) for p in withheld],
                [(p, self.paths[self.index[p]]) for p in sent])

    def direction_of(self, record: dict) -> str | None:
        """:meth:`Router.direction` of a record of this layout (its direction fields precompiled)."""
        router = self.router
        for path in self.direction_paths:
            low = _at(record, path).lower()
            if low.startswith(router._outbound):
                return "outbound"
            if low.startswith(router._inbound):
                return "inbound"
        return None

    def account_hits(self, share, record: dict, account: str | None) -> tuple[str, ...]:
        """The pointers among ``share``'s sent fields (see :meth:`carrier_share`) whose value
        in ``record`` holds ``account`` (such a field never goes to an operator), in order."""
        if not account:
            return ()
        return tuple([p for p, path in share[5] if account in str(_at(record, path))])

    def share_without(self, share, hits: tuple[str, ...]):
        """``(sent, withheld, projection or None, masked sent, masked withheld)`` of ``share``
        once the fields ``hits`` (from :meth:`account_hits`) are withheld."""
        sent, withheld, proj, msent, mheld, _located = share
        if hits:
            sent = [p for p in sent if p not in hits]
            keep = set(sent)
            withheld = [p for p in self.index if p not in keep]
            return (sent, withheld, None, [pointers.mask_pointer(p) for p in sent],
                    [pointers.mask_pointer(p) for p in withheld])
        return sent, withheld, proj, msent, mheld

    def purposes_allowed(self, consents: Mapping[str, bool] | None) -> tuple[bool, ...]:
        """Per purpose route of the layout (:attr:`purposes`), whether ``consents`` grant it
        (:func:`pipeline.consent.allows`)."""
        if not consents:
            return self._none_allowed
        return tuple([allows(consents, flag) for flag in self._purpose_flags])

    def route_plan(self, record: dict, account: str | None, deleted: bool,
                   consents: Mapping[str, bool] | None, sealing: bool) -> _RoutePlan:
        """The :class:`_RoutePlan` of a record of this layout.

        Only a few flags make the routes of one layout differ: a deletion marker, the account
        deleted, which purpose routes the consents allow, the carrier direction, which shared
        fields hold the account id, a provisioning marker, sealing on (``seal`` given) and an
        account id present. They are read from the record here (a tuple of booleans, a
        direction and pointers of the layout, never values) and the plan for them is built
        on first use and kept (at most :data:`ROUTE_PLANS_PER_LAYOUT` per layout)."""
        router = self.router
        deletion = self.account_family and bool(_marked_at(record, self.deletion_marks, router._deletion_values))
        allowed = self.purposes_allowed(consents) if self._purpose_flags and account and not deletion \
            and not deleted else ()
        direction = carrier_hits = None
        if self.carrier_family:
            direction = self.direction_of(record)
            share = self.carrier_share(direction)
            if share is not None:
                carrier_hits = self.account_hits(share, record, account)
        provisioning = self.address_family and not deletion \
            and bool(_marked_at(record, self.provisioning_marks, self.provisioning_values))
        address_hits = self.account_hits(self.address_share(), record, account) if provisioning else None
        flags = (deletion, bool(deleted), allowed, direction, carrier_hits, provisioning, address_hits, sealing,
                 bool(account))
        plan = self._plans.get(flags)
        if plan is None:
            plan = _RoutePlan(self, *flags)
            if len(self._plans) < ROUTE_PLANS_PER_LAYOUT:
                self._plans[flags] = plan
        return plan


#: Version pairs whose headers a router keeps (:meth:`Router._header_tail`).
HEADER_TAILS_KEPT = 16
#: Route plans kept per compiled layout: one per combination of routing flags met (a stream
#: meets a handful per layout); past the bound, plans are built per record.
ROUTE_PLANS_PER_LAYOUT = 64
#: :attr:`_RouteStep.kind` of the messages to an operator (keyed by :func:`_carrier_key`).
_CARRIER = "carrier"


class _RouteStep(NamedTuple):
    """One message of a :class:`_RoutePlan`, in produce order (unpacked per record).

    ``kind``: ``deletion`` (``ptrs`` is then ``None``), ``retention``, ``purpose``, ``hold``,
    ``anonymise`` or :data:`_CARRIER`; ``proj``: the compiled projection, ``None`` for a
    carrier share that lost fields holding the account id (the message is then built from
    ``ptrs``); ``hold``: the legal hold's name or ``None``; ``redactable``: the route stores
    the record (redaction applies); ``sealed``: ``seal`` is called on the message; ``fast``:
    the message may be assembled from bytes (:class:`_Assembler`) when its source is the
    envelope itself (not redacted); ``audit``: ``(route, sent, masked sent, masked
    withheld)`` of the audit record that follows the message, or ``None``; ``hold_audit``: a
    ``held_after_deletion`` audit record follows; ``after_fields``: for :class:`_Assembler`,
    the message's bytes between its fields and its schema errors (carrier: its record),
    which the plan fixes (categories and routes)."""

    topic: str
    kind: str
    ptrs: list[str] | None
    proj: _Proj | None
    hold: str | None
    redactable: bool
    sealed: bool
    fast: bool
    audit: tuple | None
    hold_audit: bool
    after_fields: bytes | None


class _RoutePlan:
    """What :meth:`Router._route_compiled` sends for the records of one compiled layout that
    share one combination of routing flags (see :meth:`_Compiled.route_plan`), decided once.

    ``steps``: a :class:`_RouteStep` per message (produce order); ``routes``: the envelope's
    ``routes``; ``late_audits``: ``(route, sent, masked sent, masked withheld)`` of the audit
    records of shares that sent nothing (after the steps); ``tombstone``: a deletion of an
    account id (its tombstone and deletion audits come last); ``carrier_keyed``: some step is
    keyed by the carrier key.
    """

    __slots__ = ("carrier_keyed", "late_audits", "routes", "steps", "tombstone")

    def __init__(self, c: _Compiled, deletion: bool, deleted: bool, allowed: tuple[bool, ...],
                 direction: str | None, carrier_hits: tuple | None, provisioning: bool,
                 address_hits: tuple | None, sealing: bool, has_account: bool):
        router = c.router
        topics = router.topics
        stored = c.stored_kinds
        retained = "retention" in stored
        # (topic, kind, pointers or None, projection or None, legal hold name or None, redactable)
        plan: list[tuple] = []
        if deletion:
            plan.append((topics.deletions, "deletion", None, None, None, False))
        elif not deleted:
            for topic, proj in c.retention:
                plan.append((topic, "retention", proj.ptrs, proj, None, retained))
            if has_account:
                for (spec, proj), ok in zip(c.purposes, allowed):
                    if ok:
                        plan.append((router.purpose_topics[spec.name], "purpose", proj.ptrs, proj, None, retained))
        holds = {} if deletion else c.holds
        for name, proj in holds.items():
            plan.append((topics.legal_hold, "hold", proj.ptrs, proj, name, retained))
        if c.anonymise is not None:
            plan.append((topics.anonymise, "anonymise", c.anonymise.ptrs, c.anonymise, None, "anonymise" in stored))
        shared: list[tuple] = []  # (route, sent, masked sent, masked withheld)
        if carrier_hits is not None:
            sent, _withheld, proj, msent, mheld = c.share_without(c.carrier_share(direction), carrier_hits)
            if sent:
                plan.append((topics.carrier, _CARRIER, sent, proj, None, "carrier" in stored))
                shared.append((topics.carrier, sent, msent, mheld))
        if provisioning:
            sent, _withheld, proj, msent, mheld = c.share_without(c.address_share(), address_hits)
            if sent:
                plan.append((topics.carrier_address, _CARRIER, sent, proj, None, "carrier" in stored))
            shared.append((topics.carrier_address, sent, msent, mheld))
        audited = shared or (deleted and holds) or (deletion and router._holds)
        routes = [p[0] for p in plan]
        if deletion and has_account:
            routes.append(topics.retention_account)
        if audited:
            routes.append(topics.audit)
        self.routes = tuple(dict.fromkeys(routes))
        routes_part = orjson.dumps(list(self.routes))
        audits = {s[0]: s for s in shared}
        steps = []
        for topic, kind, ptrs, proj, hold, redactable in plan:
            sealed = sealing and topic in router._sealed
            deletion_event = ptrs is None
            fast = c.assemble is not None and proj is not None and not hold and not sealed
            after_fields = None
            if fast:
                after_fields = proj.cats_part + routes_part + (
                    b',"schema_errors":[],"record":' if kind == _CARRIER else b',"schema_errors":')
            steps.append(_RouteStep(
                topic, kind, ptrs, proj, hold, redactable, sealed, fast,
                audit=None if deletion_event else audits.pop(topic, None),
                hold_audit=not deletion_event and bool(hold and deleted), after_fields=after_fields))
        self.steps = tuple(steps)
        self.late_audits = tuple(audits.values())
        self.tombstone = deletion and has_account
        self.carrier_keyed = any(step.kind == _CARRIER for step in steps)


_NO_CATEGORIES = ("privacy-categories", b"")
_NO_ENTITIES = ("privacy-entities", b"")
#: :attr:`_Assembler._view` before the envelope's entity view is looked up
_UNSET = object()
#: :class:`_Assembler`: the bytes after ``"schema_errors":`` of an envelope without errors
_NO_SCHEMA_ERRORS = b'[],"record":'


def _marks(record: dict, names) -> list[tuple[str, tuple]]:
    """Where :func:`_marked` looks: ``(pointer, key path)`` of top-level (or ``/data``)
    string fields named in ``names``."""
    out = []
    for prefix, path, container in (("", (), record), ("/data", ("data",), record.get("data"))):
        if isinstance(container, dict):
            for k, v in container.items():
                if isinstance(v, str) and pointers.normalise_name(str(k)) in names:
                    out.append((f"{prefix}/{pointers.escape(str(k))}", path + (k,)))
    return out


def _marked_at(record: dict, marks, values) -> list[str]:
    """:func:`_marked` over precompiled ``marks``."""
    return [ptr for ptr, path in marks if _at(record, path).lower() in values]


def _at(record, path: tuple):
    node = record
    for seg in path:
        node = node[seg]
    return node


def _restrict_compiled(env: dict, proj: _Proj, *, drop_account_id: bool = False) -> dict:
    """:func:`restrict` with a compiled projection (same result) of a planned envelope (its
    first six keys are always present)."""
    out = {"envelope_version": env["envelope_version"], "event_id": env["event_id"],
           "event_type": env["event_type"], "account_id": env["account_id"],
           "policy_version": env["policy_version"], "classified_at": env["classified_at"]}
    if "source" in env:
        out["source"] = env["source"]
    if drop_account_id:
        out.pop("account_id", None)
    f = env["fields"]
    out["fields"] = f if proj.full else dict(zip(proj.ptrs, proj.values(f)))
    out["categories"] = list(proj.categories)
    out["routes"] = env.get("routes", [])
    out["schema_errors"] = env.get("schema_errors", [])
    out["record"] = project(env["record"], proj.program)
    return out


def _headers_compiled(event_id: bytes, proj: _Proj, fields: dict, tail: tuple) -> tuple[tuple[str, bytes], ...]:
    """:func:`headers_for` of a compiled projection's message (same result)."""
    ents = None
    for p in proj.entity_ptrs:
        for e in fields[p]["entities"]:
            if ents is None:
                ents = set()
            ents.add(e["type"])
    return (("event-id", event_id), ("privacy-categories", proj.cats_header),
            proj.no_entities if ents is None else ("privacy-entities", ",".join(sorted(ents)).encode())) + tail


# -- messages assembled from pre-encoded pieces ------------------------------------------------
#: Assembly is used only for records well under orjson's nesting limit (254 levels), so that
#: a piece encodes exactly as it would inside the whole message.
_ASSEMBLE_MAX_DEPTH = 64


def _static_fragments(fields: dict, layout: Layout, paths) -> dict | None:
    """``{pointer: b'"pointer":{entry}' or None}`` for :class:`_Assembler` (see
    ``_Compiled.assemble``), or ``None`` when the layout's messages are encoded whole (deep
    records; pointers orjson cannot encode)."""
    if any(len(p) > _ASSEMBLE_MAX_DEPTH for p in paths):
        return None
    dynamic = set(layout.entity_ptrs)
    out = {}
    try:
        for p, entry in fields.items():
            out[p] = None if p in dynamic else orjson.dumps({p: entry})[1:-1]
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate in a key
        return None
    return out


def _empty_fragments(layout: Layout) -> dict:
    """``{pointer: b'"pointer":{entry}'}`` of the fields that may hold entities, as their
    entry is when it holds none (what :func:`pipeline.classify._field_entry` builds for the
    decision before any span is added)."""
    out = {}
    for p, d in zip(layout.plan.shape.ptrs, layout.decisions):
        if (d.entity is not None and not d.secret) or d.scan:
            entry = {"category": d.category, "source": d.source, "rule": d.rule, "entities": []}
            if d.secret:
                entry["secret"] = True
            out[p] = orjson.dumps({p: entry})[1:-1]
    return out


def _segments(ptrs: list[str], static: dict, dynamic: dict) -> tuple:
    """The fields of a projection for :meth:`_Assembler._fields`: ``(parts, pick)`` where
    ``parts`` are runs of pre-encoded static entries (joined with commas) and ``pick(parts +
    per-envelope fragments of the layout's dynamic fields)`` orders the pieces to join; ``pick``
    is ``None`` when the fields are one static run. ``dynamic``: pointer -> index of the
    fields whose entries are encoded per envelope."""
    parts: list[bytes] = []
    order: list = []  # ("s", index into parts) or ("d", dynamic index)
    run: list[bytes] = []
    for p in ptrs:
        frag = static[p]
        if frag is None:
            if run:
                order.append(("s", len(parts)))
                parts.append(b",".join(run))
                run = []
            order.append(("d", dynamic[p]))
        else:
            run.append(frag)
    if run:
        order.append(("s", len(parts)))
        parts.append(b",".join(run))
    if not order:
        return (b"",), None
    if len(order) == 1 and order[0][0] == "s":
        return tuple(parts), None
    n = len(parts)
    positions = [i if kind == "s" else n + i for kind, i in order]
    if len(positions) == 1:
        only = positions[0]
        return tuple(parts), lambda pieces: (pieces[only],)
    return tuple(parts), itemgetter(*positions)


class _Assembler:
    """One envelope's routed messages as bytes, from pieces encoded once per envelope (or
    once per layout) and joined.

    orjson writes an object as ``{`` + ``"key":value`` pairs joined by ``,`` + ``}`` (no
    whitespace, options off), so the join equals ``orjson.dumps`` of the message dict that
    :func:`_restrict_compiled` would build. A piece orjson refuses (a lone surrogate, an
    integer beyond 64 bits) makes :meth:`restricted` / :meth:`carrier` return ``None``: the
    caller then builds and encodes the message whole, with :func:`~pipeline.codec.encode`'s
    fallback, as before.
    """

    __slots__ = ("_dyn", "_entity_items", "_head", "_keyed", "_layout", "_record", "_schema", "_view", "carrier_id",
                 "env")

    def __init__(self, env: dict, c: _Compiled):
        self.env = env
        self._layout = c.layout
        self._keyed = c.assemble_keyed
        self._head = self._schema = self._record = None
        self._dyn: tuple | None = None  # the dynamic fields' fragments, once per envelope
        self._entity_items: dict[tuple, tuple] | None = None  # without an entity view
        self._view = _UNSET  # the layout's EntityView of the envelope, or None, once looked up
        self.carrier_id = None

    def _entity_view(self) -> EntityView | None:
        """:meth:`pipeline.plans.Layout.entity_view` of the envelope (looked up once)."""
        view = self._view
        if view is _UNSET:
            view = self._view = self._layout.entity_view(self.env["fields"])
        return view

    def headers(self, event_item: tuple, proj: _Proj, tail: tuple) -> tuple[tuple[str, bytes], ...]:
        """:func:`_headers_compiled` (same result); the ``privacy-entities`` header is
        worked out once per envelope for projections with the same entity pointers.
        ``tail``: the two headers of :meth:`Router._header_tail`."""
        key = proj.entity_key
        if not key:
            return (event_item, proj.cats_item, _NO_ENTITIES, tail[0], tail[1])
        view = self._view
        if view is _UNSET:
            view = self._entity_view()
        if view is not None:  # shared entries: the header is kept in the view
            items = view.header_items
        else:
            items = self._entity_items
            if items is None:
                items = self._entity_items = {}
        ents_item = items.get(key)
        if ents_item is None:
            fields = self.env["fields"]
            ents_item = items[key] = proj.entities_item(tuple([e["type"] for p in key for e in fields[p]["entities"]]))
        return (event_item, proj.cats_item, ents_item, tail[0], tail[1])

    def restricted(self, proj: _Proj, after_fields: bytes) -> bytes | None:
        """``encode(_restrict_compiled(env, proj))``, or ``None`` (see class doc);
        ``after_fields``: ``proj.cats_part`` + the encoded ``routes`` + ``,"schema_errors":``
        (:attr:`_RouteStep.after_fields`)."""
        env = self.env
        try:
            head = self._head
            if head is None:
                meta = {"envelope_version": env["envelope_version"], "event_id": env["event_id"],
                        "event_type": env["event_type"], "account_id": env["account_id"],
                        "policy_version": env["policy_version"], "classified_at": env["classified_at"]}
                if "source" in env:
                    meta["source"] = env["source"]
                head = self._head = orjson.dumps(meta)[:-1] + b',"fields":{'
            schema = self._schema
            if schema is None:
                errors = env.get("schema_errors", [])
                schema = self._schema = _NO_SCHEMA_ERRORS if type(errors) is list and not errors \
                    else orjson.dumps(errors) + b',"record":'
            parts, pick = proj.segs
            fields = parts[0] if pick is None else self._dynamic_fields(parts, pick)
            return b"".join((head, fields, after_fields, schema, self._rec(proj), b"}"))
        except TypeError:  # orjson.JSONEncodeError
            return None

    def carrier(self, proj: _Proj, after_fields: bytes) -> bytes | None:
        """``encode(Router._carrier_compiled(env, proj))``, or ``None``; sets
        :attr:`carrier_id` (the message's ``event-id`` header value). ``after_fields``:
        ``proj.cats_part`` + the encoded ``routes`` + ``,"schema_errors":[],"record":``."""
        env = self.env
        try:
            event_id = env["event_id"]
            account = env.get("account_id")
            if account and account in str(event_id):
                event_id = _carrier_key(env).decode()
            self.carrier_id = str(event_id).encode()
            meta = {"envelope_version": env["envelope_version"], "event_id": event_id,
                    "event_type": env["event_type"],
                    "policy_version": env["policy_version"], "classified_at": env["classified_at"]}
            if "source" in env:
                meta["source"] = env["source"]
            parts, pick = proj.segs
            fields = parts[0] if pick is None else self._dynamic_fields(parts, pick)
            return b"".join((orjson.dumps(meta)[:-1], b',"fields":{', fields, after_fields, self._rec(proj), b"}"))
        except TypeError:  # orjson.JSONEncodeError
            return None

    def _dynamic_fields(self, parts: tuple, pick) -> bytes:
        """The fields of a projection whose ``segs`` (:func:`_segments`) are ``(parts, pick)``
        with some entries encoded per envelope."""
        dyn = self._dyn
        if dyn is None:
            view = self._view
            if view is _UNSET:
                view = self._entity_view()
            dyn = None if view is None else view.fragments  # shared entries: encoded once
            if dyn is None:
                fields = self.env["fields"]
                # b'"pointer":' + the entry, as orjson.dumps({pointer: entry}) writes it inside braces
                dyn = tuple([key + orjson.dumps(entry) if (entry := fields[p])["entities"] else empty
                             for p, key, empty in self._keyed])
                if view is not None:
                    view.fragments = dyn
            self._dyn = dyn
        return b",".join(pick(parts + dyn))

    def _rec(self, proj: _Proj) -> bytes:
        program = proj.program
        if program is None:
            rec = self._record
            if rec is None:
                rec = self._record = orjson.dumps(self.env["record"])
            return rec
        return orjson.dumps(project(self.env["record"], program))
