"""Deterministic generator of realistic Twilio-shaped sample events (pure Python, no Kafka).

Used by ``privacy-pipeline run`` (the default input), the integration tests and demos.
Every value is invented: phone numbers are in the fictional 555-01xx range, emails and
URLs use ``example.com``/``example.net``, names come from a short hand-written list.
Message bodies come from the SMS Spam Collection file when a path is given (real texts:
content only), otherwise from generated sentences that mention invented PII.

    events = generate(2000, seed=7, sms_path="../shared/data/sms_spam_collection.tsv")
    for ev in events:
        produce(topic=INPUT_TOPICS[ev.family], key=ev.key, value=ev.value)
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = [
    "INPUT_TOPICS",
    "SampleEvent",
    "deleted_accounts",
    "generate",
    "load_sms_bodies",
    "read_jsonl",
]

#: Default input topic per family (DESIGN.md); prefix with ``settings.topic``.
INPUT_TOPICS = {
    "message": "cpaas.messages.v1",
    "call": "cpaas.calls.v1",
    "account": "cpaas.accounts.v1",
}

_FIRST = ["Ada", "Brian", "Carmen", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines",
          "Jonas", "Kemi", "Luis", "Maya", "Nils", "Olga", "Priya", "Quentin", "Rosa",
          "Samir", "Tara", "Uma", "Victor", "Wen", "Yusuf", "Zoe"]
_LAST = ["Abara", "Brennan", "Castillo", "Dubois", "Eriksen", "Fontaine", "Garcia", "Haddad",
         "Ivanova", "Jansen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor",
         "Petrov", "Quinn", "Rossi", "Schmidt", "Tanaka", "Usman", "Vargas", "Weber"]
_STREETS = ["Main St", "Oak Avenue", "Harbor Road", "Market Street", "Cedar Lane", "Elm Drive"]
_CITIES = [("Springfield", "IL", "62701"), ("Riverton", "WY", "82501"),
           ("Fairview", "OR", "97024"), ("Greenville", "SC", "29601"),
           ("Madison", "WI", "53703"), ("Salem", "MA", "01970")]
_TEMPLATES = [
    "Hi {first}, your appointment is confirmed for {day} at {hour}:00. Reply STOP to opt out.",
    "Your verification code is {code}. Do not share it with anyone.",
    "{first}, call me back at {phone} when you can.",
    "Order #{order} shipped to {street_no} {street}, {city}. Questions? {email}",
    "Reminder: your invoice of ${amount} is due on {day}. Pay at https://pay.example.com/i/{order}",
    "Thanks for contacting support, {first} {last}. Ticket {order} is open.",
    "Meet at the cafe on {street} at {hour}pm? - {first}",
    "Alert: login from IP 203.0.113.{ipn} to your account. Not you? Call {phone}.",
    "Your card ending 4242 was charged ${amount}. Email {email} for a receipt.",
    "Happy birthday {first}! See you Saturday.",
]
_TRANSCRIPTS = [
    "Hi this is {first} {last} calling about my order {order}, please call me back on {phone}.",
    "Hello, I'd like to update the address on my account to {street_no} {street}, {city}.",
    "This message is for {first}. Your prescription is ready for pickup.",
    "Hey it's {first}, running late, be there in ten minutes.",
    "Please send the contract to {email} before Friday. Thanks, {first}.",
]
_MSG_STATUS = ["queued", "sent", "delivered", "delivered", "delivered", "undelivered", "failed",
               "received"]
_CALL_STATUS = ["completed", "completed", "completed", "busy", "no-answer", "failed", "canceled"]

_EPOCH = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class SampleEvent:
    """One event to produce: its family (input topic), key and value bytes.

    ``event_id``/``account_id`` are what the policy should find (``None`` for undecodable
    records); ``deletes_account`` marks account-closure events; ``bad`` undecodable ones.
    """

    family: str
    key: bytes | None
    value: bytes | None
    event_id: str | None = None
    account_id: str | None = None
    kind: str = ""
    deletes_account: bool = False
    bad: bool = False
    meta: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def topic(self) -> str:
        """The default (unprefixed) input topic of this event's family."""
        return INPUT_TOPICS[self.family]


def load_sms_bodies(path: str | Path | None) -> list[str]:
    """Message texts from an SMS Spam Collection TSV (``label<TAB>text``); ``[]`` if absent."""
    if not path:
        return []
    p = Path(path)
    if not p.is_file():
        return []
    bodies = []
    with p.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            _, sep, text = line.rstrip("\n").partition("\t")
            if sep and text.strip():
                bodies.append(text)
    return bodies


def read_jsonl(path: str | Path) -> Iterator[bytes]:
    """The non-blank lines of a JSON Lines file as raw bytes (not decoded: bad lines stay bad)."""
    with open(path, "rb") as fh:
        for line in fh:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


