"""Anonymisation of envelopes for analytics (``privacy.anonymise.v1`` -> ``privacy.anonymised.v1``)
and authorised re-identification of what the policy encrypts (``deanonymise``).

Operators come from the policy's ``anonymisation`` section (notice N-anon: data kept for
analysis survives only "in an anonymized form that does not specifically identify you") and
run through presidio-anonymizer: its ``replace``, ``redact`` and ``keep``, plus the project's
own operators registered with the engine (:mod:`pipeline.anonymise_operators`:
``PseudonymiseOperator``, ``EncryptOperator``, ``MaskOperator``, ``TruncateIpOperator``).
presidio-anonymizer is imported on first use only: it imports presidio-analyzer and spaCy
(~90 MB of resident memory), which a worker's serving process, whose anonymisation runs in
the detector processes, never needs.

==============  ===========================================  ===============================
operator        text span / structured value                 whole field without entity
==============  ===========================================  ===============================
replace         ``<ENTITY_TYPE>``                            ``<ENTITY_TYPE>`` / ``<ACCOUNT>``
redact          removed (``""``)                             ``null``
mask            ``****-****-****-0004`` (keep_last=4)        same on the string
pseudonymise    ``<PHONE_NUMBER:ps:k1:3f2a...>`` (16 hex)    same
encrypt         ``<PHONE_NUMBER:enc:m1:base64url>`` AES-SIV  same
truncate_ip     ``203.0.113.0/24``, ``2001:db8:1::/48``      same
keep            unchanged                                    unchanged
==============  ===========================================  ===============================

- Fields are anonymised by their tags: a secret gets ``secret_operator``; an account field
  the ``account`` category operator (both must conceal: replace, redact, pseudonymise or
  encrypt); a field with entities (declared by a rule, like ``/to`` PHONE_NUMBER or ``/ip``
  IP_ADDRESS, or detected in text) gets each span's entity operator; anything else its
  category operator. The envelope's ``account_id`` gets ``account_id_operator``, and any
  copy of the raw account id left inside a kept string (``/uri``) is replaced by it.
- Overlapping or nested spans are resolved here, before Presidio: each group of overlapping
  spans becomes one replacement, made by the most concealing operator of the group
  (redact > replace > pseudonymise > encrypt > mask > truncate_ip > keep; then the longest
  span, then the highest score) on **exactly its own original text**; the rest of the group
  is dropped (kept only when every other span of the group is ``keep``). So there are no
  nested or broken placeholders, and ``5500-0000-0000-0004.io`` with a card and a domain
  overlapping gives ``<CREDIT_CARD>``, the card operator having received the card number.
- Keys that are data themselves (``/tags/+14155550123``: a phone number, email, IP or a run
  of 7+ digits) are renamed to their pseudonym, in the record and in ``fields``.
- Offsets are Unicode code points (Python ``str`` indices), as in the envelope: an emoji
  before an entity never shifts a mask.
- Pseudonyms: HMAC-SHA256 over ``purpose``, account scope, entity type and the normalised
  value (phone numbers: digits only; emails: lower case), key from settings, key id in the
  output. Same value, same scope -> same pseudonym; another account or purpose -> another.
- Ciphertexts: AES-SIV (RFC 5297, deterministic) with the entity type as associated data,
  key derived by HKDF-SHA256 from the master key, key id in the output; retired keys stay
  readable by id (``Settings.master_old_keys``).
- Batches (:meth:`Anonymiser.anonymise_envelopes`, :meth:`Anonymiser.anonymise_values`): the
  rescans of a whole batch go to the detector in one call. In a worker with detector child
  processes, :meth:`Anonymiser.anonymise_batch_values` runs the batch in one of them
  (:func:`anonymise_in_detector`, the anonymiser pickled with its policy and keys, never its
  detector); the output is the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pipeline import pointers
from pipeline.errors import ConfigError, DecodeError, PipelineError
from pipeline.policy.model import OperatorSpec, Policy

if TYPE_CHECKING:
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import OperatorConfig

#: Operator strength for overlapping spans: the highest takes the overlap.
OPERATOR_RANK = {"redact": 6, "replace": 5, "pseudonymise": 4, "encrypt": 3, "mask": 2,
                 "truncate_ip": 1, "keep": 0}

log = logging.getLogger("privacy_pipeline.anonymise")

_RESIDUE = "__OVERLAP_RESIDUE__"
_TOKEN_RE = re.compile(r"<([A-Z][A-Z0-9_]*):enc:([A-Za-z0-9_.-]+):([A-Za-z0-9_-]+)>")


class ReidentificationError(PipelineError):
    """A token names a key id the key ring does not hold, or fails authentication."""


# -- keys -------------------------------------------------------------------------------------
class Pseudonymiser:
    """Keyed, scoped pseudonyms: ``<ENTITY:ps:<key id>:<16 hex>>``.

    ``key`` writes (tagged ``key_id``); ``old_keys`` (id -> key) stay usable to recompute or
    check pseudonyms made before a rotation (:meth:`matches`)."""

    __slots__ = ("_keys", "key_id")

    def __init__(self, key: bytes, key_id: str, old_keys: Mapping[str, bytes] | None = None):
        self._keys = dict(old_keys or {})
        self._keys[key_id] = key
        self.key_id = key_id

    def __repr__(self) -> str:
        return f"Pseudonymiser(key_id={self.key_id!r}, key_ids={sorted(self._keys)!r})"

    def __reduce__(self):  # pickled only to the worker's own detector processes
        old = {k: v for k, v in self._keys.items() if k != self.key_id}
        return (Pseudonymiser, (self._keys[self.key_id], self.key_id, old))

    def __call__(self, value: str, *, entity: str, account_id: str | None, purpose: str,
                 key_id: str | None = None) -> str:
        key_id = key_id or self.key_id
        try:
            key = self._keys[key_id]
        except KeyError:
            raise ReidentificationError(f"no pseudonym key with id {key_id!r}") from None
        norm = normalise_for_pseudonym(entity, value)
        msg = f"{purpose}\x1f{account_id or '-'}\x1f{entity}\x1f{norm}".encode("utf-8", "surrogatepass")
        digest = hmac.new(key, msg, hashlib.sha256).hexdigest()[:16]
        return f"<{entity}:ps:{key_id}:{digest}>"

    def matches(self, token: str, value: str, *, account_id: str | None, purpose: str) -> bool:
        """Whether ``token`` is the pseudonym of ``value`` in this scope, under the key id it
        names (a retired key included)."""
        m = re.fullmatch(r"<([A-Z][A-Z0-9_]*):ps:([A-Za-z0-9_.-]+):([0-9a-f]{16})>", token)
        if not m or m.group(2) not in self._keys:
            return False
        again = self(value, entity=m.group(1), account_id=account_id, purpose=purpose, key_id=m.group(2))
        return hmac.compare_digest(again, token)


def normalise_for_pseudonym(entity: str, value: str) -> str:
    """The form a value is pseudonymised in, so ``+1 415 555 0142`` in a body and
    ``+14155550142`` in ``/to`` join: phone numbers -> digits only; emails -> lower case;
    anything else stripped."""
    if entity == "PHONE_NUMBER":
        digits = "".join(c for c in value if c.isdigit())
        return digits or value.strip()
    if entity == "EMAIL_ADDRESS":
        return value.strip().lower()
    return value.strip()


def derive_siv_key(secret: bytes) -> bytes:
    """A 512-bit AES-SIV key (AES-256 for both halves) from any secret, by HKDF-SHA256."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=64, salt=None,
                info=b"privacy-pipeline/aes-siv/v1").derive(secret)


