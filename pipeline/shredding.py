"""Crypto-shredding of retained content (issue 7; notice N-deletion).

Content retained for an account is encrypted with a per-account **data key** (DEK,
AES-256-GCM). Data keys are **wrapped** with a master key from settings (AES-256-GCM, the
account id as associated data) and published to a compacted key topic, one message per
``<account id>/<dek id>``. Deleting an account writes a tombstone for each of its keys: every
retained copy of its content becomes unreadable without rewriting the log.

Key ids: every wrapped key names its master key id (``kid``) so master keys can be rotated
(old ids stay readable while their key is configured; :meth:`KeyRing.stale` lists the keys to
re-wrap with the current one); every ciphertext names its ``dek_id``.

Purity: the worker holds the key state (a :class:`KeyRing` fed from the key topic);
:meth:`KeyRing.for_batch` gives the processor a copy-on-write view of it, so processing a batch
never changes the caller's state: new keys and tombstones come back as key-topic messages.

Without a configured master key the worker uses :data:`DEV_MASTER_KEY_ID`, a built-in
development key (logged as a warning): deletion still shreds (the data key is gone), but the
wrapped keys in the topic are only as safe as the topic itself.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipeline.codec import decode_object, encode
from pipeline.errors import ConfigError, PipelineError


class KeyShreddedError(PipelineError):
    """The data key of an account is gone (deleted) or unknown: its content cannot be read."""


#: Master key id used when no ``PRIVACY_PIPELINE_MASTER_KEY`` is configured (development only).
DEV_MASTER_KEY_ID = "dev"
_DEV_MASTER_SECRET = b"privacy-pipeline-development-master-key-not-for-production"


def master_keys(settings) -> tuple[dict[str, bytes], str, bool]:
    """``(masters, current id, is_dev)`` from settings: ``master_key``/``master_key_id`` write,
    ``master_old_keys`` stay readable. Without ``master_key``: the development key."""
    if settings.master_key is None:
        return {DEV_MASTER_KEY_ID: derive_master_key(_DEV_MASTER_SECRET)}, DEV_MASTER_KEY_ID, True
    masters = {kid: derive_master_key(v.get_secret_value()) for kid, v in settings.master_old_keys.items()}
    masters[settings.master_key_id] = derive_master_key(settings.master_key.get_secret_value())
    return masters, settings.master_key_id, False


def derive_master_key(secret: str | bytes) -> bytes:
    """A 32-byte AES key from a configured master secret (SHA-256 of its bytes; a 32-byte
    base64 value is used as it is)."""
    raw = secret.encode() if isinstance(secret, str) else secret
    try:
        decoded = base64.b64decode(raw, validate=True)
        if len(decoded) == 32:
            return decoded
    except ValueError:
        pass
    return hashlib.sha256(raw).digest()


@dataclass
class KeyRing:
    """Master keys by id plus the unwrapped data keys known to this process.

    ``masters``: master key id -> 32-byte key; ``current`` wraps new data keys.
    ``data_keys``: account id -> {dek id: key}.
    """

    masters: dict[str, bytes]
    current: str
    data_keys: MutableMapping[str, dict[str, bytes]] = field(default_factory=dict)
    #: key-topic key -> master key id it is wrapped with (for :meth:`stale`)
    wrapped_with: dict[bytes, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.current not in self.masters:
            raise ConfigError(f"master key id {self.current!r} is not configured")

    @classmethod
    def from_settings(cls, settings) -> "KeyRing":
        masters, current, _ = master_keys(settings)
        return cls(masters, current)

    def for_batch(self, base: Mapping[str, Mapping[str, bytes]] | None = None) -> "KeyRing":
        """A ring with the same master keys over a copy-on-write view of ``base`` (default: this
        ring's keys): creating or forgetting keys in it never changes ``base``."""
        return KeyRing(self.masters, self.current, _Overlay(self.data_keys if base is None else base))

    # -- data keys -----------------------------------------------------------------------
    def key_for(self, account_id: str) -> tuple[str, bytes, tuple[bytes, bytes] | None]:
        """``(dek_id, dek, new_key_message)`` for an account; ``new_key_message`` is the
        ``(key, value)`` to publish to the key topic when the key was just created."""
        keys = self.data_keys.get(account_id)
        if keys:
            dek_id = max(keys)
            return dek_id, keys[dek_id], None
        dek_id = os.urandom(6).hex()
        dek = AESGCM.generate_key(bit_length=256)
        self.data_keys.setdefault(account_id, {})[dek_id] = dek
        return dek_id, dek, (key_topic_key(account_id, dek_id), self.wrap(account_id, dek_id, dek))

    def wrap(self, account_id: str, dek_id: str, dek: bytes) -> bytes:
        """The key-topic value: ``{"account_id", "dek_id", "kid", "nonce", "wrapped"}`` (JSON)."""
        nonce = os.urandom(12)
        ct = AESGCM(self.masters[self.current]).encrypt(nonce, dek, _aad(account_id, dek_id))
        return encode({"account_id": account_id, "dek_id": dek_id, "kid": self.current,
                       "nonce": _b64(nonce), "wrapped": _b64(ct)})

    def apply(self, key: bytes, value: bytes | None) -> None:
        """Apply one key-topic message (a tombstone forgets the key). Unknown master key ids
        and damaged values are ignored (the content stays unreadable)."""
        account_id, _, dek_id = key.decode("utf-8", "replace").rpartition("/")
        if value is None:
            self.wrapped_with.pop(key, None)
            keys = self.data_keys.get(account_id)
            if keys is not None and dek_id in keys:
                # copy-on-write: a batch may be reading the inner dict in another thread
                rest = {d: k for d, k in keys.items() if d != dek_id}
                if rest:
                    self.data_keys[account_id] = rest
                else:
                    del self.data_keys[account_id]
            return
        try:
            rec = decode_object(value)
            master = self.masters[rec["kid"]]
            dek = AESGCM(master).decrypt(_unb64(rec["nonce"]), _unb64(rec["wrapped"]),
                                         _aad(rec["account_id"], rec["dek_id"]))
        except Exception:
            return
        self.data_keys[rec["account_id"]] = {**self.data_keys.get(rec["account_id"], {}), rec["dek_id"]: dek}
        self.wrapped_with[key_topic_key(rec["account_id"], rec["dek_id"])] = rec["kid"]

    def forget(self, account_id: str) -> list[bytes]:
        """Drop an account's keys; returns the key-topic keys to tombstone."""
        keys = self.data_keys.pop(account_id, {})
        for d in keys:
            self.wrapped_with.pop(key_topic_key(account_id, d), None)
        return [key_topic_key(account_id, d) for d in sorted(keys)]

    def stale(self) -> list[tuple[bytes, bytes]]:
        """Key-topic messages re-wrapping every known data key wrapped with an old master key
        (after a rotation; once they are written the old master key can be retired)."""
        out = []
        for topic_key, kid in list(self.wrapped_with.items()):
            if kid == self.current:
                continue
            account_id, _, dek_id = topic_key.decode().rpartition("/")
            dek = self.data_keys.get(account_id, {}).get(dek_id)
            if dek is not None:
                out.append((topic_key, self.wrap(account_id, dek_id, dek)))
        return out

    # -- content -------------------------------------------------------------------------
    def encrypt(self, account_id: str, plaintext: bytes) -> tuple[dict, tuple[bytes, bytes] | None]:
        """``({"alg", "dek_id", "nonce", "ciphertext"}, new_key_message or None)``."""
        dek_id, dek, new = self.key_for(account_id)
        nonce = os.urandom(12)
        ct = AESGCM(dek).encrypt(nonce, plaintext, account_id.encode())
        return {"alg": "AES-256-GCM", "dek_id": dek_id, "nonce": _b64(nonce), "ciphertext": _b64(ct)}, new

    def decrypt(self, account_id: str, blob: dict) -> bytes:
        """The plaintext of :meth:`encrypt`'s blob. Raises :class:`KeyShreddedError` when the
        account's key is gone."""
        dek = self.data_keys.get(account_id, {}).get(blob.get("dek_id", ""))
        if dek is None:
            raise KeyShreddedError("the data key of this account is not available (shredded or unknown)")
        return AESGCM(dek).decrypt(_unb64(blob["nonce"]), _unb64(blob["ciphertext"]), account_id.encode())


class _Overlay(MutableMapping):
    """Copy-on-write view of a key state for one batch: reads fall through to ``base``;
    writes and deletions stay here."""

    __slots__ = ("_base", "_own", "_gone")

    def __init__(self, base: Mapping[str, Mapping[str, bytes]]):
        self._base, self._own, self._gone = base, {}, set()

    def __getitem__(self, account_id):
        if account_id in self._own:
            return self._own[account_id]
        if account_id in self._gone:
            raise KeyError(account_id)
        return self._base[account_id]

    def __setitem__(self, account_id, keys):
        self._own[account_id] = keys

    def __delitem__(self, account_id):
        if account_id not in self:
            raise KeyError(account_id)
        self._own.pop(account_id, None)
        self._gone.add(account_id)

    def __contains__(self, account_id):
        return account_id in self._own or (account_id not in self._gone and account_id in self._base)

    def __iter__(self) -> Iterator[str]:
        yield from self._own
        for k in self._base:
            if k not in self._own and k not in self._gone:
                yield k

    def __len__(self) -> int:
        return sum(1 for _ in self)


def key_topic_key(account_id: str, dek_id: str) -> bytes:
    """Key-topic message key: ``<account id>/<dek id>``."""
    return f"{account_id}/{dek_id}".encode()


def _aad(account_id: str, dek_id: str) -> bytes:
    return f"{account_id}/{dek_id}".encode()


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s)
