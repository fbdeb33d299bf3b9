"""Builds the labelled shape files in this directory (invented values only).

Run ``python tests/data/shapes/build_shapes.py`` to regenerate ``*.jsonl``. Each line is
``{"shape", "family", "record", "expected"}``; ``expected`` maps every leaf pointer of
``record`` to the category a careful reader of the privacy notice would give it.

The labels are written by hand below, per shape, as ``TRUTH`` tables keyed by the leaf's
pointer with array indices as ``#`` (e.g. ``/data/payload/to/#/phone_number``); a key
without ``/`` labels that field name anywhere in the record. The builder refuses a leaf
with no label, so every leaf is judged, never defaulted. These tables are the labeller's
judgement of the notice, independent of the policy's rules.

Values: 555-01xx numbers, example.com addresses, SIDs of two letters + 32 hex.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).parent
R = random.Random(20261130)

FIRST = ["Ada", "Brian", "Carmen", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas"]
LAST = ["Abara", "Brennan", "Castillo", "Dubois", "Eriksen", "Fontaine", "Garcia", "Haddad"]
BODIES = [
    "Hi, your table for 4 is confirmed for Friday at 7pm",
    "Your verification code is 482913",
    "Can you call me back? It's about the delivery to 12 Oak Avenue",
    "Thanks Grace, see you tomorrow",
    "STOP",
    "ok",
    "Reminder: dentist appointment Tuesday 9:30, reply C to confirm",
    "Hola, ¿puedes enviarme la factura por email a carmen.castillo@example.com?",
    "Y",
    "Order 55012 has shipped and will arrive on Monday",
]
TRANSCRIPTS = [
    "Hello this is Brian from the clinic calling to confirm your appointment",
    "Hi it's me, call me back when you get this",
    "I would like to cancel my subscription please",
    "yes",
]


def hexid(prefix: str) -> str:
    return prefix + "".join(R.choice("0123456789abcdef") for _ in range(32))


def phone() -> str:
    return f"+1{R.choice(['415', '212', '312', '503', '617'])}5550{R.randint(100, 199)}"


def person() -> tuple[str, str]:
    return R.choice(FIRST), R.choice(LAST)


def email() -> str:
    f, l = person()
    return f"{f}.{l}@example.com".lower()


def ts_rfc() -> str:
    return f"{R.choice(['Mon', 'Tue', 'Wed'])}, 0{R.randint(1, 9)} Mar 2026 {R.randint(10, 23)}:{R.randint(10, 59)}:{R.randint(10, 59)} +0000"


def ts_iso() -> str:
    return f"2026-03-0{R.randint(1, 9)}T{R.randint(10, 23)}:{R.randint(10, 59)}:{R.randint(10, 59)}Z"


def ts_sql() -> str:
    return f"2026-03-0{R.randint(1, 9)} {R.randint(10, 23)}:{R.randint(10, 59)}:{R.randint(10, 59)}"


def uuid() -> str:
    h = "".join(R.choice("0123456789abcdef") for _ in range(32))
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# Unknown, nested extras a customer adds to any shape, with their labels.
def extras() -> tuple[dict, dict]:
    f, l = person()
    choice = R.randrange(6)
    if choice == 0:
        return ({"metadata": {"campaign": {"name": "spring-promo", "owner_email": email()}, "tags": ["vip", "retail"]}},
                {"/metadata/campaign/name": "usage", "/metadata/campaign/owner_email": "account",
                 "/metadata/tags/#": "usage"})
    if choice == 1:
        return ({"custom_data": {"crm_contact": f"{f} {l}", "ticket": str(R.randint(1000, 9999)),
                                 "customer_note": "she prefers to be called in the evening after work"}},
                {"/custom_data/crm_contact": "account", "/custom_data/ticket": "usage",
                 "/custom_data/customer_note": "content"})
    if choice == 2:
        return ({"x_routing": {phone(): {"note": "preferred agent", "weight": "3"}}},
                {"/x_routing/*/note": "content", "/x_routing/*/weight": "usage"})
    if choice == 3:
        return ({"billing": {"city": "Springfield", "zip": "62701", "card_last4": "4242", "contact_phone": phone()},
                 "retry_count": R.randint(0, 3)},
                {"/billing/city": "account", "/billing/zip": "account", "/billing/card_last4": "account",
                 "/billing/contact_phone": "account", "/retry_count": "usage"})
    if choice == 4:
        return ({"context": {"agent_email": email(), "queue_time_ms": R.randint(10, 9000), "created_at": ts_iso(),
                             "transcript_summary": "caller asked to move the delivery to next week"}},
                {"/context/agent_email": "account", "/context/queue_time_ms": "usage",
                 "/context/created_at": "usage", "/context/transcript_summary": "content"})
    return ({"attachments": [{"href": f"https://files.example.com/mms/{R.randint(100, 999)}.jpg", "bytes": R.randint(1000, 90000)}],
             "client_ip": f"203.0.113.{R.randint(1, 254)}"},
            {"/attachments/#/href": "content", "/attachments/#/bytes": "usage", "/client_ip": "usage"})


def leaves(value, ptr=""):
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from leaves(v, ptr + "/" + str(k).replace("~", "~0").replace("/", "~1"))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from leaves(v, f"{ptr}/{i}")
    else:
        yield ptr


def label(shape: str, record: dict, truth: dict, extra_truth: dict) -> dict:
    out = {}
    table = {**truth, **extra_truth}
    for ptr in leaves(record):
        segs = ptr[1:].split("/")
        generic = "/" + "/".join("#" if s.isdigit() else s for s in segs)
        starred = [generic] + ["/" + "/".join("*" if j == i else s for j, s in enumerate(generic[1:].split("/")))
                               for i in range(len(segs))]
        cat = next((table[k] for k in starred if k in table), None)
        if cat is None:
            cat = table.get(segs[-1]) if not segs[-1].isdigit() else None
        if cat is None:
            raise SystemExit(f"{shape}: no label for {ptr}")
        out[ptr] = cat
    return out


SHAPES: dict[str, tuple[str, dict, list]] = {}


def shape(name: str, family: str, truth: dict):
    def deco(fn):
        SHAPES[name] = (family, truth, fn)
        return fn
    return deco


C, U, A = "content", "usage", "account"

# --- Twilio-style REST resources -----------------------------------------------------------


@shape("twilio_rest_message", "message", {
    "sid": U, "account_sid": A, "messaging_service_sid": U, "to": U, "from": U, "body": C, "status": U,
    "direction": U, "num_segments": U, "num_media": U, "price": U, "price_unit": U, "error_code": U,
    "error_message": U, "date_created": U, "date_updated": U, "date_sent": U, "api_version": U, "uri": U,
    "/subresource_uris/media": U, "/subresource_uris/feedback": U, "/tags/#": U})
def _rest_message(i):
    sid = hexid("SM" if i % 2 else "MM")
    ac = hexid("AC")
    rec = {"account_sid": ac, "api_version": "2010-04-01", "body": R.choice(BODIES), "date_created": ts_rfc(),
           "date_sent": ts_rfc(), "date_updated": ts_rfc(), "direction": R.choice(["outbound-api", "inbound", "outbound-reply"]),
           "error_code": R.choice([None, 30003, "30007"]), "error_message": R.choice([None, "Unreachable destination handset"]),
           "from": phone(), "messaging_service_sid": R.choice([None, hexid("MG")]), "num_media": str(i % 2),
           "num_segments": "1", "price": R.choice([None, "-0.00750"]), "price_unit": "USD", "sid": sid,
           "status": R.choice(["delivered", "sent", "failed", "received"]), "to": phone(),
           "uri": f"/2010-04-01/Accounts/{ac}/Messages/{sid}.json",
           "subresource_uris": {"media": f"/2010-04-01/Accounts/{ac}/Messages/{sid}/Media.json",
                                "feedback": f"/2010-04-01/Accounts/{ac}/Messages/{sid}/Feedback.json"}}
    if i == 3:
        rec["to"] = "whatsapp:" + phone()
        rec["from"] = "whatsapp:" + phone()
    if i == 4:
        rec["tags"] = ["promo", "march"]
    return rec


@shape("twilio_rest_media", "message", {
    "sid": U, "account_sid": A, "parent_sid": U, "content_type": U, "date_created": U, "date_updated": U,
    "uri": U, "url": C, "filename": C})
def _rest_media(i):
    ac, mm, me = hexid("AC"), hexid("MM"), hexid("ME")
    rec = {"account_sid": ac, "content_type": R.choice(["image/jpeg", "image/png", "audio/ogg", "video/mp4"]),
           "date_created": ts_rfc(), "date_updated": ts_rfc(), "parent_sid": mm, "sid": me,
           "uri": f"/2010-04-01/Accounts/{ac}/Messages/{mm}/Media/{me}.json"}
    if i % 2:
        rec["url"] = f"https://api.example.com/2010-04-01/Accounts/{ac}/Messages/{mm}/Media/{me}"
    if i == 4:
        rec["filename"] = "IMG_2041.jpg"
    return rec


@shape("twilio_rest_call", "call", {
    "sid": U, "account_sid": A, "parent_call_sid": U, "to": U, "to_formatted": U, "from": U, "from_formatted": U,
    "phone_number_sid": U, "status": U, "start_time": U, "end_time": U, "duration": U, "price": U,
    "price_unit": U, "direction": U, "answered_by": U, "forwarded_from": U, "group_sid": U, "caller_name": U,
    "queue_time": U, "trunk_sid": U, "uri": U, "date_created": U, "date_updated": U, "api_version": U,
    "annotation": U, "/subresource_uris/*": U})
def _rest_call(i):
    sid, ac = hexid("CA"), hexid("AC")
    f, l = person()
    to = phone()
    rec = {"account_sid": ac, "annotation": None, "answered_by": R.choice([None, "human", "machine_start"]),
           "api_version": "2010-04-01", "caller_name": R.choice([None, f"{f.upper()} {l.upper()}"]),
           "date_created": ts_rfc(), "date_updated": ts_rfc(), "direction": R.choice(["inbound", "outbound-api"]),
           "duration": str(R.randint(0, 600)), "end_time": ts_rfc(), "forwarded_from": R.choice([None, phone()]),
           "from": phone(), "from_formatted": "(415) 555-0100", "group_sid": None,
           "parent_call_sid": R.choice([None, hexid("CA")]), "phone_number_sid": hexid("PN"),
           "price": "-0.03000", "price_unit": "USD", "queue_time": "0", "sid": sid, "start_time": ts_rfc(),
           "status": R.choice(["completed", "busy", "no-answer"]), "to": to, "to_formatted": "(212) 555-0123",
           "trunk_sid": R.choice([None, hexid("TK")]), "uri": f"/2010-04-01/Accounts/{ac}/Calls/{sid}.json",
           "subresource_uris": {"recordings": f"/2010-04-01/Accounts/{ac}/Calls/{sid}/Recordings.json",
                                "notifications": f"/2010-04-01/Accounts/{ac}/Calls/{sid}/Notifications.json"}}
    if i == 2:
        rec["to"] = f"sip:{f.lower()}@pbx.example.com"
    return rec


@shape("twilio_rest_recording", "call", {
    "sid": U, "account_sid": A, "call_sid": U, "conference_sid": U, "api_version": U, "date_created": U,
    "date_updated": U, "start_time": U, "duration": U, "price": U, "price_unit": U, "status": U, "channels": U,
    "source": U, "error_code": U, "track": U, "uri": U, "media_url": C,
    "/encryption_details/type": U, "/encryption_details/encryption_public_key_sid": U,
    "/encryption_details/encryption_cek": A, "/encryption_details/encryption_iv": A, "/encryption_details": U,
    "/subresource_uris/*": U})
def _rest_recording(i):
    sid, ac = hexid("RE"), hexid("AC")
    rec = {"account_sid": ac, "api_version": "2010-04-01", "call_sid": hexid("CA"),
           "conference_sid": R.choice([None, hexid("CF")]), "date_created": ts_rfc(), "date_updated": ts_rfc(),
           "start_time": ts_rfc(), "duration": str(R.randint(1, 900)), "sid": sid, "price": "-0.0025",
           "price_unit": "USD", "status": "completed", "channels": R.choice([1, 2]),
           "source": R.choice(["OutboundAPI", "RecordVerb", "DialVerb", "Conference"]), "error_code": None,
           "track": "both", "uri": f"/2010-04-01/Accounts/{ac}/Recordings/{sid}.json",
           "media_url": f"https://api.example.com/2010-04-01/Accounts/{ac}/Recordings/{sid}",
           "encryption_details": None,
           "subresource_uris": {"transcriptions": f"/2010-04-01/Accounts/{ac}/Recordings/{sid}/Transcriptions.json"}}
    if i % 2:
        rec["encryption_details"] = {"type": "RSA", "encryption_public_key_sid": hexid("CR"),
                                     "encryption_cek": "OV4h6zrsxMIW7h0Zfqwfn6TI2GCNl54KALlg8wn5u7k=",
                                     "encryption_iv": "xe1CgGzXmBkfA2pY"}
    return rec


@shape("twilio_rest_transcription", "call", {
    "sid": U, "account_sid": A, "api_version": U, "date_created": U, "date_updated": U, "duration": U,
    "price": U, "price_unit": U, "recording_sid": U, "status": U, "transcription_text": C, "type": U, "uri": U})
def _rest_transcription(i):
    sid, ac = hexid("TR"), hexid("AC")
    return {"account_sid": ac, "api_version": "2010-04-01", "date_created": ts_rfc(), "date_updated": ts_rfc(),
            "duration": str(R.randint(1, 120)), "price": R.choice([None, "-0.05"]), "price_unit": "USD",
            "recording_sid": hexid("RE"), "sid": sid, "status": R.choice(["completed", "failed"]),
            "transcription_text": R.choice(TRANSCRIPTS + [None]), "type": "fast",
            "uri": f"/2010-04-01/Accounts/{ac}/Transcriptions/{sid}.json"}


@shape("twilio_rest_conference", "call", {
    "sid": U, "account_sid": A, "api_version": U, "date_created": U, "date_updated": U, "friendly_name": U,
    "region": U, "status": U, "uri": U, "reason_conference_ended": U, "call_sid_ending_conference": U,
    "/subresource_uris/*": U})
def _rest_conference(i):
    sid, ac = hexid("CF"), hexid("AC")
    return {"account_sid": ac, "api_version": "2010-04-01", "date_created": ts_rfc(), "date_updated": ts_rfc(),
            "friendly_name": R.choice(["room-1234", "support-bridge", "daily standup"]), "region": "us1",
            "sid": sid, "status": R.choice(["completed", "in-progress"]),
            "reason_conference_ended": R.choice([None, "last-participant-left", "conference-ended-via-api"]),
            "call_sid_ending_conference": R.choice([None, hexid("CA")]),
            "uri": f"/2010-04-01/Accounts/{ac}/Conferences/{sid}.json",
            "subresource_uris": {"participants": f"/2010-04-01/Accounts/{ac}/Conferences/{sid}/Participants.json",
                                 "recordings": f"/2010-04-01/Accounts/{ac}/Conferences/{sid}/Recordings.json"}}


@shape("twilio_rest_participant", "call", {
    "account_sid": A, "call_sid": U, "label": U, "call_sid_to_coach": U, "coaching": U, "conference_sid": U,
    "date_created": U, "date_updated": U, "end_conference_on_exit": U, "muted": U, "hold": U,
    "start_conference_on_enter": U, "status": U, "queue_time": U, "uri": U})
def _rest_participant(i):
    ac, cf, ca = hexid("AC"), hexid("CF"), hexid("CA")
    return {"account_sid": ac, "call_sid": ca, "label": R.choice([None, "customer", "agent-7"]),
            "call_sid_to_coach": None, "coaching": False, "conference_sid": cf, "date_created": ts_rfc(),
            "date_updated": ts_rfc(), "end_conference_on_exit": R.choice([True, False]), "muted": False,
            "hold": False, "start_conference_on_enter": True, "status": R.choice(["connected", "complete"]),
            "queue_time": str(R.randint(0, 30)),
            "uri": f"/2010-04-01/Accounts/{ac}/Conferences/{cf}/Participants/{ca}.json"}


@shape("twilio_rest_queue_member", "call", {
    "call_sid": U, "date_enqueued": U, "position": U, "uri": U, "wait_time": U, "queue_sid": U})
def _rest_queue_member(i):
    ac, qu, ca = hexid("AC"), hexid("QU"), hexid("CA")
    return {"call_sid": ca, "date_enqueued": ts_rfc(), "position": R.randint(1, 9), "queue_sid": qu,
            "uri": f"/2010-04-01/Accounts/{ac}/Queues/{qu}/Members/{ca}.json", "wait_time": R.randint(0, 300)}


@shape("twilio_rest_notification", "call", {
    "sid": U, "account_sid": A, "api_version": U, "call_sid": U, "date_created": U, "date_updated": U,
    "error_code": U, "log": U, "message_date": U, "message_text": U, "more_info": U, "request_method": U,
    "request_url": U, "request_variables": C, "response_body": C, "response_headers": U, "uri": U})
def _rest_notification(i):
    sid, ac = hexid("NO"), hexid("AC")
    rec = {"account_sid": ac, "api_version": "2010-04-01", "call_sid": hexid("CA"), "date_created": ts_rfc(),
           "date_updated": ts_rfc(), "error_code": str(R.choice([11200, 12100, 13224])), "log": R.choice(["0", "1"]),
           "message_date": ts_rfc(), "message_text": "Msg=Invalid+phone+number&invalidDialString=555",
           "more_info": "https://www.example.com/docs/errors/13224", "request_method": "POST",
           "request_url": "https://app.example.com/voice/incoming", "sid": sid,
           "uri": f"/2010-04-01/Accounts/{ac}/Notifications/{sid}.json"}
    if i % 2:
        rec["request_variables"] = f"AccountSid={ac}&From=%2B14155550100&Body=hello+there"
        rec["response_body"] = "<Response><Say>Thanks for calling, Grace</Say></Response>"
        rec["response_headers"] = "Content-Type=text/xml&Date=Mon, 02 Mar 2026"
    return rec


@shape("twilio_rest_usage_record", "account", {
    "account_sid": A, "api_version": U, "as_of": U, "category": U, "count": U, "count_unit": U,
    "description": U, "end_date": U, "price": U, "price_unit": U, "start_date": U, "usage": U,
    "usage_unit": U, "uri": U, "/subresource_uris/*": U})
def _rest_usage(i):
    ac = hexid("AC")
    cat = R.choice(["sms-outbound", "calls-inbound", "recordings", "totalprice"])
    return {"account_sid": ac, "api_version": "2010-04-01", "as_of": ts_iso(), "category": cat,
            "count": str(R.randint(0, 9000)), "count_unit": R.choice(["messages", "calls", ""]),
            "description": R.choice(["Outbound SMS", "Inbound Voice Minutes", "Total Price"]),
            "end_date": "2026-03-31", "price": f"{R.randint(0, 900)}.{R.randint(0, 99)}", "price_unit": "usd",
            "start_date": "2026-03-01", "usage": str(R.randint(0, 9000)), "usage_unit": R.choice(["segments", "minutes"]),
            "uri": f"/2010-04-01/Accounts/{ac}/Usage/Records/Daily.json?Category={cat}",
            "subresource_uris": {"daily": f"/2010-04-01/Accounts/{ac}/Usage/Records/Daily.json"}}


@shape("twilio_rest_account", "account", {
    "sid": A, "auth_token": A, "date_created": U, "date_updated": U, "friendly_name": A, "owner_account_sid": A,
    "status": U, "type": U, "uri": U, "/subresource_uris/*": U})
def _rest_account(i):
    ac = hexid("AC")
    f, l = person()
    return {"auth_token": "".join(R.choice("0123456789abcdef") for _ in range(32)), "date_created": ts_rfc(),
            "date_updated": ts_rfc(), "friendly_name": R.choice([f"{f} {l}", "Acme Corp", f"{f}'s test account"]),
            "owner_account_sid": R.choice([ac, hexid("AC")]), "sid": ac, "status": R.choice(["active", "suspended", "closed"]),
            "type": R.choice(["Full", "Trial"]), "uri": f"/2010-04-01/Accounts/{ac}.json",
            "subresource_uris": {"addresses": f"/2010-04-01/Accounts/{ac}/Addresses.json",
                                 "calls": f"/2010-04-01/Accounts/{ac}/Calls.json"}}


@shape("twilio_rest_address", "account", {
    "account_sid": A, "city": A, "customer_name": A, "date_created": U, "date_updated": U, "emergency_enabled": U,
    "friendly_name": A, "iso_country": A, "postal_code": A, "region": A, "sid": U, "street": A,
    "street_secondary": A, "validated": U, "verified": U, "uri": U})
def _rest_address(i):
    ac, ad = hexid("AC"), hexid("AD")
    f, l = person()
    return {"account_sid": ac, "city": R.choice(["Springfield", "Riverton", "San Francisco"]),
            "customer_name": f"{f} {l}", "date_created": ts_rfc(), "date_updated": ts_rfc(),
            "emergency_enabled": R.choice([True, False]), "friendly_name": R.choice([None, "HQ", "Main office"]),
            "iso_country": "US", "postal_code": str(R.randint(10000, 99999)), "region": R.choice(["CA", "IL", "WY"]),
            "sid": ad, "street": f"{R.randint(1, 999)} Oak Avenue", "street_secondary": R.choice([None, "Suite 400"]),
            "validated": False, "verified": False, "uri": f"/2010-04-01/Accounts/{ac}/Addresses/{ad}.json"}


@shape("twilio_rest_outgoing_caller_id", "account", {
    "account_sid": A, "date_created": U, "date_updated": U, "friendly_name": A, "phone_number": A, "sid": U, "uri": U})
def _rest_caller_id(i):
    ac, pn = hexid("AC"), hexid("PN")
    f, l = person()
    num = phone()
    return {"account_sid": ac, "date_created": ts_rfc(), "date_updated": ts_rfc(),
            "friendly_name": R.choice([f"({num[2:5]}) {num[5:8]}-{num[8:]}", f"{f}'s mobile", "Office line"]),
            "phone_number": num, "sid": pn, "uri": f"/2010-04-01/Accounts/{ac}/OutgoingCallerIds/{pn}.json"}


# --- Twilio-style webhooks (PascalCase form fields) ----------------------------------------

_GEO = {f"{p}{g}": U for p in ("From", "To") for g in ("City", "State", "Zip", "Country")}


@shape("twilio_webhook_message", "auto", {
    "MessageSid": U, "SmsSid": U, "SmsMessageSid": U, "AccountSid": A, "MessagingServiceSid": U, "From": U, "To": U,
    "Body": C, "NumMedia": U, "NumSegments": U, "SmsStatus": U, "MessageStatus": U, "ApiVersion": U,
    "MediaUrl0": C, "MediaUrl1": C, "MediaContentType0": U, "MediaContentType1": U, "ProfileName": U, "WaId": U,
    "ButtonText": C, "ButtonPayload": C, "ErrorCode": U, "ErrorMessage": U, "ChannelToAddress": U,
    "ReferralNumMedia": U, "OptOutType": U, **_GEO})
def _wh_message(i):
    sid, ac = hexid("SM"), hexid("AC")
    f, l = person()
    rec = {"ToCountry": "US", "ToState": "CA", "SmsMessageSid": sid, "NumMedia": "0", "ToCity": "SAN FRANCISCO",
           "FromZip": "94105", "SmsSid": sid, "FromState": "CA", "SmsStatus": "received", "FromCity": "OAKLAND",
           "Body": R.choice(BODIES), "FromCountry": "US", "To": phone(), "ToZip": "94016", "NumSegments": "1",
           "MessageSid": sid, "AccountSid": ac, "From": phone(), "ApiVersion": "2010-04-01"}
    if i in (1, 4):
        rec["NumMedia"] = "2"
        rec["MediaUrl0"] = f"https://api.example.com/2010-04-01/Accounts/{ac}/Messages/{sid}/Media/{hexid('ME')}"
        rec["MediaContentType0"] = "image/jpeg"
        rec["MediaUrl1"] = f"https://api.example.com/2010-04-01/Accounts/{ac}/Messages/{sid}/Media/{hexid('ME')}"
        rec["MediaContentType1"] = "audio/amr"
    if i == 2:  # WhatsApp
        rec["From"] = "whatsapp:" + rec["From"]
        rec["ProfileName"] = f"{f} {l}"
        rec["WaId"] = rec["From"][10:]
        rec["ButtonText"] = "Yes, reschedule"
        rec["ButtonPayload"] = "reschedule_yes"
        rec["MessagingServiceSid"] = hexid("MG")
    if i == 3:  # status callback
        for k in ("Body", "FromCity", "FromState", "FromZip", "FromCountry", "ToCity", "ToState", "ToZip", "ToCountry"):
            rec.pop(k)
        rec["MessageStatus"] = rec["SmsStatus"] = "undelivered"
        rec["ErrorCode"] = "30003"
        rec["ErrorMessage"] = "Unreachable destination handset"
        rec["ChannelToAddress"] = "+1415555XXXX"
    if i == 5:
        rec["OptOutType"] = "STOP"
        rec["Body"] = "STOP"
    return rec


@shape("twilio_webhook_voice", "auto", {
    "CallSid": U, "AccountSid": A, "From": U, "To": U, "Called": U, "Caller": U, "CallStatus": U, "ApiVersion": U,
    "Direction": U, "ForwardedFrom": U, "CallerName": U, "ParentCallSid": U, "CallToken": A, "StirVerstat": U,
    "Digits": C, "SpeechResult": C, "Confidence": U, "RecordingUrl": C, "RecordingSid": U, "RecordingDuration": U,
    "TranscriptionText": C, "TranscriptionStatus": U, "TranscriptionSid": U, "TranscriptionUrl": C,
    "CallDuration": U, "Timestamp": U, "SequenceNumber": U, "CallbackSource": U, "AnsweredBy": U,
    "SipResponseCode": U, "Duration": U, "FinishedOnKey": U, "RecordingStatus": U, "RecordingChannels": U,
    "RecordingSource": U, "RecordingStartTime": U, "DialCallStatus": U, "DialCallSid": U, "DialCallDuration": U,
    "QueueResult": U, "QueueSid": U, "QueueTime": U, "ConferenceSid": U, "FriendlyName": U, "StatusCallbackEvent": U,
    "Muted": U, "Hold": U, "Coaching": U, "EndConferenceOnExit": U, "StartConferenceOnEnter": U,
    **_GEO, **{f"{p}{g}": U for p in ("Called", "Caller") for g in ("City", "State", "Zip", "Country")}})
def _wh_voice(i):
    sid, ac = hexid("CA"), hexid("AC")
    frm, to = phone(), phone()
    rec = {"AccountSid": ac, "ApiVersion": "2010-04-01", "CallSid": sid, "CallStatus": "ringing",
           "Called": to, "CalledCity": "SAN FRANCISCO", "CalledCountry": "US", "CalledState": "CA", "CalledZip": "94105",
           "Caller": frm, "CallerCity": "OAKLAND", "CallerCountry": "US", "CallerState": "CA", "CallerZip": "94612",
           "Direction": "inbound", "From": frm, "FromCity": "OAKLAND", "FromCountry": "US", "FromState": "CA",
           "FromZip": "94612", "To": to, "ToCity": "SAN FRANCISCO", "ToCountry": "US", "ToState": "CA", "ToZip": "94105",
           "CallToken": "%7B%22parentCallInfoToken%22%3A%22eyJhbGciOiJFUzI1NiJ9.eyJ4In0.c2ln%22%7D", "StirVerstat": "TN-Validation-Passed-A"}
    if i == 1:
        rec.update({"CallStatus": "in-progress", "Digits": "1234#", "FinishedOnKey": "#"})
    if i == 2:
        rec.update({"CallStatus": "in-progress", "SpeechResult": R.choice(TRANSCRIPTS), "Confidence": "0.91"})
    if i == 3:
        rec = {"AccountSid": ac, "CallSid": sid, "RecordingSid": hexid("RE"),
               "RecordingUrl": f"https://api.example.com/2010-04-01/Accounts/{ac}/Recordings/{hexid('RE')}",
               "RecordingStatus": "completed", "RecordingDuration": "14", "RecordingChannels": "1",
               "RecordingStartTime": ts_rfc(), "RecordingSource": "RecordVerb", "ErrorCode": "0"}
        rec["ErrorCode"] = "0"
    if i == 4:
        rec = {"AccountSid": ac, "CallSid": sid, "TranscriptionSid": hexid("TR"), "TranscriptionText": R.choice(TRANSCRIPTS),
               "TranscriptionStatus": "completed", "TranscriptionUrl": f"https://api.example.com/2010-04-01/Accounts/{ac}/Transcriptions/{hexid('TR')}",
               "RecordingSid": hexid("RE"), "RecordingUrl": f"https://api.example.com/2010-04-01/Accounts/{ac}/Recordings/{hexid('RE')}",
               "CallStatus": "completed", "ApiVersion": "2010-04-01", "From": frm, "To": to, "Direction": "inbound",
               "ForwardedFrom": phone(), "CallerName": "GRACE HADDAD"}
    if i == 5:
        rec.update({"CallStatus": "completed", "CallDuration": "42", "Duration": "1", "Timestamp": ts_rfc(),
                    "SequenceNumber": "3", "CallbackSource": "call-progress-events", "AnsweredBy": "human",
                    "SipResponseCode": "200", "ParentCallSid": hexid("CA"), "DialCallStatus": "completed",
                    "DialCallSid": hexid("CA"), "DialCallDuration": "40"})
    if i == 6:
        rec = {"AccountSid": ac, "CallSid": sid, "ConferenceSid": hexid("CF"), "FriendlyName": "support-bridge",
               "StatusCallbackEvent": "participant-join", "Muted": "false", "Hold": "false", "Coaching": "false",
               "EndConferenceOnExit": "false", "StartConferenceOnEnter": "true", "Timestamp": ts_rfc(),
               "SequenceNumber": "1"}
    if i == 7:
        rec.update({"QueueResult": "bridged", "QueueSid": hexid("QU"), "QueueTime": "35"})
    return rec


_WH_VOICE_TRUTH_EXTRA = {"ErrorCode": U}
SHAPES["twilio_webhook_voice"][1].update(_WH_VOICE_TRUTH_EXTRA)


# --- Event Streams / CloudEvents (camelCase payloads) --------------------------------------

@shape("twilio_event_streams", "auto", {
    "/specversion": U, "/type": U, "/source": U, "/id": U, "/dataschema": U, "/datacontenttype": U, "/time": U,
    "/subject": U,
    "messageSid": U, "accountSid": A, "to": U, "from": U, "messagingServiceSid": U, "numSegments": U,
    "numMedia": U, "errorCode": U, "errorMessage": U, "eventName": U, "timestamp": U, "status": U, "body": C,
    "mediaUrls": C, "/data/mediaUrls/#": C, "direction": U, "dateCreated": U, "callSid": U, "callStatus": U,
    "duration": U, "recordingSid": U, "recordingUrl": C, "conferenceSid": U, "participantLabel": U,
    "/data/request/url": U, "/data/request/method": U,
    "/data/request/parameters/CallSid": U, "/data/request/parameters/AccountSid": A,
    "/data/request/parameters/From": U, "/data/request/parameters/To": U,
    "/data/request/parameters/CallStatus": U, "/data/request/parameters/Direction": U,
    "/data/request/parameters/ApiVersion": U, "/data/request/parameters/CallerName": U,
    "/data/request/parameters/FromCity": U, "/data/request/parameters/CallDuration": U,
    "/data/request/parameters/SpeechResult": C, "/data/response/status_code": U,
    "/data/response/content_type": U, "/data/response/body": C, "/data/response/headers/Content-Type": U,
    "/data/response/headers/X-Request-Id": U,
    "/data/request/headers/X-Twilio-Signature": A, "/data/request/headers/User-Agent": U})
def _event_streams(i):
    ac = hexid("AC")
    base = {"specversion": "1.0", "id": hexid("EZ"), "source": f"/2010-04-01/Accounts/{ac}/Messages/{hexid('SM')}.json",
            "time": ts_iso(), "datacontenttype": "application/json",
            "dataschema": "https://events-schemas.example.com/Messaging.MessageStatus/5"}
    if i in (0, 1, 2):
        sid = hexid("SM")
        base["type"] = R.choice(["com.twilio.messaging.message.delivered", "com.twilio.messaging.inbound-message.received"])
        base["data"] = {"messageSid": sid, "accountSid": ac, "to": phone(), "from": phone(),
                        "messagingServiceSid": hexid("MG"), "numSegments": 1, "timestamp": ts_iso(),
                        "eventName": base["type"].rsplit(".", 1)[-1], "status": "DELIVERED"}
        if i == 1:
            base["data"].update({"body": R.choice(BODIES), "numMedia": 1, "direction": "inbound",
                                 "mediaUrls": [f"https://api.example.com/Accounts/{ac}/Messages/{sid}/Media/{hexid('ME')}"]})
        if i == 2:
            base["data"].update({"errorCode": 30008, "errorMessage": "Unknown error", "status": "UNDELIVERED"})
            base["subject"] = sid
    elif i in (3, 4):
        base["type"] = "com.twilio.voice.status-callback.call.completed"
        base["data"] = {"request": {"url": "https://app.example.com/status", "method": "POST",
                                    "parameters": {"CallSid": hexid("CA"), "AccountSid": ac, "From": phone(), "To": phone(),
                                                   "CallStatus": "completed", "Direction": "outbound-api",
                                                   "ApiVersion": "2010-04-01", "CallDuration": "31",
                                                   "CallerName": "ADA ERIKSEN", "FromCity": "RIVERTON"}}}
        if i == 4:
            base["type"] = "com.twilio.voice.twiml.gather.finished"
            base["data"]["request"]["parameters"]["SpeechResult"] = "I need to change my appointment"
            base["data"]["request"]["headers"] = {"X-Twilio-Signature": "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
                                                  "User-Agent": "TwilioProxy/1.1"}
            base["data"]["response"] = {"status_code": 200, "content_type": "application/xml",
                                        "body": "<Response><Say>Goodbye Ada</Say></Response>",
                                        "headers": {"Content-Type": "application/xml", "X-Request-Id": uuid()}}
    else:
        base["type"] = "com.twilio.voice.insights.call-summary.complete"
        base["data"] = {"callSid": hexid("CA"), "accountSid": ac, "callStatus": "completed", "duration": 64,
                        "dateCreated": ts_iso(), "recordingSid": hexid("RE"),
                        "recordingUrl": f"https://api.example.com/2010-04-01/Accounts/{ac}/Recordings/{hexid('RE')}",
                        "conferenceSid": hexid("CF"), "participantLabel": "agent-3", "from": phone(), "to": phone()}
    return base


# --- Vonage ----------------------------------------------------------------------------------

@shape("vonage_inbound_sms", "auto", {
    "msisdn": U, "to": U, "messageId": U, "text": C, "type": U, "keyword": C, "api-key": A, "message-timestamp": U,
    "timestamp": U, "nonce": U, "sig": A, "concat": U, "concat-ref": U, "concat-total": U, "concat-part": U,
    "data": C, "udh": U})
def _vonage_in(i):
    body = R.choice(BODIES)
    rec = {"msisdn": phone()[1:], "to": phone()[1:], "messageId": "".join(R.choice("0123456789ABCDEF") for _ in range(16)),
           "text": body, "type": "text", "keyword": body.split()[0].upper(), "api-key": "abcd1234",
           "message-timestamp": ts_sql(), "timestamp": str(R.randint(1772400000, 1772900000))}
    if i % 2:
        rec.update({"nonce": uuid(), "sig": "".join(R.choice("0123456789abcdef") for _ in range(32))})
    if i == 2:
        rec.update({"concat": "true", "concat-ref": "128", "concat-total": "2", "concat-part": "1"})
    if i == 4:
        rec.update({"type": "binary", "data": "48656c6c6f20776f726c64", "udh": "050003CC0201"})
        rec.pop("text")
        rec.pop("keyword")
    return rec


@shape("vonage_delivery_receipt", "auto", {
    "msisdn": U, "to": U, "network-code": U, "messageId": U, "price": U, "status": U, "scts": U, "err-code": U,
    "api-key": A, "message-timestamp": U, "client-ref": U})
def _vonage_dlr(i):
    rec = {"msisdn": phone()[1:], "to": R.choice(["AcmeInc", phone()[1:]]), "network-code": R.choice(["310090", "23410"]),
           "messageId": "".join(R.choice("0123456789ABCDEF") for _ in range(16)), "price": "0.03330000",
           "status": R.choice(["delivered", "expired", "failed", "rejected", "accepted", "buffered"]),
           "scts": str(R.randint(2603010000, 2603092359)), "err-code": R.choice(["0", "1", "6"]),
           "api-key": "abcd1234", "message-timestamp": ts_sql()}
    if i % 2:
        rec["client-ref"] = f"order-{R.randint(1000, 9999)}"
    return rec


# --- Telnyx messaging webhooks ----------------------------------------------------------------

@shape("telnyx_messaging", "auto", {
    "/data/event_type": U, "/data/id": U, "/data/occurred_at": U, "/data/record_type": U,
    "/meta/attempt": U, "/meta/delivered_to": U,
    "/data/payload/id": U, "/data/payload/record_type": U, "/data/payload/direction": U, "/data/payload/type": U,
    "/data/payload/messaging_profile_id": U, "/data/payload/organization_id": A,
    "/data/payload/from/phone_number": U, "/data/payload/from/carrier": U, "/data/payload/from/line_type": U,
    "/data/payload/to/#/phone_number": U, "/data/payload/to/#/status": U, "/data/payload/to/#/carrier": U,
    "/data/payload/to/#/line_type": U, "/data/payload/text": C, "/data/payload/subject": C,
    "/data/payload/media/#/url": C, "/data/payload/media/#/content_type": U, "/data/payload/media/#/sha256": U,
    "/data/payload/media/#/size": U, "/data/payload/encoding": U, "/data/payload/parts": U, "/data/payload/tags/#": U,
    "/data/payload/tags": U, "/data/payload/media": C,
    "/data/payload/cost/amount": U, "/data/payload/cost/currency": U, "/data/payload/cost": U,
    "/data/payload/received_at": U, "/data/payload/sent_at": U, "/data/payload/completed_at": U,
    "/data/payload/valid_until": U, "/data/payload/webhook_url": U, "/data/payload/webhook_failover_url": U,
    "/data/payload/errors": U, "/data/payload/errors/#/code": U, "/data/payload/errors/#/title": U,
    "/data/payload/errors/#/detail": U, "/data/payload/autoresponse_type": U})
def _telnyx(i):
    direction = "inbound" if i % 2 else "outbound"
    ev = "message.received" if direction == "inbound" else R.choice(["message.sent", "message.finalized"])
    p = {"id": uuid(), "record_type": "message", "direction": direction, "type": "MMS" if i == 3 else "SMS",
         "messaging_profile_id": uuid(), "organization_id": uuid(),
         "from": {"phone_number": phone(), "carrier": "Example Wireless", "line_type": "Wireless"},
         "to": [{"phone_number": phone(), "status": "delivered" if i != 2 else "delivery_failed",
                 "carrier": "Example Mobile", "line_type": "Wireless"}],
         "text": R.choice(BODIES), "media": [], "encoding": "GSM-7", "parts": 1, "tags": [],
         "cost": {"amount": "0.0040", "currency": "USD"} if direction == "outbound" else None,
         "received_at": ts_iso(), "sent_at": ts_iso() if direction == "outbound" else None,
         "completed_at": ts_iso() if direction == "outbound" else None, "valid_until": None,
         "webhook_url": "https://hooks.example.com/telnyx", "webhook_failover_url": "", "errors": []}
    if i == 3:
        p["media"] = [{"url": "https://media.example.com/mms/5f2c.jpg", "content_type": "image/jpeg",
                       "sha256": "".join(R.choice("0123456789abcdef") for _ in range(64)), "size": 40213}]
        p["subject"] = "Photo from the site visit"
    if i == 2:
        p["errors"] = [{"code": "40300", "title": "Blocked as spam", "detail": "Message blocked by carrier"}]
    if i == 4:
        p["tags"] = ["campaign-7"]
        p["autoresponse_type"] = None
    return {"data": {"event_type": ev, "id": uuid(), "occurred_at": ts_iso(), "payload": p, "record_type": "event"},
            "meta": {"attempt": 1, "delivered_to": "https://hooks.example.com/telnyx"}}


# --- Asterisk CDR (Master.csv columns) -------------------------------------------------------

ASTERISK = ("accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp", "lastdata",
            "start", "answer", "end", "duration", "billsec", "disposition", "amaflags", "uniqueid", "userfield")


@shape("asterisk_cdr", "call", {
    "accountcode": A, "src": U, "dst": U, "dcontext": U, "clid": U, "channel": U, "dstchannel": U, "lastapp": U,
    "lastdata": U, "start": U, "answer": U, "end": U, "duration": U, "billsec": U, "disposition": U,
    "amaflags": U, "uniqueid": U, "userfield": U, "peeraccount": A, "linkedid": U, "sequence": U})
def _asterisk(i):
    f, l = person()
    src = phone()[2:]
    row = [R.choice(["acme", "", "1001"]), src, R.choice(["200", "5551", phone()[2:]]), R.choice(["from-internal", "from-trunk"]),
           f'"{f} {l}" <{src}>', f"SIP/{R.randint(100, 299)}-0000{R.randint(10, 99)}a", f"SIP/trunk-0000{R.randint(10, 99)}b",
           "Dial", f"SIP/trunk/{src},30,tT", ts_sql(), ts_sql(), ts_sql(), str(R.randint(0, 900)),
           str(R.randint(0, 900)), R.choice(["ANSWERED", "NO ANSWER", "BUSY", "FAILED"]),
           R.choice(["DOCUMENTATION", "BILLING"]), f"{R.randint(1772400000, 1772900000)}.{R.randint(1, 99)}",
           R.choice(["", "campaign42", "vip"])]
    rec = dict(zip(ASTERISK, row))
    if i == 3:
        rec.update({"peeraccount": "acme", "linkedid": rec["uniqueid"], "sequence": "17"})
    if i == 4:
        rec["answer"] = ""
    return rec


# --- FreeSWITCH JSON CDR (mod_json_cdr) ------------------------------------------------------

_FS_VARS = {
    "uuid": U, "call_uuid": U, "direction": U, "sip_from_user": U, "sip_to_user": U, "sip_from_host": U,
    "sip_to_host": U, "sip_network_ip": U, "sip_network_port": U, "sip_user_agent": U, "sip_call_id": U,
    "caller_id_name": U, "caller_id_number": U, "effective_caller_id_name": U, "effective_caller_id_number": U,
    "destination_number": U, "start_stamp": U, "answer_stamp": U, "end_stamp": U, "start_epoch": U,
    "answer_epoch": U, "end_epoch": U, "duration": U, "billsec": U, "hangup_cause": U, "read_codec": U,
    "write_codec": U, "domain_name": U, "accountcode": A, "user_name": A, "record_file": C,
    "record_seconds": U, "sip_hangup_disposition": U, "billmsec": U, "progress_mediamsec": U,
    "last_app": U, "last_arg": U, "sip_auth_username": A, "sip_auth_password": A, "dialed_extension": U,
    "detected_speech": C, "rtp_audio_in_mos": U, "customer_email": A,
}


@shape("freeswitch_cdr", "call", {
    "/core-uuid": U, "/switchname": U,
    "/channel_data/state": U, "/channel_data/direction": U, "/channel_data/state_number": U,
    "/channel_data/flags": U, "/channel_data/caps": U,
    **{f"/variables/{k}": v for k, v in _FS_VARS.items()},
    "/app_log/application/#/app_name": U, "/app_log/application/#/app_data": U,
    "/callflow/#/dialplan": U, "/callflow/#/profile_index": U, "/callflow/#/extension/name": U,
    "/callflow/#/extension/number": U, "/callflow/#/extension/application/#/app_name": U,
    "/callflow/#/extension/application/#/app_data": U,
    "/callflow/#/caller_profile/username": A, "/callflow/#/caller_profile/dialplan": U,
    "/callflow/#/caller_profile/caller_id_name": U, "/callflow/#/caller_profile/ani": U,
    "/callflow/#/caller_profile/aniii": U, "/callflow/#/caller_profile/caller_id_number": U,
    "/callflow/#/caller_profile/network_addr": U, "/callflow/#/caller_profile/rdnis": U,
    "/callflow/#/caller_profile/destination_number": U, "/callflow/#/caller_profile/uuid": U,
    "/callflow/#/caller_profile/source": U, "/callflow/#/caller_profile/context": U,
    "/callflow/#/caller_profile/chan_name": U,
    "/callflow/#/times/created_time": U, "/callflow/#/times/profile_created_time": U,
    "/callflow/#/times/progress_time": U, "/callflow/#/times/answered_time": U,
    "/callflow/#/times/hangup_time": U, "/callflow/#/times/transfer_time": U})
def _freeswitch(i):
    f, l = person()
    src, dst = phone()[1:], phone()[1:]
    u = uuid()
    start = ts_sql()
    v = {"uuid": u, "call_uuid": u, "direction": R.choice(["inbound", "outbound"]), "sip_from_user": src,
         "sip_to_user": dst, "sip_from_host": "198.51.100.7", "sip_to_host": "pbx.example.com",
         "sip_network_ip": f"203.0.113.{R.randint(1, 254)}", "sip_network_port": "5060",
         "sip_user_agent": "Example-Phone%201.2.3", "sip_call_id": f"{uuid()}@198.51.100.7",
         "caller_id_name": quote(f"{f} {l}"), "caller_id_number": src, "destination_number": dst,
         "start_stamp": quote(start), "answer_stamp": quote(start), "end_stamp": quote(ts_sql()),
         "start_epoch": str(R.randint(1772400000, 1772900000)), "duration": str(R.randint(0, 900)),
         "billsec": str(R.randint(0, 900)), "hangup_cause": R.choice(["NORMAL_CLEARING", "USER_BUSY", "NO_ANSWER"]),
         "read_codec": "PCMU", "write_codec": "PCMU", "domain_name": "pbx.example.com", "accountcode": "1000",
         "sip_hangup_disposition": "send_bye", "billmsec": str(R.randint(0, 900000)), "last_app": "bridge",
         "last_arg": quote(f"sofia/gateway/trunk/{dst}")}
    if i % 2:
        v.update({"user_name": "1000", "record_file": f"/var/lib/freeswitch/recordings/{u}.wav",
                  "record_seconds": "33", "effective_caller_id_name": quote(f"{f} {l}"),
                  "effective_caller_id_number": src, "answer_epoch": v["start_epoch"], "end_epoch": v["start_epoch"]})
    if i == 2:
        v.update({"sip_auth_username": "1000", "sip_auth_password": "s3cr3t-pass", "dialed_extension": "200",
                  "progress_mediamsec": "1200", "rtp_audio_in_mos": "4.42"})
    if i == 4:
        v.update({"detected_speech": quote("I want to speak to someone about my bill"), "customer_email": email()})
    rec = {"core-uuid": uuid(), "switchname": "fs01.example.com",
           "channel_data": {"state": "CS_REPORTING", "direction": v["direction"], "state_number": "11",
                            "flags": "0=1;1=1;37=1", "caps": "1=1;2=1;3=1"},
           "variables": v,
           "app_log": {"application": [{"app_name": "set", "app_data": "hangup_after_bridge=true"},
                                       {"app_name": "bridge", "app_data": f"sofia/gateway/trunk/{dst}"}]},
           "callflow": [{"dialplan": "XML", "profile_index": "1",
                         "extension": {"name": "outbound", "number": dst,
                                       "application": [{"app_name": "bridge", "app_data": f"sofia/gateway/trunk/{dst}"}]},
                         "caller_profile": {"username": "1000", "dialplan": "XML", "caller_id_name": f"{f} {l}",
                                            "ani": src, "aniii": "", "caller_id_number": src,
                                            "network_addr": "203.0.113.9", "rdnis": "", "destination_number": dst,
                                            "uuid": u, "source": "mod_sofia", "context": "default",
                                            "chan_name": f"sofia/internal/{src}@pbx.example.com"},
                         "times": {"created_time": "1772400000000000", "profile_created_time": "1772400000000000",
                                   "progress_time": "0", "answered_time": "1772400002000000",
                                   "hangup_time": "1772400060000000", "transfer_time": "0"}}]}
    return rec


# --- SMPP (decoded PDUs) -----------------------------------------------------------------------

@shape("smpp_pdu", "auto", {
    "command": U, "command_id": U, "command_status": U, "sequence_number": U, "service_type": U,
    "source_addr_ton": U, "source_addr_npi": U, "source_addr": U, "dest_addr_ton": U, "dest_addr_npi": U,
    "destination_addr": U, "esm_class": U, "protocol_id": U, "priority_flag": U, "schedule_delivery_time": U,
    "validity_period": U, "registered_delivery": U, "replace_if_present_flag": U, "data_coding": U,
    "sm_default_msg_id": U, "sm_length": U, "short_message": C, "message_payload": C,
    "receipted_message_id": U, "message_state": U, "network_error_code": U, "user_message_reference": U,
    "sar_msg_ref_num": U, "sar_total_segments": U, "sar_segment_seqnum": U, "system_id": A, "password": A,
    "message_id": U, "/tlvs/#/tag": U, "/tlvs/#/value": U})
def _smpp(i):
    src, dst = phone()[1:], phone()[1:]
    if i in (0, 1, 4):
        rec = {"command": "submit_sm", "command_id": "0x00000004", "command_status": 0, "sequence_number": R.randint(1, 9999),
               "service_type": "", "source_addr_ton": 1, "source_addr_npi": 1, "source_addr": R.choice([src, "AcmeInc"]),
               "dest_addr_ton": 1, "dest_addr_npi": 1, "destination_addr": dst, "esm_class": 0, "protocol_id": 0,
               "priority_flag": 0, "schedule_delivery_time": "", "validity_period": "260302120000000+",
               "registered_delivery": 1, "replace_if_present_flag": 0, "data_coding": R.choice([0, 8]),
               "sm_default_msg_id": 0, "sm_length": 0, "short_message": R.choice(BODIES)}
        rec["sm_length"] = len(rec["short_message"])
        if i == 4:
            rec["short_message"] = ""
            rec["message_payload"] = R.choice(BODIES) + " " + R.choice(BODIES)
            rec["sar_msg_ref_num"], rec["sar_total_segments"], rec["sar_segment_seqnum"] = 42, 2, 1
    elif i in (2, 3):
        mid = "".join(R.choice("0123456789abcdef") for _ in range(10))
        rec = {"command": "deliver_sm", "command_id": "0x00000005", "command_status": 0, "sequence_number": R.randint(1, 9999),
               "service_type": "", "source_addr_ton": 1, "source_addr_npi": 1, "source_addr": dst,
               "dest_addr_ton": 1, "dest_addr_npi": 1, "destination_addr": src, "esm_class": 4, "protocol_id": 0,
               "priority_flag": 0, "data_coding": 0, "registered_delivery": 0,
               "short_message": f"id:{mid} sub:001 dlvrd:001 submit date:2603021200 done date:2603021201 stat:DELIVRD err:000 text:Your verification",
               "receipted_message_id": mid, "message_state": 2, "network_error_code": "030000",
               "tlvs": [{"tag": "0x001e", "value": mid}, {"tag": "0x0427", "value": "2"}]}
        if i == 3:
            rec["esm_class"] = 0
            rec["short_message"] = R.choice(BODIES)
            rec.pop("receipted_message_id"), rec.pop("message_state"), rec.pop("network_error_code"), rec.pop("tlvs")
            rec["user_message_reference"] = 7
    else:
        rec = {"command": "bind_transceiver", "command_id": "0x00000009", "sequence_number": 1,
               "system_id": "acme_smpp", "password": "pw12345", "message_id": ""}
    return rec


COUNTS = {"twilio_webhook_voice": 8, "twilio_event_streams": 6, "smpp_pdu": 6, "twilio_webhook_message": 6,
          "freeswitch_cdr": 6}


def build() -> None:
    for name, (family, truth, fn) in SHAPES.items():
        lines = []
        for i in range(COUNTS.get(name, 6)):
            rec = fn(i)
            extra_truth = {}
            if i in (1, 4, 5):
                ex, extra_truth = extras()
                if name == "telnyx_messaging":
                    rec["data"]["payload"].update(ex)
                    extra_truth = {"/data/payload" + k: v for k, v in extra_truth.items()}
                elif name == "twilio_event_streams":
                    rec["data"].update(ex)
                    extra_truth = {"/data" + k: v for k, v in extra_truth.items()}
                elif name == "freeswitch_cdr":
                    rec["variables"].update({"custom_" + k: v for k, v in ex.items()})
                    extra_truth = {"/variables/custom_" + k[1:]: v for k, v in extra_truth.items()}
                else:
                    rec.update(ex)
            expected = label(name, rec, truth, extra_truth)
            lines.append(json.dumps({"shape": name, "family": family, "record": rec, "expected": expected},
                                    ensure_ascii=False))
        (HERE / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # Asterisk Master.csv lines for the adapter (same records as asterisk_cdr.jsonl).
    rows = []
    for line in (HERE / "asterisk_cdr.jsonl").read_text().splitlines():
        rec = json.loads(line)["record"]
        rows.append(",".join('"' + str(rec.get(c, "")).replace('"', '""') + '"' for c in ASTERISK))
    (HERE / "asterisk_master.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    build()