class SivCipher:
    """Deterministic, reversible encryption (AES-SIV) of entity values:
    ``<ENTITY:enc:<key id>:<base64url>>``. Writes with ``key_id``; reads any id it holds."""

    __slots__ = ("_args", "_siv", "key_id")

    def __init__(self, key: bytes, key_id: str, old_keys: Mapping[str, bytes] | None = None):
        from cryptography.hazmat.primitives.ciphers.aead import AESSIV

        self._siv = {kid: AESSIV(derive_siv_key(k)) for kid, k in (old_keys or {}).items()}
        self._siv[key_id] = AESSIV(derive_siv_key(key))
        self.key_id = key_id
        self._args = (key, key_id, dict(old_keys or {}))

    def __reduce__(self):  # pickled only to the worker's own detector processes
        return (SivCipher, self._args)

    def __repr__(self) -> str:
        return f"SivCipher(key_id={self.key_id!r}, key_ids={sorted(self._siv)!r})"

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._siv)

    def encrypt(self, value: str, *, entity: str) -> str:
        ct = self._siv[self.key_id].encrypt(value.encode("utf-8", "surrogatepass"), [entity.encode()])
        b64 = base64.urlsafe_b64encode(ct).rstrip(b"=").decode()
        return f"<{entity}:enc:{self.key_id}:{b64}>"

    def decrypt(self, token: str) -> str:
        """The plaintext of one token. Raises :class:`ReidentificationError` for an unknown key id, a
        token that is not one, or a failed authentication (wrong key, altered value)."""
        m = _TOKEN_RE.fullmatch(token)
        if not m:
            raise ReidentificationError("not an encrypted value")
        return self._decrypt(m)

    def _decrypt(self, m: re.Match) -> str:
        from cryptography.exceptions import InvalidTag

        entity, kid, b64 = m.groups()
        siv = self._siv.get(kid)
        if siv is None:
            raise ReidentificationError(f"no master key with id {kid!r}")
        try:
            ct = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
            return siv.decrypt(ct, [entity.encode()]).decode("utf-8", "surrogatepass")
        except (InvalidTag, ValueError):
            raise ReidentificationError(f"a value under key {kid!r} failed authentication") from None

    def decrypt_text(self, text: str, counts: dict | None = None) -> str:
        """``text`` with every token this cipher can read replaced by its plaintext; tokens it
        cannot read stay as they are (counted in ``counts["unknown_key"]`` / ``["invalid"]``)."""
        if ":enc:" not in text:
            return text

        def sub(m: re.Match) -> str:
            try:
                out = self._decrypt(m)
            except ReidentificationError as exc:
                if counts is not None:
                    kind = "unknown_key" if "no master key" in str(exc) else "invalid"
                    counts[kind] = counts.get(kind, 0) + 1
                return m.group(0)
            if counts is not None:
                counts["decrypted"] = counts.get("decrypted", 0) + 1
            return out

        return _TOKEN_RE.sub(sub, text)


