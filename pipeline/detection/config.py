"""The ``detection:`` section of the policy: which recognizers run and how.

Recognizers are chosen **by name** (see :data:`RECOGNIZERS`); every Presidio default
recognizer we do not run is listed in :data:`DROPPED_RECOGNIZERS` with the reason, so the
policy documents why OTP codes, order ids, amounts, dates and bare numbers are never
reported.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Recognizers this project can run, by name -> what they report.
RECOGNIZERS: dict[str, str] = {
    "phone": "PHONE_NUMBER: any region via phonenumbers; bare digit runs need a phone word",
    "credit_card": "CREDIT_CARD: every major scheme, spaced or dashed, Luhn-checked",
    "iban": "IBAN_CODE: compact or grouped by four, mod-97 checked",
    "us_ssn": "US_SSN: separated AAA-GG-SSSS; a bare 9-digit run only next to 'ssn'",
    "ip_address": "IP_ADDRESS: IPv4 and IPv6 validated with the ipaddress module",
    "email": "EMAIL_ADDRESS: Presidio's EmailRecognizer (offline tldextract)",
    "url": "URL: Presidio's UrlRecognizer",
    "cpaas_ids": "CPAAS_SID, SIP_URI, ICCID, IMSI: CPaaS identifiers, never phones or persons",
    "person_context": "PERSON after greetings/introductions/titles or before 'here', any case",
    "address": "LOCATION: street addresses, unit lines, the city after them, places after "
               "place prepositions",
    "ner": "PERSON and LOCATION from spaCy's NER (spans with digits or stop words dropped)",
}

#: Presidio defaults we do not run, and why (shown by ``policy check``).
DROPPED_RECOGNIZERS: dict[str, str] = {
    "DateRecognizer": "dates and timestamps are not PII here and its patterns match OTP "
                      "codes and order ids (DATE_TIME on '451450')",
    "UsLicenseRecognizer": "any 6-9 character alphanumeric run (OTP codes, order and "
                           "tracking ids, seat numbers) becomes US_DRIVER_LICENSE",
    "UsBankRecognizer": "any 8-17 digit run (OTP codes, order ids) becomes US_BANK_NUMBER",
    "UsItinRecognizer": "9-digit ids; no ITINs in CPaaS traffic",
    "UsPassportRecognizer": "9-digit order ids become US_PASSPORT",
    "MedicalLicenseRecognizer": "two letters + digits matches order/booking references",
    "NhsRecognizer": "10-digit runs (phone numbers, ids) become UK_NHS",
    "CryptoRecognizer": "not in scope for message bodies",
    "AuAbnRecognizer": "11-digit phone numbers and ids become AU_ABN",
    "AuAcnRecognizer": "9-digit order ids become AU_ACN",
    "AuTfnRecognizer": "9-digit order ids become AU_TFN",
    "AuMedicareRecognizer": "10-digit phone numbers become AU_MEDICARE",
    "InPanRecognizer": "10-character ids become IN_PAN",
    "InAadhaarRecognizer": "12-digit ids become IN_AADHAAR",
    "InVehicleRegistrationRecognizer": "short alphanumeric codes become vehicle numbers",
    "InPassportRecognizer": "letter+digits order ids",
    "InVoterRecognizer": "letter+digits order ids",
    "SgFinRecognizer": "letter+digits ids",
    "UkNinoRecognizer": "letter+digits ids",
    "PhoneRecognizer(presidio)": "replaced by 'phone': Presidio's checks only a few regions "
                                 "and reports OTP codes and order ids as phones",
    "CreditCardRecognizer(presidio)": "replaced by 'credit_card' (grouping and IIN checks)",
    "IbanRecognizer(presidio)": "replaced by 'iban': misses IBANs spaced in groups of four",
    "UsSsnRecognizer(presidio)": "replaced by 'us_ssn' (bare 9-digit runs need context)",
    "IpRecognizer(presidio)": "replaced by 'ip_address' (validated by the ipaddress module)",
    "SpacyRecognizer(presidio)": "replaced by 'ner': NORP/ORG/DATE labels and numbers tagged "
                                 "PERSON by the small model are dropped",
}

DEFAULT_ENTITIES = [
    "PERSON", "PHONE_NUMBER", "EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN",
    "IP_ADDRESS", "LOCATION", "URL", "CPAAS_SID", "SIP_URI", "IMSI", "ICCID",
]

ContextKind = Literal["person_before", "person_after", "phone", "negative", "place_before", "ssn"]


class DetectionConfig(BaseModel):
    """Detection settings from the policy's ``detection:`` section.

    - ``entities``: entity types reported in scanned text.
    - ``score_threshold``: minimum score (0..1); ``thresholds`` overrides it per entity.
    - ``recognizers``: names from :data:`RECOGNIZERS` to run (default: all).
    - ``languages``: texts are assigned one of these by lingua (offline); ``default_language``
      when a text is too short to tell. Context words of that language (and English) apply.
    - ``context``: extra words per language and kind (``person_before``, ``person_after``,
      ``phone``, ``negative``, ``place_before``, ``ssn``), added to the built-in lists.
    - ``allow_list``: values never reported (exact, case-insensitive);
      ``deny_list``: entity -> values always reported.
    - ``phone_regions``: regions whose national formats validate phone numbers.
    - ``chunk_chars``: longest text handed to spaCy at once (memory bound, PITFALLS.md);
      ``batch_size`` / ``batch_chars``: ``nlp.pipe`` batches, by count and total characters;
      ``ner_max_chars``: spaCy NER (about 70,000 characters/s per core) runs on the first
      N characters of a text only, pattern and context recognizers on all of it (``null``:
      no limit).
    - ``template_cache``: how many template keys (a short text with its values -- numbers,
      codes, amounts, dates, times, e-mail addresses, URLs -- replaced by one ``0`` each)
      remember their language and NER spans, so templated A2P traffic (OTP, delivery,
      appointment texts) skips lingua and spaCy NER; pattern and context recognizers still
      run on the real text. Results are the same with and without the cache. ``0`` turns
      the cache off.
    - ``vocab_limit``: new spaCy lexemes a detector may add before it reloads its model
      (``0``: never). spaCy's vocabulary keeps every distinct token string it tokenises
      (spaCy 3.8 ``Vocab._new_lexeme``: "the best solution to the growing memory use is to
      periodically reset the vocab"), about 0.4 KB each measured here, so without a bound a
      worker's memory grows with every new phone number, code and name it reads (measured,
      one detector over 480,000 A2P texts: +263 MB and growing; at the default, 8 reloads
      and a plateau at +58 MB; with 100,000, +77 MB). A reload takes about 0.2 s; results
      do not change.
    - ``dropped_recognizers``: Presidio defaults not run, with the reason (documentation).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    entities: list[str] = Field(default_factory=lambda: list(DEFAULT_ENTITIES))
    score_threshold: float = Field(0.4, ge=0.0, le=1.0)
    thresholds: dict[str, float] = Field(default_factory=dict)
    recognizers: list[str] = Field(default_factory=lambda: list(RECOGNIZERS))
    languages: list[str] = Field(default_factory=lambda: ["en", "es", "de", "fr", "pt"])
    default_language: str = "en"
    context: dict[str, dict[ContextKind, list[str]]] = Field(default_factory=dict)
    allow_list: list[str] = Field(default_factory=list)
    deny_list: dict[str, list[str]] = Field(default_factory=dict)
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR", "ES", "MX", "BR", "IN", "AU"]
    )
    chunk_chars: int = Field(20_000, ge=1_000)
    ner_max_chars: int | None = Field(200_000, ge=1_000)
    batch_size: int = Field(64, ge=1)
    batch_chars: int = Field(100_000, ge=1_000)
    template_cache: int = Field(4096, ge=0)
    vocab_limit: int = Field(50_000, ge=0)
    dropped_recognizers: dict[str, str] = Field(default_factory=lambda: dict(DROPPED_RECOGNIZERS))

    @field_validator("recognizers")
    @classmethod
    def _known_recognizers(cls, value: list[str]) -> list[str]:
        unknown = [n for n in value if n not in RECOGNIZERS]
        if unknown:
            raise ValueError(f"unknown recognizer(s) {unknown}; known: {sorted(RECOGNIZERS)}")
        return value

    @field_validator("thresholds")
    @classmethod
    def _threshold_range(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if not 0.0 <= v <= 1.0]
        if bad:
            raise ValueError(f"thresholds must be within 0..1: {bad}")
        return value

    @field_validator("languages")
    @classmethod
    def _supported_languages(cls, value: list[str]) -> list[str]:
        known = {"en", "es", "de", "fr", "pt", "it", "nl"}
        bad = [v for v in value if v not in known]
        if bad or not value:
            raise ValueError(f"languages must be a non-empty subset of {sorted(known)}: {bad}")
        return value

    @model_validator(mode="after")
    def _default_in_languages(self) -> DetectionConfig:
        if self.default_language not in self.languages:
            raise ValueError("default_language must be one of languages")
        return self

    def threshold_for(self, entity: str) -> float:
        """The score an entity of type ``entity`` needs to be reported."""
        return self.thresholds.get(entity, self.score_threshold)
