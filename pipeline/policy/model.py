"""The policy: the privacy notice (2018-02-01) as validated data.

Every rule carries ``cites``: the notice section it implements (see DESIGN.md, "Where the
categories come from"). :func:`pipeline.policy.loader.load_policy` builds a :class:`Policy`
from YAML and reports errors with file, line and key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from pipeline.detection.config import DetectionConfig
from pipeline.pointers import compile_glob, normalise_name

Category = Literal["content", "usage", "account"]
CATEGORIES: tuple[str, ...] = ("content", "usage", "account")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CategorySpec(_Strict):
    """Retention of one category's topic: ``retention_ms`` (ms, -1 = forever) and
    ``cleanup_policy`` (Kafka topic config)."""

    description: str
    retention_ms: int = Field(ge=-1)
    cleanup_policy: Literal["delete", "compact", "compact,delete"] = "delete"
    cites: str


class TransitSpec(_Strict):
    """Retention of a topic that holds raw personal data in transit (short by design)."""

    retention_ms: int = Field(ge=1)
    cleanup_policy: Literal["delete", "compact", "compact,delete"] = "delete"
    cites: str


class FieldRule(_Strict):
    """A policy rule: fields whose normalised pointer matches one of ``match`` (JSON Pointer
    globs; ``*`` one segment, ``**`` any) get ``category``. ``entity`` declares the entity
    type of the whole value (no detection run); ``scan`` runs the text detector on it;
    ``secret`` marks credentials (never forwarded in clear)."""

    name: str
    match: list[str] = Field(min_length=1)
    category: Category
    entity: str | None = None
    scan: bool = False
    secret: bool = False
    cites: str = Field(min_length=3)
    _compiled: tuple[tuple[str, ...], ...] = PrivateAttr(default=())

    @field_validator("match")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        for pattern in value:
            compile_glob(pattern)  # raises ValueError with a clear message
        return value

    def model_post_init(self, __context) -> None:
        self._compiled = tuple(compile_glob(p) for p in self.match)

    @property
    def compiled(self) -> tuple[tuple[str, ...], ...]:
        return self._compiled


class FamilySpec(_Strict):
    """An event family (message, call, account): how ``--event-type auto`` recognises it
    (``detect_names``: normalised field names typical of it; ``sid_prefixes``: two-letter
    prefixes of its ``sid``; ``cloudevent_types``: substrings of a CloudEvents ``type``) and
    its field rules, tried in order before the common rules."""

    detect_names: list[str] = Field(default_factory=list)
    sid_prefixes: list[str] = Field(default_factory=list)
    cloudevent_types: list[str] = Field(default_factory=list)
    rules: list[FieldRule] = Field(default_factory=list)


class IdentitySpec(_Strict):
    """Where the event id and the account id are: normalised field names, searched at the
    top level, then under ``/data`` (CloudEvents), first found wins (DESIGN.md)."""

    event_id: list[str]
    account_id: list[str]
    account_id_pattern: str | None = None
    cites: str

    @field_validator("event_id", "account_id")
    @classmethod
    def _norm(cls, value: list[str]) -> list[str]:
        return [normalise_name(v) for v in value]


class NameHint(_Strict):
    """Category for unknown fields by name: a field whose normalised key equals one of
    ``names``, or whose last ``_``-token is one of them, gets ``category`` (source ``name``)."""

    category: Category
    names: list[str] = Field(min_length=1)
    entity: str | None = None
    cites: str

    @field_validator("names")
    @classmethod
    def _norm(cls, value: list[str]) -> list[str]:
        return [normalise_name(v) for v in value]


class SecretsSpec(_Strict):
    """Credentials (passwords, auth tokens, API keys, signatures, auth headers): account data
    no route forwards in clear (DESIGN.md). ``action`` ``hash`` replaces the value by a keyed
    HMAC-SHA256 with its key id; ``remove`` replaces it by a marker."""

    names: list[str]
    value_prefixes: list[str] = Field(default_factory=lambda: ["Bearer ", "Basic ", "Digest "])
    action: Literal["hash", "remove"] = "hash"
    cites: str

    @field_validator("names")
    @classmethod
    def _norm(cls, value: list[str]) -> list[str]:
        return [normalise_name(v) for v in value]


class ValueHints(_Strict):
    """Category for unknown fields by value shape (source ``detector``), tried in this order:
    email, phone, media URL, other URL, IP, timestamp, SID, number/boolean, free text."""

    email: Category = "account"
    phone: Category = "usage"
    media_url: Category = "content"
    url: Category = "usage"
    ip: Category = "usage"
    timestamp: Category = "usage"
    sid: Category = "usage"
    account_sid_prefixes: list[str] = Field(default_factory=lambda: ["AC"])
    number: Category = "usage"
    boolean: Category = "usage"
    free_text: Category = "content"
    free_text_min_words: int = Field(3, ge=1)
    scan_free_text: bool = True
    cites: str


class DefaultSpec(_Strict):
    """What no rule, name or value hint decides: ``content``, the most protective (counted)."""

    category: Category = "content"
    cites: str


class DirectionSpec(_Strict):
    """Which records are outbound (sent by the customer to an end user): a value of one of
    the ``fields`` (normalised names) starting with one of ``outbound_prefixes``."""

    fields: list[str]
    outbound_prefixes: list[str]

    @field_validator("fields")
    @classmethod
    def _norm(cls, value: list[str]) -> list[str]:
        return [normalise_name(v) for v in value]


class CarrierSpec(_Strict):
    """The carrier projection: per family, the allow-listed field globs. Anything tagged
    account or secret is withheld whatever the allow-list says (notice: carrier sharing)."""

    families: list[str]
    direction: DirectionSpec
    allow: dict[str, list[str]]
    cites: str
    _compiled: dict = PrivateAttr(default_factory=dict)

    def model_post_init(self, __context) -> None:
        self._compiled = {f: tuple(compile_glob(p) for p in ps) for f, ps in self.allow.items()}

    @property
    def compiled(self) -> dict[str, tuple[tuple[str, ...], ...]]:
        return self._compiled


class DeletionSpec(_Strict):
    """Account-deletion signals on account events (DESIGN.md): a field named in ``fields``
    with one of ``values`` (case-insensitive)."""

    fields: list[str] = Field(default_factory=lambda: ["action", "status", "event"])
    values: list[str] = Field(default_factory=lambda: ["deleted", "closed", "account.deleted"])
    cites: str

    @field_validator("fields")
    @classmethod
    def _norm(cls, value: list[str]) -> list[str]:
        return [normalise_name(v) for v in value]


class RoutesSpec(_Strict):
    """Which families feed the anonymisation route, the carrier projection, deletions."""

    anonymise_families: list[str] = Field(default_factory=lambda: ["message", "call"])
    carrier: CarrierSpec
    deletion: DeletionSpec
    cites: str


class OperatorSpec(_Strict):
    """An anonymisation operator (presidio-anonymizer names plus the project's own):
    ``replace`` (``<ENTITY_TYPE>``), ``redact``, ``mask`` (keep ``keep_last`` chars),
    ``pseudonymise`` (keyed HMAC-SHA256, scoped per account and ``purpose``),
    ``truncate_ip`` (/24 IPv4, /48 IPv6)."""

    operator: Literal["replace", "redact", "mask", "pseudonymise", "truncate_ip", "keep"]
    keep_last: int = 0
    purpose: str = "analytics"


class AnonymisationSpec(_Strict):
    """Operators per entity type for text spans and structured fields, and per category for
    fields without an entity (account fields and secrets never appear in clear)."""

    entity_operators: dict[str, OperatorSpec]
    default_entity_operator: OperatorSpec = OperatorSpec(operator="replace")
    category_operators: dict[Category, OperatorSpec]
    cites: str


class Policy(_Strict):
    """The whole policy. ``version`` tags every output (header ``privacy-policy``)."""

    version: str
    notice: str
    categories: dict[Category, CategorySpec]
    transit: dict[Literal["anonymise", "deadletter", "anonymised", "carrier", "audit", "deletions"], TransitSpec]
    identity: IdentitySpec
    families: dict[str, FamilySpec]
    common_rules: list[FieldRule] = Field(default_factory=list)
    cloudevents_rules: list[FieldRule] = Field(default_factory=list)
    secrets: SecretsSpec
    name_hints: list[NameHint] = Field(default_factory=list)
    value_hints: ValueHints
    default: DefaultSpec
    routes: RoutesSpec
    anonymisation: AnonymisationSpec
    detection: DetectionConfig = Field(default_factory=DetectionConfig)

    @model_validator(mode="after")
    def _check(self) -> "Policy":
        missing = [c for c in CATEGORIES if c not in self.categories]
        if missing:
            raise ValueError(f"categories must define {', '.join(missing)}")
        for fam in list(self.routes.anonymise_families) + list(self.routes.carrier.families):
            if fam not in self.families:
                raise ValueError(f"routes name an unknown family {fam!r}")
        names = [r.name for f in self.families.values() for r in f.rules] + [
            r.name for r in self.common_rules + self.cloudevents_rules
        ]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique: {', '.join(dupes)}")
        return self