def truncate_ip(value: str) -> str:
    """IPv4 -> its /24 network, IPv6 -> its /48 (``203.0.113.7`` -> ``203.0.113.0/24``);
    a value that does not parse -> ``<IP_ADDRESS>``."""
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        return "<IP_ADDRESS>"
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def mask(value: str, keep_last: int = 0, masking_char: str = "*") -> str:
    """Letters and digits replaced by ``masking_char`` except the last ``keep_last`` of them
    (never more than half); separators stay, so the shape survives:
    ``5500-0000-0000-0004`` -> ``****-****-****-0004``."""
    alnum = [i for i, c in enumerate(value) if c.isalnum()]
    keep = min(keep_last, len(alnum) // 2)
    hide = set(alnum[: len(alnum) - keep])
    return "".join(masking_char if i in hide else c for i, c in enumerate(value))


# -- the anonymiser -------------------------------------------------------------------------
class Anonymiser:
    """Applies the policy's operators to envelopes and texts; see the module docstring."""

    def __init__(self, policy: Policy, pseudonym_key: bytes | Pseudonymiser, pseudonym_key_id: str = "k0",
                 *, cipher: SivCipher | None = None):
        self.policy = policy
        self.spec = policy.anonymisation
        self.pseudonymise = (pseudonym_key if isinstance(pseudonym_key, Pseudonymiser)
                             else Pseudonymiser(pseudonym_key, pseudonym_key_id))
        self.cipher = cipher
        if cipher is None and self.spec.uses("encrypt"):
            raise ConfigError("the policy's anonymisation uses the encrypt operator but "
                              "PRIVACY_PIPELINE_MASTER_KEY is not set")
        self._engine: AnonymizerEngine | None = None  # built on first use (see :attr:`engine`)
        # Per-anonymiser caches: record key -> key_entity(key), Presidio operator configs
        # (:meth:`_config_cached`) and account pseudonyms (:meth:`_account_pseudonym`). Keys
        # and account ids can be data (a phone number as a key), so all are bounded
        # (:func:`_remember`); pickling (``__reduce__``) rebuilds the anonymiser without them.
        self._key_entities: dict[str, str | None] = {}
        self._configs: dict[tuple, OperatorConfig] = {}
        self._account_tokens: dict[tuple, str] = {}  # see _account_pseudonym

    def __reduce__(self):
        """Pickled (policy and keys, no detector) to run in the worker's detector processes
        (:func:`anonymise_in_detector`)."""
        return (_rebuild_anonymiser, (self.policy, self.pseudonymise, self.cipher))

    @classmethod
    def from_settings(cls, policy: Policy, settings) -> "Anonymiser":
        """Keys from :class:`~pipeline.settings.Settings`: the pseudonym key and its retired
        keys; the master key (AES-SIV) and its retired keys when set."""
        pseudo = Pseudonymiser(
            settings.pseudonym_key.get_secret_value().encode(), settings.pseudonym_key_id,
            {k: v.get_secret_value().encode() for k, v in settings.pseudonym_old_keys.items()})
        return cls(policy, pseudo, cipher=cipher_from_settings(settings, required=False))

    @property
    def engine(self) -> AnonymizerEngine:
        """presidio-anonymizer's ``AnonymizerEngine`` with the project's operators
        (:func:`pipeline.anonymise_operators.build_engine`), built on first use."""
        engine = self._engine
        if engine is None:
            from pipeline.anonymise_operators import build_engine

            engine = self._engine = build_engine()
        return engine

    # -- cached per pointer / per key ----------------------------------------------------------
    def value_at(self, record, ptr: str):
        """The value at JSON Pointer ``ptr`` in ``record`` (a list's segment as an index);
        raises ``KeyError``, ``IndexError``, ``TypeError`` or ``ValueError`` when it does not
        resolve, like a plain walk of :func:`pipeline.pointers.split` (the pointers of a
        shape's envelopes are split once: :func:`pipeline.pointers.split_cached`)."""
        node = record
        for seg in pointers.split_cached(ptr):
            node = node[int(seg)] if isinstance(node, list) else node[seg]
        return node

    def key_entity(self, key: str) -> str | None:
        """:func:`key_entity` of a record key, kept per key (bounded): records repeat the
        same few dozen key names."""
        try:
            return self._key_entities[key]
        except KeyError:
            return _remember(self._key_entities, key, key_entity(key))

    # -- operators ---------------------------------------------------------------------------
    def operator_for(self, entity: str) -> OperatorSpec:
        return self.spec.entity_operators.get(entity, self.spec.default_entity_operator)

    def _config(self, op: OperatorSpec, entity: str, account_id: str | None):
        from presidio_anonymizer.entities import OperatorConfig

        kind = op.operator
        if kind == "replace":
            return OperatorConfig("replace", {"new_value": f"<{entity}>"})
        if kind == "redact":
            return OperatorConfig("redact", {})
        if kind == "keep":
            return OperatorConfig("keep", {})
        if kind == "mask":
            return OperatorConfig("pp_mask", {"keep_last": op.keep_last, "masking_char": op.masking_char})
        if kind == "pseudonymise":
            return OperatorConfig("pp_pseudonymise", {"pseudonymiser": self.pseudonymise, "entity": entity,
                                                      "account_id": account_id, "purpose": op.purpose})
        if kind == "encrypt":
            return OperatorConfig("pp_encrypt", {"cipher": self.cipher, "entity": entity})
        if kind == "truncate_ip":
            return OperatorConfig("pp_truncate_ip", {})
        raise ConfigError(f"unknown anonymisation operator {kind!r}")

    def _config_cached(self, op: OperatorSpec, entity: str, account_id: str | None):
        """:meth:`_config`, kept per entity type and operator (and account for
        ``pseudonymise``, whose config names it; bounded): Presidio copies a config's params
        before using them, so one config serves every text. The key holds everything the
        config is made of, the key objects included, so a replaced spec or key is never
        served a stale config."""
        if not _hashable_scope(account_id):  # a malformed envelope's account id: as it was
            return self._config(op, entity, account_id)
        key = (entity, account_id if op.operator == "pseudonymise" else None, op.operator, op.keep_last,
               op.masking_char, op.purpose, self.pseudonymise, self.cipher)
        config = self._configs.get(key)
        if config is None:
            config = _remember(self._configs, key, self._config(op, entity, account_id))
        return config

    def _account_pseudonym(self, text: str, account_id: str | None, purpose: str) -> str:
        """``self.pseudonymise(text, entity="ACCOUNT", ...)``, kept per value, scope and key
        object (bounded): every envelope conceals its ``account_id`` and account fields, and
        a stream holds few accounts."""
        key = (text, account_id, purpose, self.pseudonymise)
        token = self._account_tokens.get(key)
        if token is None:
            token = _remember(self._account_tokens, key,
                              self.pseudonymise(text, entity="ACCOUNT", account_id=account_id, purpose=purpose))
        return token

    def apply(self, op: OperatorSpec, text: str, entity: str, account_id: str | None) -> str:
        """One operator on one value's exact text (the operators Presidio runs, called
        directly: used for whole fields and overlap-group winners)."""
        kind = op.operator
        if kind == "replace":
            return f"<{entity}>"
        if kind == "redact":
            return ""
        if kind == "keep":
            return text
        if kind == "mask":
            return mask(text, op.keep_last, op.masking_char)
        if kind == "pseudonymise":
            if entity == "ACCOUNT" and _hashable_scope(account_id):  # the same few in every record
                return self._account_pseudonym(text, account_id, op.purpose)
            return self.pseudonymise(text, entity=entity, account_id=account_id, purpose=op.purpose)
        if kind == "encrypt":
            if self.cipher is None:
                raise ConfigError("the encrypt operator needs PRIVACY_PIPELINE_MASTER_KEY")
            return self.cipher.encrypt(text, entity=entity)
        if kind == "truncate_ip":
            return truncate_ip(text)
        raise ConfigError(f"unknown anonymisation operator {kind!r}")

    # -- text --------------------------------------------------------------------------------
    def plan(self, text: str, entities: list[dict]) -> list[tuple[int, int, dict | None, list[dict]]]:
        """Non-overlapping replacements for ``entities`` (code-point spans into ``text``):
        ``(start, end, winner, group)`` per overlap group, in text order. ``winner`` is the
        entity whose operator makes the group's output; ``end - start`` may exceed the
        winner's span (the rest of the group)."""
        n = len(text)
        if len(entities) == 1:  # the common case: one span, its own group and winner
            e = entities[0]
            try:
                start, end = max(0, int(e["start"])), min(n, int(e["end"]))
            except (KeyError, TypeError, ValueError):
                return []
            if start >= end:
                return []
            span = dict(e, start=start, end=end)
            self._rank(span)  # what max() evaluates below: a bad type or score raises the same
            return [(start, end, span, [span])]
        spans = []
        for e in entities:
            try:
                start, end = max(0, int(e["start"])), min(n, int(e["end"]))
            except (KeyError, TypeError, ValueError):
                continue
            if start < end:
                spans.append(dict(e, start=start, end=end))
        spans.sort(key=lambda e: (e["start"], -e["end"]))
        groups: list[list[dict]] = []
        group_end = -1
        for e in spans:
            if groups and e["start"] < group_end:
                groups[-1].append(e)
                group_end = max(group_end, e["end"])
            else:
                groups.append([e])
                group_end = e["end"]
        out = []
        for g in groups:
            winner = max(g, key=self._rank)
            out.append((min(e["start"] for e in g), max(e["end"] for e in g), winner, g))
        return out

    def _rank(self, e: dict) -> tuple:
        """Which span of an overlap group wins (:meth:`plan`): the most concealing operator,
        then the longest span, the highest score, the earliest start."""
        return (OPERATOR_RANK[self.operator_for(e["type"]).operator],
                e["end"] - e["start"], float(e.get("score", 1.0)), -e["start"])

    def anonymise_text(self, text: str, entities: list[dict], account_id: str | None,
                       applied: set | None = None) -> str:
        """``text`` with each entity span replaced by its operator's output (presidio-anonymizer);
        overlapping spans resolved first (module docstring). ``applied`` collects the
        operator names used."""
        plan = self.plan(text, entities)
        if not plan:
            return text
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        engine = self.engine
        results, operators = [], {}
        for i, (start, end, winner, group) in enumerate(plan):
            op = self.operator_for(winner["type"])
            if applied is not None:
                applied.add(op.operator)
            if len(group) == 1:
                results.append(RecognizerResult(winner["type"], start, end, 1.0))
                if winner["type"] not in operators:
                    operators[winner["type"]] = self._config_cached(op, winner["type"], account_id)
                continue
            # An overlap group: the winner's operator on exactly the winner's text, for the
            # whole group; the rest kept only when every other span of the group is ``keep``.
            ws, we = winner["start"], winner["end"]
            value = self.apply(op, text[ws:we], winner["type"], account_id)
            if all(self.operator_for(e["type"]).operator == "keep" for e in group if e is not winner):
                value = text[start:ws] + value + text[we:end]
            key = f"{_RESIDUE}{i}"
            results.append(RecognizerResult(key, start, end, 1.0))
            operators[key] = OperatorConfig("pp_fixed", {"value": value})
        return engine.anonymize(text, results, operators=operators,
                                      merge_entities_with_spaces=False).text

    # -- envelopes ---------------------------------------------------------------------------
    def anonymise_value(self, value, field: dict, account_id: str | None, applied: set):
        """The anonymised value of one leaf, by its tags (module docstring)."""
        ents = field.get("entities") or []
        if field.get("secret"):
            return self._whole(self.spec.secret_operator, value, "SECRET", account_id, applied)
        if field["category"] == "account":
            op = self.spec.category_operators["account"]
            entity = ents[0]["type"] if ents else "ACCOUNT"
            return self._whole(op, value, entity, account_id, applied)
        if ents and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return self.anonymise_text(str(value) if not isinstance(value, str) else value, ents,
                                       account_id, applied)
        category = field["category"]
        op = self.spec.category_operators.get(category)
        if op is None:
            return value
        if op.operator == "keep":  # the commonest (usage fields): :meth:`_whole` of ``keep``
            applied.add("keep")
            return value
        return self._whole(op, value, category.upper(), account_id, applied)

    def _whole(self, op: OperatorSpec, value, entity: str, account_id: str | None, applied: set):
        applied.add(op.operator)
        if op.operator == "keep" or value is None or isinstance(value, (bool, dict, list)):
            return value  # null, booleans and empty containers carry no identifying value
        if op.operator == "redact":
            return None
        return self.apply(op, value if isinstance(value, str) else str(value), entity, account_id)

    #: Detector for :meth:`rescan` (set by the Processor); ``None`` skips the rescan.
    detector = None
    #: Whether :meth:`anonymise_batch_values` runs in a detector process when ``detector`` is
    #: a pool of them (set by the Processor from ``Settings.anonymise_in_detector``).
    in_detector = False
    _pickled: tuple | None = None

    def anonymise_batch_values(self, values: Sequence[bytes | None]) -> list[tuple]:
        """:meth:`anonymise_values`, in one of the detector's child processes when
        :attr:`in_detector` is set and the detector is a pool (``run_task``): the CPU work
        then leaves the worker's serving process (one GIL shared with Kafka I/O, routing and
        sealing) for the process that also runs the rescans' NER, in one round trip. If that
        fails (the child died twice, or the pool is closed), here. Never raises."""
        run_task = getattr(self.detector, "run_task", None) if self.in_detector else None
        if run_task is not None:
            try:
                config_id, config = self._config_for_detector()
                out = run_task("pipeline.anonymise:anonymise_in_detector", (config_id, config, list(values)))
                if len(out) == len(values):
                    return out
                log.error("anonymising in a detector process gave %d results for %d values", len(out), len(values))
            except Exception as exc:
                log.warning("anonymising in a detector process failed (%s); anonymising here",
                            type(exc).__name__)
        return self.anonymise_values(values)

    def _config_for_detector(self) -> tuple[bytes, bytes]:
        """``(id, pickled self)`` for :func:`anonymise_in_detector`, rebuilt when the policy
        or a key object was replaced."""
        import pickle

        ident = (id(self.policy), id(self.pseudonymise), id(self.cipher))
        if self._pickled is None or self._pickled[0] != ident:
            config = pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)
            self._pickled = (ident, hashlib.sha256(config).digest(), config)
        return self._pickled[1], self._pickled[2]

    def rescan(self, env: dict) -> dict:
        """Scan the text of fields that were kept but never scanned (usage fields such as
        ``error_message``, name-hinted notes, unknown array items...) when the value could
        hold PII (an ``@``, four or more digits, or three words), so their entity spans are
        anonymised too: the anonymised feed promises no direct identifiers in any field.
        Returns ``env`` itself when nothing needed scanning."""
        if self.detector is None:
            return env
        jobs = self.rescan_jobs(env)
        if not jobs:
            return env
        return _with_spans(env, jobs, self.detector.analyze_batch([v for _, v in jobs]))

    def rescan_jobs(self, env: dict) -> list[tuple[str, str]]:
        """``(pointer, text)`` of the fields :meth:`rescan` sends to the detector (empty
        without a detector)."""
        if self.detector is None:
            return []
        jobs = []
        record = env["record"]
        value_at = self.value_at
        for ptr, f in env["fields"].items():
            if f.get("entities") or f.get("secret") or f["category"] == "account" or _scanned(f):
                continue
            try:
                value = value_at(record, ptr)
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            if isinstance(value, str) and _could_hold_pii(value):
                jobs.append((ptr, value))
        return jobs

    def anonymise_envelopes(self, envs: Sequence[dict]) -> list[dict | Exception]:
        """:meth:`anonymise_envelope` of each envelope, same order, with one detector call for
        the rescans of all of them (not one per envelope: each call is an IPC round trip to
        the detector children and a separate NER pass). An envelope that fails gives its
        exception in its place (never raised). If the batched detector call fails, each
        envelope is rescanned on its own, so a failure stays with the envelope that caused it.
        """
        jobs: list[list[tuple[str, str]]] = []
        envs = list(envs)
        failed: dict[int, Exception] = {}
        for k, env in enumerate(envs):
            try:
                envs[k] = env = self.with_unlisted(env)
                jobs.append(self.rescan_jobs(env))
            except Exception as exc:  # a malformed envelope: its exception in its place
                failed[k] = exc
                jobs.append([])
        texts = [v for js in jobs for _, v in js]
        found: list | None = None
        if texts:
            try:
                found = self.detector.analyze_batch(texts)
                if len(found) != len(texts):
                    found = None
            except Exception:
                found = None
        out: list[dict | Exception] = []
        pos = 0
        for k, (env, js) in enumerate(zip(envs, jobs)):
            if k in failed:
                out.append(failed[k])
                continue
            try:
                if not js:
                    out.append(self._anonymise_scanned(env))
                elif found is None:  # the batched call failed: on its own (rescan raises here)
                    out.append(self.anonymise_envelope(env))
                else:
                    out.append(self._anonymise_scanned(_with_spans(env, js, found[pos:pos + len(js)])))
            except Exception as exc:
                out.append(exc)
            pos += len(js)
        return out

    def anonymise_values(self, values: Sequence[bytes | None]) -> list[tuple]:
        """Encoded envelopes (``privacy.anonymise.v1`` values) -> one tuple per value, same
        order: ``("ok", account token or None, encoded anonymised envelope, event_id,
        categories, entity types, policy_version, event_type)`` (categories and entity types
        comma-separated, for the output's headers), or ``("dead", kind, message)`` for a value
        that is not an envelope or failed (the message names no content). Rescans in one
        detector call (:meth:`anonymise_envelopes`). Never raises."""
        from pipeline.codec import decode_object, encode

        out: list[tuple | None] = [None] * len(values)
        envs, where = [], []
        for i, value in enumerate(values):
            try:
                env = decode_object(value)
                if "fields" not in env or "record" not in env:
                    raise DecodeError("not_envelope", "the value is not a classification envelope")
            except DecodeError as exc:
                out[i] = ("dead", exc.kind, exc.message)
                continue
            except Exception as exc:
                out[i] = ("dead", "anonymise_error", f"anonymisation failed with {type(exc).__name__}")
                continue
            envs.append(env)
            where.append(i)
        for i, anon in zip(where, self.anonymise_envelopes(envs)):
            try:
                if isinstance(anon, DecodeError):
                    out[i] = ("dead", anon.kind, anon.message)
                    continue
                if isinstance(anon, Exception):
                    raise anon
                entities = ",".join(sorted({t for f in anon["fields"].values() for t in f["entities"]}))
                out[i] = ("ok", anon.get("account_id") or None, encode(anon), anon["event_id"],
                          ",".join(anon.get("categories", [])), entities, str(anon["policy_version"]),
                          anon.get("event_type"))
            except Exception as exc:
                out[i] = ("dead", "anonymise_error", f"anonymisation failed with {type(exc).__name__}")
        return out  # type: ignore[return-value]

    def anonymise_envelope(self, env: dict) -> dict:
        """A new envelope whose ``record`` is anonymised and whose ``account_id`` is concealed
        (``account_id_operator``); ``fields`` keep category, source and rule, list entity
        types (no offsets) and the ``operators`` applied. Unscanned text fields are scanned
        first (:meth:`rescan`). ``env`` is not modified; the new ``record`` copies only the
        containers on the way to a changed value or key and shares the rest with ``env``'s."""
        return self._anonymise_scanned(self.rescan(self.with_unlisted(env)))

    def with_unlisted(self, env: dict) -> dict:
        """``env``, checked, or a copy whose ``fields`` also tag each string or number leaf of
        its ``record`` that they do not list: as the policy's default category, decided by
        ``default`` (DESIGN.md: every field is tagged; what no rule decides is the default),
        so it is rescanned and anonymised like any unknown field instead of passing through
        untouched. Envelopes made by the classifier list every leaf; this guards the
        anonymised feed against a malformed or hand-made envelope.

        Raises :class:`~pipeline.errors.DecodeError` (kind ``invalid_envelope``, the message
        names a masked pointer, never content) for a ``fields`` entry of a leaf that is not
        one the classifier makes (:func:`_entry_problem`): a malformed entry would otherwise
        decide how its leaf, or the rescan of the others, is treated. ``KeyError`` or
        ``TypeError`` for a value that is not an envelope."""
        fields = env["fields"]
        unlisted = None
        listed = 0  # entries checked against their leaf
        for ptr, _norm, value in pointers.walk_leaves(env["record"]):
            entry = fields.get(ptr)
            if entry is not None:
                _check_entry(ptr, entry, value)
                listed += 1
                continue
            if value.__class__ not in _TAGGED_LEAVES:
                continue
            if unlisted is None:
                unlisted = dict(fields)
            unlisted[ptr] = {"category": self.policy.default.category, "source": "default",
                             "rule": "default", "entities": []}
        if listed != len(fields):  # entries of pointers the record lacks (restricted envelopes
            leaves = {ptr for ptr, _norm, _value in pointers.walk_leaves(env["record"])}  # list some):
            for ptr, entry in fields.items():  # skipped later, but they must be entries
                if ptr not in leaves:
                    _check_entry(str(ptr), entry, _ABSENT)
        return env if unlisted is None else dict(env, fields=unlisted)

    def _anonymise_scanned(self, env: dict) -> dict:
        """:meth:`anonymise_envelope` of an envelope already rescanned."""
        account_id = env.get("account_id")
        account_token = None
        if account_id is not None:
            account_token = self.apply(self.spec.account_id_operator, str(account_id), "ACCOUNT", None) or None
        replacements: dict[str, object] = {}
        fields_out = {}
        record = env["record"]
        value_at, anonymise_value = self.value_at, self.anonymise_value
        for ptr, f in env["fields"].items():
            try:
                value = value_at(record, ptr)
            except (KeyError, IndexError, ValueError, TypeError):
                continue  # a restricted envelope may list a pointer its record lacks
            applied: set[str] = set()
            new = anonymise_value(value, f, account_id, applied)
            if account_id and isinstance(new, str) and account_id in new:
                new = new.replace(account_id, account_token or "<ACCOUNT>")
            if new is not value and new != value:
                replacements[ptr] = new
            ents = f.get("entities")
            out_f = {"category": f["category"], "source": f["source"], "rule": f.get("rule"),
                     "entities": sorted({e["type"] for e in ents}) if ents else [],
                     "operators": sorted(applied) if len(applied) > 1 else list(applied)}
            if f.get("secret"):
                out_f["secret"] = True
            fields_out[ptr] = out_f
        record = _replace_all(record, replacements)
        rename = _KeyRenamer(self, account_id)
        record = rename.record(record)
        if rename.used:
            fields_out = {rename.pointer(p): f for p, f in fields_out.items()}
        out = {k: v for k, v in env.items() if k not in ("fields", "record", "account_id")}
        out["account_id"] = account_token
        if account_id and account_id in str(out.get("event_id", "")):  # an account event's own id
            out["event_id"] = str(out["event_id"]).replace(account_id, account_token or "<ACCOUNT>")
        out["fields"] = fields_out
        out["record"] = record
        out["anonymised"] = True
        return out


