"""The policy: the privacy notice (2018-02-01) as validated data.

Every rule carries ``cites``: the notice section it implements (see DESIGN.md, "Where the
categories come from"). :func:`pipeline.policy.loader.load_policy` builds a :class:`Policy`
from YAML and reports errors with file, line and key.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from pipeline.detection.config import DetectionConfig
from pipeline.pointers import compile_glob, normalise_name

def _validate_globs(value: list[str]) -> list[str]:
    for pattern in value:
        compile_glob(pattern)  # raises ValueError with a clear message
    return value


#: A list of JSON Pointer globs, each checked at load time.
GlobList = Annotated[list[str], AfterValidator(_validate_globs)]


def compile_globs(patterns) -> tuple[tuple[str, ...], ...]:
    """Compiled globs (see :func:`pipeline.pointers.compile_glob`)."""
    return tuple(compile_glob(p) for p in patterns)


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
    match: GlobList = Field(min_length=1)
    category: Category
    entity: str | None = None
    scan: bool = False
    secret: bool = False
    cites: str = Field(min_length=3)
    _compiled: tuple[tuple[str, ...], ...] = PrivateAttr(default=())

    def model_post_init(self, __context) -> None:
        self._compiled = compile_globs(self.match)

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

    @field_validator("account_id_pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        """A Python regular expression (``re`` syntax), checked here so that ``policy check``
        reports it rather than the classifier failing when it compiles the pattern."""
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc.msg} at position {exc.pos}") from None
        return value


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


class NameQualifier(_Strict):
    """Qualifier tokens that decide a generic name: ``tokens`` (normalised words) mean
    ``category`` when they qualify a generic last token (``billing`` in ``/billing/city``,
    ``app`` in ``app_name``)."""

    category: Category
    tokens: list[str] = Field(min_length=1)
    cites: str

    @field_validator("tokens")
    @classmethod
    def _norm(cls, value: list[str]) -> list[str]:
        return [normalise_name(v) for v in value]


class NameContextSpec(_Strict):
    """Parent-key and qualifier context for name hints (issue 5).

    A field name's tokens are read right to left. A ``generic`` token (``name``, ``city``,
    ``id``, ``url``...) means little alone: the nearest qualifier before it in the same name,
    else in the parent key (``/billing/city``, ``/campaign/name``, ``chan_name``), decides
    through ``qualifiers``; without one, the token's own name hint applies, and a generic
    token without a hint is skipped (``url``: the value decides)."""

    generic: list[str] = Field(default_factory=list)
    qualifiers: list[NameQualifier] = Field(default_factory=list)
    cites: str = "the name hints' sections"

    @field_validator("generic")
    @classmethod
    def _norm(cls, value: list[str]) -> list[str]:
        return [normalise_name(v) for v in value]


class DriftSpec(_Strict):
    """Drift watch (issue 5): a sample (``sample_every``-th observation) of the values of
    fields a rule calls usage is checked for personal data (``checks``: email, phone,
    person); a rule whose last ``window`` samples hold PII in more than ``threshold`` of
    them (at least ``min_samples`` seen) is drifting: counted and logged with the rule name
    and the masked pointer, never the value. A rule that declares the entity (``/to`` is a
    PHONE_NUMBER) is not drifting for holding it; ``exempt`` lists checks a rule skips
    (city names of numbers look like person names)."""

    enabled: bool = True
    window: int = Field(200, ge=1)
    threshold: float = Field(0.05, ge=0.0, le=1.0)
    sample_every: int = Field(1, ge=1)
    min_samples: int = Field(20, ge=1)
    checks: list[Literal["email", "phone", "person"]] = Field(default_factory=lambda: ["email", "phone", "person"])
    exempt: dict[str, list[Literal["email", "phone", "person"]]] = Field(default_factory=dict)
    cites: str = "N-usage, N-account: usage fields must not carry account data or content"


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
    """Which records are outbound (sent by the customer to an end user) or inbound: a value
    of one of the ``fields`` (normalised names) starting with one of ``outbound_prefixes``
    or ``inbound_prefixes`` (case-insensitive). A record with neither has no direction."""

    fields: list[str]
    outbound_prefixes: list[str]
    inbound_prefixes: list[str] = Field(default_factory=lambda: ["inbound", "mo"])

    @field_validator("fields")
    @classmethod
    def _norm(cls, value: list[str]) -> list[str]:
        return [normalise_name(v) for v in value]


Direction = Literal["outbound", "inbound"]


class CarrierSpec(_Strict):
    """The carrier projection (``privacy.carrier.v1``): per family and direction, the
    allow-listed field globs. A family's value is either a list (outbound only) or a mapping
    ``{outbound: [...], inbound: [...]}``. Anything tagged account or secret is withheld
    whatever the allow-list says (notice: carrier sharing)."""

    families: list[str]
    direction: DirectionSpec
    allow: dict[str, dict[Direction, list[str]]]
    cites: str
    _compiled: dict = PrivateAttr(default_factory=dict)

    @field_validator("allow", mode="before")
    @classmethod
    def _per_direction(cls, value):
        if isinstance(value, dict):
            return {fam: ({"outbound": globs} if isinstance(globs, list) else globs)
                    for fam, globs in value.items()}
        return value

    @field_validator("allow")
    @classmethod
    def _globs(cls, value: dict) -> dict:
        for per_dir in value.values():
            for globs in per_dir.values():
                for pattern in globs:
                    compile_glob(pattern)
        return value

    @model_validator(mode="after")
    def _known_families(self) -> "CarrierSpec":
        extra = sorted(set(self.allow) - set(self.families))
        if extra:
            raise ValueError(f"allow names families not in carrier.families: {', '.join(extra)}")
        return self

    def model_post_init(self, __context) -> None:
        self._compiled = {(f, d): tuple(compile_glob(p) for p in ps)
                          for f, per_dir in self.allow.items() for d, ps in per_dir.items()}

    def compiled_for(self, family: str, direction: str | None) -> tuple[tuple[str, ...], ...]:
        """The compiled allow-list of a family and direction (empty when none)."""
        return self._compiled.get((family, direction), ())


class MarkerSpec(_Strict):
    """A record marker: a top-level (or CloudEvents ``/data``) field named in ``fields``
    (normalised) whose value is one of ``values`` (case-insensitive)."""

    fields: list[str] = Field(min_length=1)
    values: list[str] = Field(min_length=1)

    @field_validator("fields")
    @classmethod
    def _norm(cls, value: list[str]) -> list[str]:
        return [normalise_name(v) for v in value]

    @field_validator("values")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [v.lower() for v in value]


class CarrierAddressSpec(_Strict):
    """Regulatory address sharing (``privacy.carrier.address.v1``): only events of
    ``families`` carrying the explicit provisioning ``marker``; the ``allow`` globs (address
    fields, the number being provisioned) are sent even though tagged account; secrets
    never. Every such event is audited (``privacy.audit.v1``), shared or not."""

    families: list[str] = Field(default_factory=lambda: ["account"])
    marker: MarkerSpec
    allow: GlobList = Field(min_length=1)
    cites: str
    _compiled: tuple = PrivateAttr(default=())

    def model_post_init(self, __context) -> None:
        self._compiled = compile_globs(self.allow)

    @property
    def compiled(self) -> tuple[tuple[str, ...], ...]:
        return self._compiled


class RedactionSpec(_Strict):
    """Message redaction in the style of Twilio's: ``content: discard`` blanks content
    fields, ``address: obfuscate`` replaces the last four digits of the non-platform number
    (``address_fields`` per direction: ``to`` of an outbound record, ``from`` of an inbound
    one, both when the direction is unknown) by ``X``. Applied to the stored routes named in
    ``apply_to`` (``retention``, ``anonymise``), never to the carrier (it must deliver).
    Decided by the policy default, then per account (``accounts``), then per record
    (``flags``: ``ContentRetention: discard``, ``AddressRetention: obfuscate``); the
    strictest wins."""

    content: Literal["retain", "discard"] = "retain"
    address: Literal["retain", "obfuscate"] = "retain"
    accounts: dict[str, dict[Literal["content", "address"], str]] = Field(default_factory=dict)
    flags: dict[Literal["content", "address"], MarkerSpec] = Field(default_factory=dict)
    address_fields: dict[Direction, list[str]] = Field(
        default_factory=lambda: {"outbound": ["/**/to"], "inbound": ["/**/from"]})
    apply_to: list[Literal["retention", "anonymise"]] = Field(
        default_factory=lambda: ["retention", "anonymise"])
    cites: str = "N-content, N-usage: customer-requested redaction"
    _compiled: dict = PrivateAttr(default_factory=dict)

    @field_validator("accounts")
    @classmethod
    def _account_values(cls, value: dict) -> dict:
        allowed = {"content": ("retain", "discard"), "address": ("retain", "obfuscate")}
        for options in value.values():
            for key, v in options.items():
                if v not in allowed[key]:
                    raise ValueError(f"{key} must be one of {', '.join(allowed[key])}, not {v!r}")
        return value

    def model_post_init(self, __context) -> None:
        self._compiled = {d: tuple(compile_glob(p) for p in ps) for d, ps in self.address_fields.items()}

    def address_globs(self, direction: str | None) -> tuple[tuple[str, ...], ...]:
        """Globs of the non-platform number fields for a direction (both when unknown)."""
        if direction is None:
            return tuple(g for gs in self._compiled.values() for g in gs)
        return self._compiled.get(direction, ())


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


class PurposeRouteSpec(_Strict):
    """A consent-gated route (issue 7): records of ``families`` whose account has granted the
    ``consent`` flag go to ``topic`` (topic prefix applied), restricted to the fields of
    ``categories`` that match ``allow`` (never a secret), for ``purpose``. Records of accounts
    without that consent (never given, withdrawn, unknown account) and of deleted accounts
    never reach it. Content is not allowed on a purpose route; the record is encrypted with the
    account's data key (crypto-shredded on deletion)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    topic: str = Field(min_length=1)
    purpose: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    consent: str = Field(min_length=1)
    families: list[str] = Field(min_length=1)
    categories: list[Literal["usage", "account"]] = Field(default_factory=lambda: ["usage"], min_length=1)
    allow: GlobList = Field(default_factory=lambda: ["/**"], min_length=1)
    retention_ms: int = Field(ge=-1)
    cleanup_policy: Literal["delete", "compact", "compact,delete"] = "delete"
    cites: str = Field(min_length=3)
    _compiled: tuple = PrivateAttr(default=())

    @field_validator("consent")
    @classmethod
    def _norm_flag(cls, value: str) -> str:
        return normalise_name(value)

    def model_post_init(self, __context) -> None:
        self._compiled = compile_globs(self.allow)

    @property
    def compiled(self) -> tuple[tuple[str, ...], ...]:
        return self._compiled


