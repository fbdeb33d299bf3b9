"""``policy check`` and ``policy diff`` (issue 5)."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import PolicyError
from pipeline.policy.loader import default_policy_path
from pipeline.policy_tools import format_policy_check, format_policy_diff, policy_check, policy_diff


@pytest.fixture(scope="module")
def default_text():
    return default_policy_path().read_text(encoding="utf-8")


def test_check_default_policy():
    res = policy_check(default_policy_path())
    assert res["ok"] and res["errors"] == []
    assert set(res["families"]) == {"message", "call", "account"}
    assert all(f["rules"] > 0 for f in res["families"].values())
    assert res["families"]["message"]["content"] >= 1 and res["default"] == "content"
    text = format_policy_check(res)
    assert "OK" in text and "message" in text and "name hints" in text


def test_check_reports_file_line_and_key(tmp_path, default_text):
    bad = tmp_path / "bad.yaml"
    bad.write_text(default_text.replace("  category: content\n  cites: \"the most", "  category: contnt\n  cites: \"the most"))
    res = policy_check(bad)
    assert res["ok"] is False
    assert res["errors"][0]["key"] == "default.category" and isinstance(res["errors"][0]["line"], int)
    assert f"{bad}:{res['errors'][0]['line']}: default.category" in format_policy_check(res)


def test_check_missing_file(tmp_path):
    res = policy_check(tmp_path / "nope.yaml")
    assert res["ok"] is False and res["errors"]


def test_diff_identical_policies_is_empty():
    assert policy_diff(default_policy_path(), default_policy_path()) == []
    assert format_policy_diff([]) == "no field changes category or route"


def test_diff_shows_category_and_route_changes(tmp_path, default_text):
    new = tmp_path / "new.yaml"
    new.write_text(default_text.replace("category: content, scan: true, cites: \"N-content: the body of a message",
                                        "category: usage, scan: true, cites: \"N-content: the body of a message", 1))
    sample = tmp_path / "sample.jsonl"
    sample.write_text("\n".join(json.dumps(r) for r in [
        {"sid": "SM" + "1" * 32, "body": "see you at five", "to": "+14155550100", "status": "sent"},
        {"sid": "CA" + "1" * 32, "duration": "15"},
    ]) + "\n")
    changes = policy_diff(default_policy_path(), new, sample)
    assert [(c["event"], c["pointer"]) for c in changes] == [(0, "/body")]
    c = changes[0]
    assert c["old"]["category"] == "content" and c["new"]["category"] == "usage"
    assert "privacy.retention.content.v1" in c["old"]["routes"]
    assert "privacy.retention.usage.v1" in c["new"]["routes"]
    text = format_policy_diff(changes)
    assert "content -> usage: 1" in text and "/body" in text and "see you" not in text


def test_diff_accepts_labelled_shape_lines(tmp_path, default_text):
    from pathlib import Path

    shapes = Path(__file__).resolve().parents[1] / "data" / "shapes" / "vonage_inbound_sms.jsonl"
    new = tmp_path / "new.yaml"
    text = default_text.replace('"/**/button_payload", "/**/keyword",', '"/**/button_payload",', 1)
    new.write_text(text.replace("  category: content\n  cites: \"the most", "  category: usage\n  cites: \"the most", 1))
    changes = policy_diff(default_policy_path(), new, shapes)
    assert "/keyword" in {c["pointer"] for c in changes}
    assert all(c["new"]["source"] == "default" for c in changes)


def test_diff_invalid_policy_raises(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [")
    with pytest.raises(PolicyError):
        policy_diff(default_policy_path(), bad)