_LONG_DIGITS = re.compile(r"\d{7,}")
_KEY_KINDS = {"phone": "PHONE_NUMBER", "email": "EMAIL_ADDRESS", "ip": "IP_ADDRESS"}


def key_entity(key: str) -> str | None:
    """The entity a record key holds when the key itself is data (DESIGN.md: keys can be
    phone numbers): a phone number, email or IP address, or any run of 7+ digits."""
    from pipeline.values import value_kind

    if "@" not in key and not any(c.isdigit() for c in key):
        return None
    kind, _ = value_kind(key)
    if kind in _KEY_KINDS:
        return _KEY_KINDS[kind]
    return "PHONE_NUMBER" if _LONG_DIGITS.search(key) else None


class _KeyRenamer:
    """Renames data-like keys of a record (and the pointers through them) to pseudonyms:
    always pseudonyms, whatever the entity's operator, so two keys never collide."""

    __slots__ = ("_anon", "_account_id", "_cache", "used")

    def __init__(self, anon: Anonymiser, account_id: str | None):
        self._anon, self._account_id = anon, account_id
        self._cache: dict[str, str] = {}
        self.used = False

    def key(self, key: str) -> str:
        """The key's new name: ``key`` itself unless it is data or holds the account id."""
        entity = self._anon.key_entity(key)
        if entity is None and not (self._account_id and self._account_id in key):
            return key  # the commonest: a plain name
        try:
            return self._cache[key]
        except KeyError:
            pass
        if self._account_id and self._account_id in key:
            token = self._anon.apply(self._anon.spec.account_id_operator, self._account_id, "ACCOUNT", None)
            new = key.replace(self._account_id, token or "<ACCOUNT>")
            self.used = True
        elif entity is None:
            new = key
        else:
            op = self._anon.operator_for(entity)
            purpose = op.purpose if op.operator == "pseudonymise" else "record-key"
            new = self._anon.pseudonymise(key, entity=entity, account_id=self._account_id, purpose=purpose)
            self.used = True
        self._cache[key] = new
        return new

    def record(self, node):
        """``node`` (a JSON value) with its data-like keys renamed, at any depth. Containers
        are rebuilt only on the way to a renamed key: ``node`` itself comes back when no key
        under it changes (most records: the output then shares those containers with the
        input, and encodes to the same bytes as a copy)."""
        if isinstance(node, dict):
            items = []
            changed = False
            for k, v in node.items():  # keys in order, each before its value, as a rebuild
                new_k = self.key(k) if isinstance(k, str) else k
                new_v = self.record(v) if isinstance(v, (dict, list)) else v
                changed = changed or new_k is not k or new_v is not v
                items.append((new_k, new_v))
            return dict(items) if changed else node
        if isinstance(node, list):
            items = [self.record(v) if isinstance(v, (dict, list)) else v for v in node]
            return items if any(new is not old for new, old in zip(items, node)) else node
        return node

    def pointer(self, ptr: str) -> str:
        return pointers.join([self.key(seg) for seg in pointers.split_cached(ptr)])