class _Gen:
    """Stateful helpers around one seeded ``random.Random``."""

    def __init__(self, seed: int, bodies: list[str]):
        self.rng = random.Random(seed)
        self.bodies = bodies
        self.clock = _EPOCH

    def hexid(self, prefix: str) -> str:
        return prefix + "".join(self.rng.choice("0123456789abcdef") for _ in range(32))

    def phone(self) -> str:
        # 555-0100..0199 is reserved for fiction in the North American Numbering Plan.
        return f"+1{self.rng.choice(['415', '212', '312', '503', '617'])}5550{self.rng.randint(100, 199)}"

    def person(self) -> tuple[str, str]:
        return self.rng.choice(_FIRST), self.rng.choice(_LAST)

    def email(self, first: str, last: str) -> str:
        return f"{first}.{last}@example.com".lower()

    def tick(self) -> datetime:
        self.clock += timedelta(seconds=self.rng.randint(1, 90))
        return self.clock

    @staticmethod
    def rfc2822(ts: datetime) -> str:
        return ts.strftime("%a, %d %b %Y %H:%M:%S +0000")

    def fill(self, template: str) -> str:
        first, last = self.person()
        city, _, _ = self.rng.choice(_CITIES)
        return template.format(
            first=first, last=last, day=self.rng.choice(["Monday", "Tuesday", "Friday"]),
            hour=self.rng.randint(8, 18), code=self.rng.randint(100000, 999999),
            phone=self.phone(), order=self.rng.randint(10000, 99999),
            street_no=self.rng.randint(1, 999), street=self.rng.choice(_STREETS), city=city,
            email=self.email(first, last), amount=f"{self.rng.randint(5, 500)}.{self.rng.randint(0, 99):02d}",
            ipn=self.rng.randint(1, 254),
        )

    def body(self) -> str:
        if self.bodies:
            return self.rng.choice(self.bodies)
        return self.fill(self.rng.choice(_TEMPLATES))

    def unknown_extra(self) -> dict:
        """Nested fields no rule knows (a customer's own metadata)."""
        first, last = self.person()
        return self.rng.choice([
            {"metadata": {"campaign": {"name": "spring-promo", "owner_email": self.email(first, last)},
                          "tags": ["vip", "retail"]}},
            {"custom_data": {"crm_contact": f"{first} {last}", "ticket": str(self.rng.randint(1000, 9999))}},
            {"x_routing": {self.phone(): {"note": "preferred agent", "weight": "3"}}},
        ])