class RoutesSpec(_Strict):
    """Which families feed the anonymisation route, the carrier projection, regulatory
    address sharing (``None``: off), redaction options, deletions, consent-gated purpose
    routes."""

    anonymise_families: list[str] = Field(default_factory=lambda: ["message", "call"])
    carrier: CarrierSpec
    carrier_address: CarrierAddressSpec | None = None
    redaction: RedactionSpec = RedactionSpec()
    deletion: DeletionSpec
    purposes: list[PurposeRouteSpec] = Field(default_factory=list)
    cites: str

    @model_validator(mode="after")
    def _unique_purposes(self) -> "RoutesSpec":
        for attr in ("name", "topic"):
            seen = [getattr(r, attr) for r in self.purposes]
            dupes = sorted({v for v in seen if seen.count(v) > 1})
            if dupes:
                raise ValueError(f"purpose route {attr}s must be unique: {', '.join(dupes)}")
        return self


class ConsentSpec(_Strict):
    """Consent flags on account events (issue 7): an object under a top-level (or CloudEvents
    ``/data``) field named in ``fields`` (normalised), e.g. ``"consents": {"marketing": true}``;
    each key is a flag (normalised name), each value ``true``/``false`` or one of the
    ``granted``/``withdrawn`` words (case-insensitive). Other values leave the flag as it was.
    An event sets only the flags it names (a withdrawal is ``{"marketing": false}``)."""

    fields: list[str] = Field(default_factory=lambda: ["consents", "consent"], min_length=1)
    granted: list[str] = Field(default_factory=lambda: ["true", "granted", "yes", "opt-in", "opted-in", "on"])
    withdrawn: list[str] = Field(default_factory=lambda: ["false", "withdrawn", "revoked", "denied", "no",
                                                          "opt-out", "opted-out", "off"])
    cites: str

    @field_validator("fields")
    @classmethod
    def _norm(cls, value: list[str]) -> list[str]:
        return [normalise_name(v) for v in value]

    @field_validator("granted", "withdrawn")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [v.lower() for v in value]