def cipher_from_settings(settings, *, required: bool) -> SivCipher | None:
    """The AES-SIV cipher of the settings' master key (and retired master keys); ``None``
    when no master key is set, unless ``required`` (then :class:`ConfigError`)."""
    if settings.master_key is None:
        if required:
            raise ConfigError("PRIVACY_PIPELINE_MASTER_KEY (or PRIVACY_PIPELINE_MASTER_KEY_FILE) "
                              "must be set to re-identify encrypted values")
        return None
    return SivCipher(settings.master_key.get_secret_value().encode(), settings.master_key_id,
                     {k: v.get_secret_value().encode() for k, v in settings.master_old_keys.items()})


def _rebuild_anonymiser(policy: Policy, pseudonymiser: Pseudonymiser, cipher: SivCipher | None) -> Anonymiser:
    return Anonymiser(policy, pseudonymiser, cipher=cipher)


#: In a detector process: config id -> the :class:`Anonymiser` unpickled from it (the latest).
_IN_DETECTOR: dict[bytes, Anonymiser] = {}


def anonymise_in_detector(detector, payload: tuple) -> list[tuple]:
    """:meth:`Anonymiser.anonymise_values` run in a detector child process
    (``PooledDetector.run_task``), its rescans on that process's own ``detector``.

    ``payload``: ``(config id, pickled Anonymiser, values)``; the anonymiser is unpickled once
    per config id (a restarted child gets it again with the next call)."""
    config_id, config, values = payload
    anon = _IN_DETECTOR.get(config_id)
    if anon is None:
        import pickle

        anon = pickle.loads(config)
        _IN_DETECTOR.clear()
        _IN_DETECTOR[config_id] = anon
    anon.detector = detector
    return anon.anonymise_values(values)


