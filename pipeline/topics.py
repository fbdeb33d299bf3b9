"""Topic names (DESIGN.md, "Data flow"); defaults, each overridable through settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class TopicNames(BaseModel):
    """Default topic names, without the settings' ``topic_prefix``.

    Override one with ``PRIVACY_PIPELINE_TOPICS__<FIELD>``, e.g.
    ``PRIVACY_PIPELINE_TOPICS__CARRIER=acme.carrier.v2``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    messages: str = "cpaas.messages.v1"
    calls: str = "cpaas.calls.v1"
    accounts: str = "cpaas.accounts.v1"
    retention_content: str = "privacy.retention.content.v1"
    retention_usage: str = "privacy.retention.usage.v1"
    retention_account: str = "privacy.retention.account.v1"
    anonymise: str = "privacy.anonymise.v1"
    anonymised: str = "privacy.anonymised.v1"
    carrier: str = "privacy.carrier.v1"
    carrier_address: str = "privacy.carrier.address.v1"
    audit: str = "privacy.audit.v1"
    deletions: str = "privacy.deletions.v1"
    deadletter: str = "privacy.deadletter.v1"
    #: wrapped per-account data keys (compacted; crypto-shredding, issue 7)
    keys: str = "privacy.keys.v1"
    #: fields the policy's legal holds keep after deletion, in clear (issue 7)
    legal_hold: str = "privacy.legalhold.v1"

    def retention(self, category: str) -> str:
        """The retention topic of a category (``content``, ``usage``, ``account``)."""
        return getattr(self, f"retention_{category}")

    def input_families(self) -> dict[str, str]:
        """Input topic -> event family."""
        return {self.messages: "message", self.calls: "call", self.accounts: "account"}

    def prefixed(self, prefix: str) -> "TopicNames":
        """A copy with ``prefix`` put before every name."""
        if not prefix:
            return self
        return TopicNames(**{k: prefix + v for k, v in self.model_dump().items()})
