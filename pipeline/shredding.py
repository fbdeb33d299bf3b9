"""Crypto-shredding of retained content (issue 7; notice N-deletion).

Content retained for an account is encrypted with a per-account **data key** (DEK,
AES-256-GCM). Data keys are **wrapped** with a master key from settings (AES-256-GCM, the
account id as associated data) and published to a compacted key topic, one message per
``<account id>/<dek id>``. Deleting an account writes a tombstone for each of its keys: every
retained copy of its content becomes unreadable without rewriting the log.

Key ids: every wrapped key names its master key id (``kid``) so master keys can be rotated
(old ids stay readable while their key is configured); every ciphertext names its ``dek_id``.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipeline.codec import decode_object, encode
from pipeline.errors import ConfigError, PipelineError


class KeyShreddedError(PipelineError):
    """The data key of an account is gone (deleted) or unknown: its content cannot be read."""


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
    data_keys: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def __post_init__(self):
        if self.current not in self.masters:
            raise ConfigError(f"master key id {self.current!r} is not configured")

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
            keys = self.data_keys.get(account_id)
            if keys is not None:
                keys.pop(dek_id, None)
                if not keys:
                    del self.data_keys[account_id]
            return
        try:
            rec = decode_object(value)
            master = self.masters[rec["kid"]]
            dek = AESGCM(master).decrypt(_unb64(rec["nonce"]), _unb64(rec["wrapped"]),
                                         _aad(rec["account_id"], rec["dek_id"]))
        except Exception:
            return
        self.data_keys.setdefault(rec["account_id"], {})[rec["dek_id"]] = dek

    def forget(self, account_id: str) -> list[bytes]:
        """Drop an account's keys; returns the key-topic keys to tombstone."""
        keys = self.data_keys.pop(account_id, {})
        return [key_topic_key(account_id, d) for d in sorted(keys)]

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


def key_topic_key(account_id: str, dek_id: str) -> bytes:
    """Key-topic message key: ``<account id>/<dek id>``."""
    return f"{account_id}/{dek_id}".encode()


def _aad(account_id: str, dek_id: str) -> bytes:
    return f"{account_id}/{dek_id}".encode()


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s)