def _with_spans(env: dict, jobs: list[tuple[str, str]], found) -> dict:
    """``env`` with the detector's spans (``found``, one list per job) set as the entities of
    the rescanned fields (``jobs``: ``(pointer, text)``); a new envelope, ``env`` unchanged."""
    fields = dict(env["fields"])
    for (ptr, _value), spans in zip(jobs, found):
        if spans:
            fields[ptr] = dict(fields[ptr], entities=[s.to_json() for s in spans])
    return dict(env, fields=fields)


def _replace_all(record: dict, replacements: dict[str, object]) -> dict:
    """:func:`pipeline.pointers.replace` of ``record`` with ``replacements`` (pointer -> new
    value, in order); ``record`` itself when there is nothing to replace."""
    if not replacements:
        return record
    return pointers.replace(record, list(replacements), _Lookup(replacements))


def _hashable_scope(account_id) -> bool:
    """Whether an envelope's ``account_id`` can be part of a cache key (a string or none; a
    malformed envelope may hold anything, which the operators only format)."""
    return account_id is None or isinstance(account_id, str)


#: Most entries a per-anonymiser cache keyed by pointers or record keys holds (:func:`_remember`).
_CACHE_MAX = 4096


def _remember(cache: dict, key, value):
    """``cache[key] = value`` (returned), emptying ``cache`` first when it holds
    :data:`_CACHE_MAX` entries: the caches are keyed by pointers and record keys, which can
    be data (a phone number as a key), so they must not grow with the stream."""
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value
    return value


