"""The router: from an envelope, the messages to produce (DESIGN.md, "Data flow").

- one message per category present to ``privacy.retention.<category>.v1`` (unless the
  account is deleted), holding only that category's pointers;
- every message and call record, complete, to ``privacy.anonymise.v1`` (the analytics
  feed, anonymised by the anonymise agent);
- outbound messages and calls to ``privacy.carrier.v1``: the policy's allow-list minus
  anything tagged account or secret, keyed by event id, without ``account_id``; each with
  a ``privacy.audit.v1`` record of the pointers sent and withheld (never values);
- account deletions: a tombstone to ``privacy.retention.account.v1`` and an event to
  ``privacy.deletions.v1``.
Secrets were already replaced by the classifier, so no route carries one in clear.
"""

from __future__ import annotations

from pipeline import pointers
from pipeline.codec import encode
from pipeline.policy.model import CATEGORIES, Policy
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


class Router:
    """Routes envelopes per the policy; topic names come from settings (prefix applied)."""

    __slots__ = ("policy", "topics", "_deletion_fields", "_deletion_values", "_direction_fields",
                 "_outbound")

    def __init__(self, policy: Policy, topics: TopicNames):
        self.policy = policy
        self.topics = topics
        self._deletion_fields = frozenset(policy.routes.deletion.fields)
        self._deletion_values = frozenset(v.lower() for v in policy.routes.deletion.values)
        self._direction_fields = frozenset(policy.routes.carrier.direction.fields)
        self._outbound = tuple(p.lower() for p in policy.routes.carrier.direction.outbound_prefixes)

    # -- signals -------------------------------------------------------------------------
    def is_deletion(self, env: dict) -> bool:
        """An account event with ``action: deleted`` or ``status: closed`` (policy ``deletion``)."""
        if env["event_type"] != "account":
            return False
        return self._top_value_in(env["record"], self._deletion_fields, self._deletion_values)

    def is_outbound(self, env: dict) -> bool:
        """A record whose ``direction`` starts with an outbound prefix (``outbound-api``...)."""
        record = env["record"]
        for container in (record, record.get("data"), (record.get("data") or {}).get("payload")
                          if isinstance(record.get("data"), dict) else None):
            if isinstance(container, dict):
                for k, v in container.items():
                    if isinstance(v, str) and pointers.normalise_name(str(k)) in self._direction_fields:
                        if v.lower().startswith(self._outbound):
                            return True
        return False

    @staticmethod
    def _top_value_in(record: dict, names, values) -> bool:
        for container in (record, record.get("data")):
            if isinstance(container, dict):
                for k, v in container.items():
                    if isinstance(v, str) and v.lower() in values and pointers.normalise_name(str(k)) in names:
                        return True
        return False

    # -- routing -------------------------------------------------------------------------
    def route(self, env: dict, *, input_key: bytes | None, deleted: bool = False) -> list[OutputMessage]:
        """The messages for one envelope, in produce order; fills ``env["routes"]``."""
        topics = self.topics
        key = env["account_id"].encode() if env.get("account_id") else input_key
        by_cat: dict[str, list[str]] = {c: [] for c in CATEGORIES}
        for ptr, f in env["fields"].items():
            by_cat[f["category"]].append(ptr)
        plan: list[tuple[str, list[str] | None, bytes | None, bool]] = []
        deletion = self.is_deletion(env)
        if deletion:
            plan.append((topics.deletions, None, key, False))
        elif not deleted:
            for cat in CATEGORIES:
                if by_cat[cat]:
                    plan.append((topics.retention(cat), by_cat[cat], key, False))
        if env["event_type"] in self.policy.routes.anonymise_families:
            plan.append((topics.anonymise, list(env["fields"]), key, False))
        carrier_ptrs, withheld = self.carrier_pointers(env)
        if carrier_ptrs:
            plan.append((topics.carrier, carrier_ptrs, str(env["event_id"]).encode(), True))
        env["routes"] = [t for t, *_ in plan] + ([topics.audit] if carrier_ptrs else []) + (
            [topics.retention_account] if deletion else [])
        out: list[OutputMessage] = []
        for topic, ptrs, k, is_carrier in plan:
            if ptrs is None:  # deletion event
                value = encode(self.deletion_event(env))
                out.append(OutputMessage(topic, k, value, headers_for(env, {})))
                continue
            msg = restrict(env, ptrs, drop_account_id=is_carrier)
            out.append(OutputMessage(topic, k, encode(msg), headers_for(env, msg["fields"])))
        if carrier_ptrs:
            audit = {
                "envelope_version": env["envelope_version"], "event_id": env["event_id"],
                "account_id": env.get("account_id"), "route": topics.carrier,
                "policy_version": env["policy_version"], "shared_at": env["classified_at"],
                "pointers_sent": [pointers.mask_pointer(p) for p in carrier_ptrs],
                "pointers_withheld": [pointers.mask_pointer(p) for p in withheld],
            }
            out.append(OutputMessage(topics.audit, key, encode(audit), headers_for(env, {})))
        if deletion and env.get("account_id"):
            out.append(OutputMessage(topics.retention_account, env["account_id"].encode(), None,
                                     headers_for(env, {})))
        return out

    def carrier_pointers(self, env: dict) -> tuple[list[str], list[str]]:
        """``(sent, withheld)`` pointers for the carrier projection; ``([], [])`` when the
        record is not an outbound message or call. Never sends an account-tagged field or a
        secret, whatever the allow-list says (notice, carrier sharing)."""
        carrier = self.policy.routes.carrier
        family = env["event_type"]
        if family not in carrier.families or not self.is_outbound(env):
            return [], []
        allow = carrier.compiled.get(family, ())
        sent, withheld = [], []
        for ptr, f in env["fields"].items():
            if f["category"] != "account" and not f.get("secret"):
                norm = tuple(pointers.normalise_name(s) for s in pointers.split(ptr))
                if _is_cloud(env) and norm and norm[0] == "data":
                    norm = norm[1:]
                if any(pointers.glob_match(p, norm) for p in allow):
                    sent.append(ptr)
                    continue
            withheld.append(ptr)
        return sent, withheld

    def deletion_event(self, env: dict) -> dict:
        """The ``privacy.deletions.v1`` value: which account, when, why (never other values)."""
        return {"envelope_version": env["envelope_version"], "account_id": env.get("account_id"),
                "event_id": env["event_id"], "requested_at": env["classified_at"],
                "signal": "event", "policy_version": env["policy_version"]}


def _is_cloud(env: dict) -> bool:
    rec = env["record"]
    return "specversion" in rec and isinstance(rec.get("data"), (dict, list))