def _dump(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class _Account:
    def __init__(self, g: _Gen):
        self.sid = g.hexid("AC")
        self.first, self.last = g.person()
        self.email = g.email(self.first, self.last)
        self.phone = g.phone()
        self.numbers = [g.phone() for _ in range(g.rng.randint(1, 3))]
        self.city = g.rng.choice(_CITIES)
        self.street = f"{g.rng.randint(1, 999)} {g.rng.choice(_STREETS)}"


def _message(g: _Gen, acct: _Account) -> tuple[str, dict]:
    ts = g.tick()
    sid = g.hexid(g.rng.choice(["SM", "SM", "SM", "MM"]))
    customer = g.phone()
    own = g.rng.choice(acct.numbers)
    inbound = g.rng.random() < 0.4
    frm, to = (customer, own) if inbound else (own, customer)
    shape = g.rng.random()
    if shape < 0.55:  # REST Message resource
        media = sid.startswith("MM")
        rec = {
            "sid": sid, "account_sid": acct.sid,
            "messaging_service_sid": g.hexid("MG") if g.rng.random() < 0.5 else None,
            "from": frm, "to": to, "body": g.body(),
            "status": "received" if inbound else g.rng.choice(_MSG_STATUS[:-1]),
            "direction": "inbound" if inbound else "outbound-api",
            "num_segments": str(g.rng.randint(1, 3)), "num_media": "1" if media else "0",
            "price": f"-0.00{g.rng.randint(50, 99)}0", "price_unit": "USD",
            "error_code": None, "error_message": None, "api_version": "2010-04-01",
            "date_created": g.rfc2822(ts), "date_updated": g.rfc2822(ts + timedelta(seconds=2)),
            "date_sent": g.rfc2822(ts + timedelta(seconds=1)),
            "uri": f"/2010-04-01/Accounts/{acct.sid}/Messages/{sid}.json",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{acct.sid}/Messages/{sid}/Media.json"},
        }
        if rec["status"] in ("undelivered", "failed"):
            rec["error_code"], rec["error_message"] = 30003, "Unreachable destination handset"
        kind = "message_resource"
    elif shape < 0.85:  # incoming-message webhook (PascalCase, form fields as strings)
        city, state, zipc = g.rng.choice(_CITIES)
        rec = {
            "MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid, "AccountSid": acct.sid,
            "MessagingServiceSid": g.hexid("MG"), "From": customer, "To": own, "Body": g.body(),
            "NumMedia": "0", "NumSegments": "1", "SmsStatus": "received", "ApiVersion": "2010-04-01",
            "FromCity": city.upper(), "FromState": state, "FromZip": zipc, "FromCountry": "US",
            "ToCity": "", "ToState": "CA", "ToZip": "", "ToCountry": "US",
        }
        kind = "message_webhook"
    else:  # status callback
        rec = {
            "MessageSid": sid, "SmsSid": sid, "AccountSid": acct.sid, "From": own, "To": customer,
            "MessageStatus": g.rng.choice(["sent", "delivered", "undelivered"]),
            "SmsStatus": "delivered", "ApiVersion": "2010-04-01",
        }
        if rec["MessageStatus"] == "undelivered":
            rec["ErrorCode"] = "30005"
        kind = "message_status"
    return kind, rec


def _call(g: _Gen, acct: _Account) -> tuple[str, dict]:
    ts = g.tick()
    sid = g.hexid("CA")
    customer = g.phone()
    own = g.rng.choice(acct.numbers)
    inbound = g.rng.random() < 0.5
    frm, to = (customer, own) if inbound else (own, customer)
    status = g.rng.choice(_CALL_STATUS)
    duration = g.rng.randint(5, 900) if status == "completed" else 0
    shape = g.rng.random()
    if shape < 0.55:  # REST Call resource
        first, last = g.person()
        rec = {
            "sid": sid, "account_sid": acct.sid, "parent_call_sid": None,
            "from": frm, "to": to, "from_formatted": f"({frm[2:5]}) {frm[5:8]}-{frm[8:]}",
            "to_formatted": f"({to[2:5]}) {to[5:8]}-{to[8:]}",
            "phone_number_sid": g.hexid("PN"), "status": status,
            "start_time": g.rfc2822(ts), "end_time": g.rfc2822(ts + timedelta(seconds=duration)),
            "duration": str(duration), "price": f"-0.0{g.rng.randint(10, 99)}00", "price_unit": "USD",
            "direction": "inbound" if inbound else "outbound-api", "answered_by": None,
            "caller_name": f"{first} {last}" if inbound and g.rng.random() < 0.5 else None,
            "forwarded_from": None, "group_sid": None, "queue_time": "0", "trunk_sid": None,
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{acct.sid}/Calls/{sid}.json",
            "subresource_uris": {
                "recordings": f"/2010-04-01/Accounts/{acct.sid}/Calls/{sid}/Recordings.json",
                "notifications": f"/2010-04-01/Accounts/{acct.sid}/Calls/{sid}/Notifications.json",
            },
        }
        return "call_resource", rec
    if shape < 0.75:  # status callback webhook
        city, state, zipc = g.rng.choice(_CITIES)
        rec = {
            "CallSid": sid, "AccountSid": acct.sid, "From": frm, "To": to, "Caller": frm,
            "Called": to, "CallStatus": status, "Direction": "inbound" if inbound else "outbound-api",
            "CallDuration": str(duration), "ApiVersion": "2010-04-01", "CallerCity": city.upper(),
            "CallerState": state, "CallerZip": zipc, "CallerCountry": "US",
        }
        return "call_webhook", rec
    if shape < 0.9:  # Recording
        rsid = g.hexid("RE")
        rec = {
            "sid": rsid, "account_sid": acct.sid, "call_sid": sid, "conference_sid": None,
            "channels": 1, "source": "RecordVerb", "status": "completed",
            "duration": str(max(duration, 3)), "price": "-0.0025", "price_unit": "USD",
            "start_time": g.rfc2822(ts), "date_created": g.rfc2822(ts),
            "media_url": f"https://api.example.com/2010-04-01/Accounts/{acct.sid}/Recordings/{rsid}",
            "uri": f"/2010-04-01/Accounts/{acct.sid}/Recordings/{rsid}.json",
        }
        return "recording", rec
    tsid = g.hexid("TR")  # Transcription
    rec = {
        "sid": tsid, "account_sid": acct.sid, "recording_sid": g.hexid("RE"),
        "status": "completed", "type": "fast", "duration": str(g.rng.randint(5, 60)),
        "price": "-0.05", "price_unit": "USD", "date_created": g.rfc2822(ts),
        "transcription_text": g.fill(g.rng.choice(_TRANSCRIPTS)),
        "uri": f"/2010-04-01/Accounts/{acct.sid}/Transcriptions/{tsid}.json",
    }
    return "transcription", rec


def _account(g: _Gen, acct: _Account) -> tuple[str, dict]:
    ts = g.tick()
    if g.rng.random() < 0.5:
        rec = {
            "sid": acct.sid, "owner_account_sid": acct.sid,
            "friendly_name": f"{acct.first} {acct.last}'s account", "status": "active", "type": "Full",
            "auth_token": g.hexid("")[:32], "date_created": g.rfc2822(_EPOCH - timedelta(days=400)),
            "date_updated": g.rfc2822(ts),
            "uri": f"/2010-04-01/Accounts/{acct.sid}.json",
            "subresource_uris": {"addresses": f"/2010-04-01/Accounts/{acct.sid}/Addresses.json"},
        }
        return "account", rec
    city, state, zipc = acct.city
    asid = g.hexid("AD")
    rec = {
        "sid": asid, "account_sid": acct.sid, "customer_name": f"{acct.first} {acct.last}",
        "friendly_name": "Billing", "street": acct.street, "street_secondary": None,
        "city": city, "region": state, "postal_code": zipc, "iso_country": "US",
        "emergency_enabled": False, "validated": True, "verified": g.rng.random() < 0.5,
        "date_created": g.rfc2822(ts), "uri": f"/2010-04-01/Accounts/{acct.sid}/Addresses/{asid}.json",
    }
    return "address", rec


def _closure(g: _Gen, acct: _Account) -> dict:
    ts = g.tick()
    return {
        "sid": acct.sid, "owner_account_sid": acct.sid,
        "friendly_name": f"{acct.first} {acct.last}'s account", "status": "closed", "type": "Full",
        "date_updated": g.rfc2822(ts), "uri": f"/2010-04-01/Accounts/{acct.sid}.json",
    }


_BAD_VALUES = [
    b"\xff\xfe not utf-8 \x80",
    b'{"sid": "SMtruncated", "body": "cut off',
    b'["a", "json", "array"]',
    b"",
    b"plain text, not json",
    b"42",
]


def _bad_id(value: bytes) -> str:
    return "bad-" + hashlib.sha256(value).hexdigest()[:16]


def generate(
    n: int = 3000,
    *,
    seed: int = 0,
    sms_path: str | Path | None = None,
    bad: int = 6,
    accounts: int | None = None,
    deletions: int | None = None,
    unknown_rate: float = 0.05,
    mix: tuple[float, float, float] = (0.6, 0.3, 0.1),
) -> list[SampleEvent]:
    """``n`` good events (messages, calls, accounts in ``mix`` proportions) plus ``bad``
    undecodable records spread through the stream, deterministic for a given ``seed``.

    Account closures (``status: closed``) come last for their account, so every event of a
    deleted account is produced before its deletion.
    """
    g = _Gen(seed, load_sms_bodies(sms_path))
    n_accounts = accounts or max(3, min(60, n // 50))
    pool = [_Account(g) for _ in range(n_accounts)]
    n_del = deletions if deletions is not None else max(1, n_accounts // 20)
    closing = {a.sid for a in pool[-n_del:]} if n_del else set()
    out: list[SampleEvent] = []
    msg_cut, call_cut = mix[0], mix[0] + mix[1]
    for _ in range(max(0, n - len(closing))):
        acct = g.rng.choice(pool)
        r = g.rng.random()
        if r < msg_cut:
            family, (kind, rec) = "message", _message(g, acct)
        elif r < call_cut:
            family, (kind, rec) = "call", _call(g, acct)
        else:
            family, (kind, rec) = "account", _account(g, acct)
        if g.rng.random() < unknown_rate:
            rec.update(g.unknown_extra())
        eid = rec.get("sid") or rec.get("MessageSid") or rec.get("CallSid")
        out.append(SampleEvent(family=family, key=acct.sid.encode(), value=_dump(rec),
                               event_id=eid, account_id=acct.sid, kind=kind))
    for acct in pool:
        if acct.sid in closing:
            out.append(SampleEvent(family="account", key=acct.sid.encode(),
                                   value=_dump(_closure(g, acct)), event_id=acct.sid,
                                   account_id=acct.sid, kind="account_closed",
                                   deletes_account=True))
    for i in range(bad):
        value = _BAD_VALUES[i % len(_BAD_VALUES)]
        if i >= len(_BAD_VALUES):
            value = value + b" #" + str(i).encode()
        family = ("message", "call", "account")[i % 3]
        pos = g.rng.randint(0, max(0, len(out) - len(closing) - 1))
        out.insert(pos, SampleEvent(family=family, key=None, value=value, event_id=_bad_id(value),
                                    kind="undecodable", bad=True))
    return out


def deleted_accounts(events: list[SampleEvent]) -> set[str]:
    """Account ids the sample closes."""
    return {e.account_id for e in events if e.deletes_account and e.account_id}