class _Lookup:
    """``fn(value)`` for :func:`pipeline.pointers.replace`: the prepared replacements in order."""

    __slots__ = ("_values", "_i")

    def __init__(self, replacements: dict):
        self._values = list(replacements.values())
        self._i = 0

    def __call__(self, _old):
        v = self._values[self._i]
        self._i += 1
        return v


_SAFE_SHAPES = frozenset({"timestamp", "number", "sid", "boolean", "media_url"})
_CATEGORIES = frozenset({"content", "usage", "account"})
_SOURCES = frozenset({"rule", "name", "detector", "default"})


def _check_entry(ptr: str, entry, value) -> None:
    """Raise :class:`~pipeline.errors.DecodeError` ``invalid_envelope`` naming the masked
    ``ptr`` when :func:`_entry_problem` finds one."""
    problem = _entry_problem(entry, value)
    if problem is not None:
        raise DecodeError("invalid_envelope", f"the fields entry of {pointers.mask_pointer(ptr)} {problem}")


#: :func:`_entry_problem`'s ``value`` for an entry whose pointer the record lacks.
_ABSENT = object()


def _entry_problem(entry, value) -> str | None:
    """What makes ``entry`` not a field entry the classifier makes for a leaf holding
    ``value`` (``schemas/envelope.schema.json``): an object with a known ``category`` and
    ``source``, a string ``rule`` and a list of ``entities``, each with a string ``type`` and
    integer offsets ``0 <= start < end <= len(value)`` into a string value (any ``end`` for
    :data:`_ABSENT`, a pointer the record lacks); ``None`` when it is one. Names what is
    wrong, never a value."""
    if entry.__class__ is not dict:
        return "is not an object"
    if entry.get("category") not in _CATEGORIES:
        return "has no known category"
    if entry.get("source") not in _SOURCES or not isinstance(entry.get("rule"), str):
        return "has no known source or no rule"
    ents = entry.get("entities")
    if ents.__class__ is not list:
        return "has no entities list"
    for e in ents:
        if e.__class__ is not dict or not isinstance(e.get("type"), str):
            return "has an entity without a type"
        start, end = e.get("start"), e.get("end")
        if not (start.__class__ is int and end.__class__ is int and 0 <= start < end
                and (value is _ABSENT or (isinstance(value, str) and end <= len(value)))):
            return "has an entity span outside its value"
    return None

