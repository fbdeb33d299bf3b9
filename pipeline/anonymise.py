"""Anonymisation of envelopes for analytics (``privacy.anonymise.v1`` -> ``privacy.anonymised.v1``).

Operators come from the policy's ``anonymisation`` section (notice N-anon: data kept for
analysis survives only "in an anonymized form that does not specifically identify you"):
- text fields: each entity span goes through its entity type's operator, applied by
  presidio-anonymizer (overlapping spans are merged by Presidio, so no nested or broken
  placeholders; offsets are code points);
- structured fields with a declared entity: the same operator on the span;
- fields without entities: the category's operator (account -> redacted; secrets never
  appear in clear).
``pseudonymise`` is a keyed HMAC-SHA256 scoped per customer account and purpose:
``<TYPE:ps:<key id>:<16 hex>>``; the same value gives the same pseudonym within a scope and
different ones across scopes.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from pipeline import pointers
from pipeline.policy.model import OperatorSpec, Policy

REDACTED = "<REDACTED>"


class Pseudonymiser:
    """Keyed, scoped pseudonyms. ``key`` bytes, ``key_id`` tags the output for rotation."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: bytes, key_id: str):
        self._key, self.key_id = key, key_id

    def __call__(self, value: str, *, entity: str, account_id: str | None, purpose: str) -> str:
        msg = f"{purpose}\x1f{account_id or '-'}\x1f{entity}\x1f{value}".encode("utf-8", "surrogatepass")
        digest = hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:16]
        return f"<{entity}:ps:{self.key_id}:{digest}>"


def truncate_ip(value: str) -> str:
    """IPv4 -> its /24 network, IPv6 -> its /48 (``203.0.113.7`` -> ``203.0.113.0/24``);
    a value that does not parse -> ``<IP_ADDRESS>``."""
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        return "<IP_ADDRESS>"
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


class Anonymiser:
    """Applies the policy's operators to an envelope; see the module docstring."""

    def __init__(self, policy: Policy, pseudonym_key: bytes, pseudonym_key_id: str):
        from presidio_anonymizer import AnonymizerEngine

        self.policy = policy
        self.spec = policy.anonymisation
        self.pseudonymise = Pseudonymiser(pseudonym_key, pseudonym_key_id)
        self._engine = AnonymizerEngine()

    def operator_for(self, entity: str) -> OperatorSpec:
        return self.spec.entity_operators.get(entity, self.spec.default_entity_operator)

    def apply(self, op: OperatorSpec, text: str, entity: str, account_id: str | None) -> str:
        """One operator on one entity's exact original text."""
        kind = op.operator
        if kind == "replace":
            return f"<{entity}>"
        if kind == "redact":
            return ""
        if kind == "mask":
            keep = min(op.keep_last, len(text) // 2)
            return "*" * (len(text) - keep) + (text[len(text) - keep:] if keep else "")
        if kind == "pseudonymise":
            return self.pseudonymise(text, entity=entity, account_id=account_id, purpose=op.purpose)
        if kind == "truncate_ip":
            return truncate_ip(text)
        return text  # keep

    def anonymise_text(self, text: str, entities: list[dict], account_id: str | None) -> str:
        """``text`` with each entity span replaced by its operator's output."""
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        results, operators = [], {}
        for e in entities:
            start, end = int(e["start"]), int(e["end"])
            if not (0 <= start < end <= len(text)):
                continue
            results.append(RecognizerResult(e["type"], start, end, float(e.get("score", 1.0))))
            if e["type"] not in operators:
                op = self.operator_for(e["type"])
                operators[e["type"]] = OperatorConfig(
                    "custom", {"lambda": _bind(self.apply, op, e["type"], account_id)})
        if not results:
            return text
        return self._engine.anonymize(text, results, operators=operators).text

    def anonymise_envelope(self, env: dict) -> dict:
        """A new envelope whose ``record`` is anonymised and whose ``account_id`` is a
        pseudonym; ``fields`` keep category, source, rule and entity types (no offsets)."""
        account_id = env.get("account_id")
        replacements: dict[str, object] = {}
        fields_out = {}
        for ptr, f in env["fields"].items():
            ents = f.get("entities") or []
            fields_out[ptr] = {"category": f["category"], "source": f["source"], "rule": f["rule"],
                               "entities": sorted({e["type"] for e in ents})}
            value = _get(env["record"], ptr)
            if f.get("secret") or f["category"] == "account":
                op = self.spec.category_operators.get(f["category"])
                if f.get("secret") or op is None or op.operator != "keep":
                    replacements[ptr] = REDACTED if not isinstance(value, (int, float)) or isinstance(value, bool) else None
                continue
            if ents and isinstance(value, str):
                replacements[ptr] = self.anonymise_text(value, ents, account_id)
            elif ents and isinstance(value, (int, float)) and not isinstance(value, bool):
                replacements[ptr] = self.anonymise_text(str(value), ents, account_id)
            else:
                op = self.spec.category_operators.get(f["category"])
                if op is not None and op.operator not in ("keep",) and isinstance(value, str):
                    replacements[ptr] = self.apply(op, value, f["category"].upper(), account_id)
        record = _replace_all(env["record"], replacements)
        out = {k: v for k, v in env.items() if k not in ("fields", "record", "account_id")}
        out["account_id"] = (None if account_id is None else self.pseudonymise(
            account_id, entity="ACCOUNT", account_id=None, purpose="analytics"))
        out["fields"] = fields_out
        out["record"] = record
        out["anonymised"] = True
        return out


def _bind(fn, op, entity, account_id):
    return lambda text: fn(op, text, entity, account_id)


def _get(record, ptr: str):
    node = record
    for seg in pointers.split(ptr):
        if isinstance(node, list):
            node = node[int(seg)]
        else:
            node = node[seg]
    return node


def _replace_all(record: dict, replacements: dict[str, object]) -> dict:
    if not replacements:
        return record
    return pointers.replace(record, list(replacements), _Lookup(replacements))


class _Lookup:
    """``fn(value)`` for :func:`_replace_pointers`, returning the prepared replacement in order."""

    __slots__ = ("_values", "_i")

    def __init__(self, replacements: dict):
        self._values = list(replacements.values())
        self._i = 0

    def __call__(self, _old):
        v = self._values[self._i]
        self._i += 1
        return v
