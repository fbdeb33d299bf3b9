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

from collections.abc import Callable, Mapping
from functools import lru_cache

import hashlib

from pipeline import pointers
from pipeline.codec import encode
from pipeline.consent import allows
from pipeline.policy.model import CATEGORIES, HoldSpec, Policy
from pipeline.records import OutputMessage
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
                 "_outbound", "_inbound", "purpose_topics", "_holds", "_sealed")

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

    # -- signals -------------------------------------------------------------------------
    def is_deletion(self, env: dict) -> bool:
        """An account event with ``action: deleted`` or ``status: closed`` (policy ``deletion``)."""
        if env["event_type"] != "account":
            return False
        return bool(_marked(env["record"], self._deletion_fields, self._deletion_values))

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
              seal: Callable[[dict], None] | None = None) -> list[OutputMessage]:
        """The messages for one envelope, in produce order; fills ``env["routes"]``.

        ``deleted``: the account is deleted (only anonymisation and legal holds);
        ``consents``: the account's consent flags (purpose routes); ``seal``: see the module
        docstring."""
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