#: Leaf types :meth:`Anonymiser.with_unlisted` tags when an envelope does not (booleans,
#: nulls and empty containers hold no identifier).
_TAGGED_LEAVES = frozenset({str, int, float})


def _scanned(field: dict) -> bool:
    """Whether the classifier already ran the detector on this field: content rules (the
    policy's scanned text fields) and unknown free text."""
    return (field["category"] == "content" and field["source"] == "rule") or field["rule"] == "value:free_text"


def _could_hold_pii(value: str) -> bool:
    """Cheap pre-filter for :meth:`Anonymiser.rescan`: not a timestamp, number, id or media
    URL, and an ``@``, 4+ digits or 3+ words. The character tests come first (most short
    values fail them), the shape (``value_kind``) only for a value that passes them."""
    if not ("@" in value or value.count(" ") >= 2 or _has_four_digits(value)):
        return False
    if value.startswith("/") and " " not in value and "@" not in value:
        return False  # an API resource path (/2010-04-01/Accounts/AC.../Calls/CA....json)
    from pipeline.values import value_kind

    return value_kind(value)[0] not in _SAFE_SHAPES


_FOUR_ASCII_DIGITS = re.compile(r"[0-9](?:[^0-9]*[0-9]){3}")


def _has_four_digits(value: str) -> bool:
    """Whether ``value`` has 4 or more characters ``str.isdigit`` accepts (an ASCII string:
    one regular expression, ``isdigit`` being ``[0-9]`` there)."""
    if value.isascii():
        return _FOUR_ASCII_DIGITS.search(value) is not None
    digits = 0
    for c in value:
        if c.isdigit():
            digits += 1
            if digits >= 4:
                return True
    return False


_MOVED_OPERATORS = frozenset(("PseudonymiseOperator", "EncryptOperator", "MaskOperator", "TruncateIpOperator"))


def __getattr__(name: str):
    """The operator classes, now in :mod:`pipeline.anonymise_operators` (imported on first
    use, with presidio-anonymizer)."""
    if name in _MOVED_OPERATORS:
        from pipeline import anonymise_operators

        return getattr(anonymise_operators, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