class HoldSpec(_Strict):
    """One legal hold: fields of ``category`` matching ``match`` in records of ``families``
    are also written, in clear (never shredded), to the legal-hold topic."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    families: list[str] = Field(min_length=1)
    category: Category
    match: GlobList = Field(min_length=1)
    cites: str = Field(min_length=3)
    _compiled: tuple = PrivateAttr(default=())

    def model_post_init(self, __context) -> None:
        self._compiled = compile_globs(self.match)

    @property
    def compiled(self) -> tuple[tuple[str, ...], ...]:
        return self._compiled


class LegalHoldSpec(_Strict):
    """What law requires to keep (notice: deletion "except what law requires to keep"): the
    ``holds`` write their fields to the legal-hold topic (``retention_ms``: the legal period,
    counted from the record's date as bookkeeping law counts it), also after the account is
    deleted; that copy is not encrypted with the account's data key, so deletion does not
    shred it. Every deletion is audited with the holds that keep data of the account, and so is
    every held record of an already deleted account."""

    retention_ms: int = Field(ge=1)
    cleanup_policy: Literal["delete", "compact", "compact,delete"] = "delete"
    holds: list[HoldSpec] = Field(default_factory=list)
    cites: str


class ShreddingSpec(_Strict):
    """Crypto-shredding (issue 7): the ``record`` of retention messages of these categories
    (and of every purpose route) is encrypted with the account's data key."""

    categories: list[Literal["content", "usage"]] = Field(default_factory=lambda: ["content", "usage"])
    cites: str = "N-deletion: retained copies become unreadable when the account's key is deleted"


OperatorName = Literal["replace", "redact", "mask", "pseudonymise", "encrypt", "truncate_ip", "keep"]
#: Operators strong enough for account fields and secrets (never in clear).
CONCEALING_OPERATORS = ("replace", "redact", "pseudonymise", "encrypt")


class OperatorSpec(_Strict):
    """An anonymisation operator (applied through presidio-anonymizer; see
    ``pipeline/anonymise.py``): ``replace`` (``<ENTITY_TYPE>``), ``redact`` (removed from
    text; ``null`` for a whole field), ``mask`` (letters and digits by ``masking_char``
    except the last ``keep_last``, never more than half), ``pseudonymise`` (keyed
    HMAC-SHA256 scoped per account and ``purpose``, with key id), ``encrypt`` (AES-SIV,
    deterministic and reversible by ``deanonymise``, with key id), ``truncate_ip`` (/24
    IPv4, /48 IPv6), ``keep``."""

    operator: OperatorName
    keep_last: int = Field(0, ge=0)
    masking_char: str = Field("*", min_length=1, max_length=1)
    purpose: str = Field("analytics", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")


class AnonymisationSpec(_Strict):
    """Operators per entity type for text spans and structured fields with an entity, per
    category for fields without one, for secrets, and for the envelope's ``account_id``.
    Account fields and secrets never appear in clear: their operators must conceal."""

    entity_operators: dict[str, OperatorSpec]
    default_entity_operator: OperatorSpec = OperatorSpec(operator="replace")
    category_operators: dict[Category, OperatorSpec]
    secret_operator: OperatorSpec = OperatorSpec(operator="redact")
    account_id_operator: OperatorSpec = OperatorSpec(operator="pseudonymise", purpose="account")
    cites: str

    @model_validator(mode="after")
    def _conceal_account(self) -> "AnonymisationSpec":
        account = self.category_operators.get("account")
        if account is None:
            raise ValueError("category_operators must define account")
        for name, op in (("category_operators.account", account), ("secret_operator", self.secret_operator),
                         ("account_id_operator", self.account_id_operator)):
            if op.operator not in CONCEALING_OPERATORS:
                raise ValueError(f"{name} must be one of {', '.join(CONCEALING_OPERATORS)} "
                                 f"(account data never in clear), not {op.operator!r}")
        return self

    def uses(self, operator: str) -> bool:
        """Whether any operator of the section is ``operator``."""
        ops = [*self.entity_operators.values(), self.default_entity_operator,
               *self.category_operators.values(), self.secret_operator, self.account_id_operator]
        return any(o.operator == operator for o in ops)


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
    name_context: NameContextSpec = Field(default_factory=NameContextSpec)
    drift: DriftSpec = Field(default_factory=DriftSpec)
    value_hints: ValueHints
    default: DefaultSpec
    routes: RoutesSpec
    consent: ConsentSpec | None = None
    legal_hold: LegalHoldSpec | None = None
    shredding: ShreddingSpec = Field(default_factory=ShreddingSpec)
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
        for route in self.routes.purposes:
            for fam in route.families:
                if fam not in self.families:
                    raise ValueError(f"purpose route {route.name!r} names an unknown family {fam!r}")
        if self.routes.purposes and self.consent is None:
            raise ValueError("purpose routes need a consent section (where account events carry consent flags)")
        for hold in (self.legal_hold.holds if self.legal_hold else []):
            for fam in hold.families:
                if fam not in self.families:
                    raise ValueError(f"legal hold {hold.name!r} names an unknown family {fam!r}")
        names = [r.name for f in self.families.values() for r in f.rules] + [
            r.name for r in self.common_rules + self.cloudevents_rules
        ]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique: {', '.join(dupes)}")
        return self
