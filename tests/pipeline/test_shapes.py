"""Field categories on labelled CPaaS record shapes (issue 5), and one case per kind of error fixed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.classify import Classifier, ClassifyInput
from pipeline.evaluation.shapes_eval import format_shapes_report, run_shapes_eval
from pipeline.policy import load_policy

DATA = Path(__file__).resolve().parents[1] / "data" / "shapes"
SHAPE_FILES = sorted(p.stem for p in DATA.glob("*.jsonl"))
AC = "AC" + "0123456789abcdef" * 2


@pytest.fixture(scope="module")
def policy():
    return load_policy()


@pytest.fixture(scope="module")
def classifier(policy):
    return Classifier(policy, None)


@pytest.fixture(scope="module")
def shapes_result(policy):
    return run_shapes_eval(DATA, policy)


def test_every_required_shape_has_labelled_data():
    assert len(SHAPE_FILES) >= 20
    for name in SHAPE_FILES:
        lines = (DATA / f"{name}.jsonl").read_text().splitlines()
        assert len(lines) >= 5, name


@pytest.mark.parametrize("shape", SHAPE_FILES)
def test_shape_meets_targets(shapes_result, shape):
    s = shapes_result["shapes"][shape]
    assert s["accuracy"] >= 0.98, format_shapes_report(shapes_result)
    assert s["content_recall"] in (None, 1.0), s["errors"]


def test_overall_account_recall(shapes_result):
    assert shapes_result["overall"]["account_recall"] >= 0.97
    assert shapes_result["passed"]
    assert "overall" in format_shapes_report(shapes_result)


def _field(classifier, record, pointer, family="auto"):
    env = classifier.classify_batch([ClassifyInput(record, family)])[0]
    f = env["fields"][pointer]
    return f["category"], f["source"]


# One line per kind of error fixed: (family, record, pointer) -> (category, source).
@pytest.mark.parametrize(
    "family, record, pointer, category, source",
    [
        # parent-key context decides generic names
        ("message", {"billing": {"city": "Springfield"}}, "/billing/city", "account", "name"),
        ("message", {"FromCity": "OAKLAND"}, "/FromCity", "usage", "rule"),
        ("message", {"metadata": {"campaign": {"name": "spring-promo"}}}, "/metadata/campaign/name", "usage", "name"),
        ("account", {"metadata": {"campaign": {"name": "spring-promo"}}}, "/metadata/campaign/name", "usage", "name"),
        ("call", {"extension": {"name": "outbound"}}, "/extension/name", "usage", "name"),
        ("call", {"app_name": "bridge"}, "/app_name", "usage", "name"),
        ("message", {"contact_phone": "+14155550100"}, "/contact_phone", "account", "name"),
        ("message", {"crm": {"contact": "Ada Abara"}}, "/crm/contact", "account", "name"),
        ("message", {"owner": {"name": "Ada Abara"}}, "/owner/name", "account", "name"),
        # tokens right to left, two-token phrases, plurals
        ("message", {"card_last4": "4242"}, "/card_last4", "account", "name"),
        ("message", {"customer_note": "call her after six please"}, "/customer_note", "content", "name"),
        ("message", {"errors": [{"title": "Blocked as spam"}]}, "/errors/0/title", "usage", "name"),
        ("message", {"reason_conference_ended": "last-participant-left"}, "/reason_conference_ended", "usage", "name"),
        # ids of content are usage, urls of media are content
        ("call", {"recording_sid": "RE" + "a" * 32}, "/recording_sid", "usage", "name"),
        ("message", {"media": [{"url": "https://media.example.com/x"}]}, "/media/0/url", "content", "rule"),
        ("message", {"attachment": {"url": "https://files.example.com/a"}}, "/attachment/url", "content", "name"),
        ("message", {"mediaUrls": ["https://api.example.com/Media/ME1"]}, "/mediaUrls/0", "content", "rule"),
        ("account", {"url": "https://api.example.com/Accounts/AC1/Messages/MM1/Media/ME1"}, "/url", "content", "detector"),
        ("message", {"webhook_url": "https://hooks.example.com/in"}, "/webhook_url", "usage", "name"),
        # strong values beat weak names
        ("account", {"sid": AC}, "/sid", "account", "detector"),
        ("message", {"tags": ["ana@example.com"]}, "/tags/0", "account", "detector"),
        # value detection for unknown fields
        ("message", {"zzq": "she asked us to call back later"}, "/zzq", "content", "detector"),
        ("message", {"zzq": "ana@example.com"}, "/zzq", "account", "detector"),
        ("message", {"zzq": "+14155550100"}, "/zzq", "usage", "detector"),
        ("message", {"zzq": "https://x.example.com/Recordings/RE1.mp3"}, "/zzq", "content", "detector"),
        ("message", {"zzq": "203.0.113.9"}, "/zzq", "usage", "detector"),
        ("message", {"zzq": "false"}, "/zzq", "usage", "detector"),
        ("message", {"zzq": "2026-03-01%2010%3A00%3A00"}, "/zzq", "usage", "detector"),
        ("message", {"zzq": "/var/spool/asterisk/monitor/a.wav"}, "/zzq", "content", "detector"),
        ("message", {"zzq": "48656c6c6f20776f"}, "/zzq", "usage", "detector"),
        ("message", {"zzq": "OV4h6zrsxMIW7h0Zfqwfn6TI2GCNl54KALlg8wn5u7k="}, "/zzq", "content", "default"),
        ("message", {"zzq": "x7"}, "/zzq", "content", "default"),
        # secrets by name
        ("call", {"variables": {"sip_auth_password": "pw"}}, "/variables/sip_auth_password", "account", "rule"),
        ("call", {"encryption_details": {"encryption_cek": "OV4h6z"}}, "/encryption_details/encryption_cek", "account", "rule"),
        ("message", {"api-key": "abcd1234"}, "/api-key", "account", "rule"),
        ("message", {"headers": {"X-Twilio-Signature": "RSOY="}}, "/headers/X-Twilio-Signature", "account", "rule"),
        ("message", {"zzq": "Bearer eyJhbGciOi"}, "/zzq", "account", "detector"),
        # '#' in rule globs matches an array index
        ("call", {"callflow": [{"caller_profile": {"chan_name": "sofia/internal/1001@pbx.example.com"}}]},
         "/callflow/0/caller_profile/chan_name", "usage", "rule"),
        # vendor shapes
        ("message", {"msisdn": "14155550100", "keyword": "STOP", "text": "STOP"}, "/keyword", "content", "rule"),
        ("message", {"msisdn": "14155550100", "type": "binary", "data": "48656c6c6f"}, "/data", "content", "rule"),
        ("message", {"command": "bind_transceiver", "system_id": "acme"}, "/system_id", "account", "rule"),
        ("call", {"dcontext": "from-internal", "lastdata": "SIP/trunk/5551,30"}, "/lastdata", "usage", "rule"),
        ("call", {"CallSid": "CA" + "1" * 32, "StirVerstat": "TN-Validation-Passed-A"}, "/StirVerstat", "usage", "rule"),
        ("account", {"category": "sms", "description": "Inbound Voice Minutes"}, "/description", "usage", "rule"),
        ("call", {"friendly_name": "support-bridge"}, "/friendly_name", "usage", "rule"),
        ("account", {"friendly_name": "Acme Corp"}, "/friendly_name", "account", "rule"),
    ],
)
def test_error_kinds_fixed(classifier, family, record, pointer, category, source):
    assert _field(classifier, record, pointer, family) == (category, source)


def test_cloudevents_payload_rules_apply_under_data(classifier):
    rec = {"specversion": "1.0", "type": "com.twilio.messaging.inbound-message.received", "id": "EZ1",
           "source": "/x", "data": {"messageSid": "SM" + "1" * 32, "accountSid": AC, "body": "hi there you",
                                    "billing": {"city": "Springfield"}}}
    env = classifier.classify_batch([ClassifyInput(rec, "auto")])[0]
    assert env["event_type"] == "message"
    assert env["fields"]["/data/body"]["category"] == "content"
    assert env["fields"]["/data/billing/city"]["category"] == "account"
    assert env["fields"]["/id"]["category"] == "usage"


def test_secret_values_are_hashed_in_the_record(policy):
    clf = Classifier(policy, None, secret_key=b"k", secret_key_id="k1")
    env = clf.classify_batch([ClassifyInput({"variables": {"sip_auth_password": "s3cr3t"}}, "call")])[0]
    assert env["fields"]["/variables/sip_auth_password"]["secret"] is True
    assert env["record"]["variables"]["sip_auth_password"].startswith("[secret:hmac-sha256:k1:")
