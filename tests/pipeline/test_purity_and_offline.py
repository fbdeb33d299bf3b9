"""`pipeline` is pure (imports without faust/aiokafka/kafka) and never touches the network."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.codec import decode_object
from pipeline.offline import classify_stream

REPO = Path(__file__).resolve().parents[2]

_BLOCK_KAFKA = r"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"faust", "aiokafka", "kafka", "mode"}:
            raise ImportError(f"blocked for the purity test: {name}")
        return None
sys.meta_path.insert(0, Block())
import pkgutil, importlib, pipeline
names = [m.name for m in pkgutil.walk_packages(pipeline.__path__, "pipeline.")]
for n in names:
    importlib.import_module(n)
from pipeline.processing import Processor
from pipeline.settings import Settings
p = Processor.from_settings(Settings())
print(len(names), "modules", sorted(k for k in sys.modules if k.split(".")[0] in {"faust","aiokafka","kafka"}))
"""


def test_pipeline_imports_without_kafka_libraries():
    out = subprocess.run([sys.executable, "-c", _BLOCK_KAFKA], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("modules []")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve or connect outside the process fails loudly."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args[:1])
        raise OSError("network blocked by test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return calls


def test_classify_makes_no_network_call(no_network, settings):
    from pipeline.processing import Processor

    proc = Processor.from_settings(settings)  # fresh: loads spaCy and Presidio under the block
    lines = [
        json.dumps({"sid": "SM" + "a" * 32, "body": "mail me at ana.lopez@example.co.uk or visit example.org"}),
        json.dumps({"sid": "SM" + "b" * 32, "body": "reach me on john@mail.example.com tomorrow"}),
    ]
    out = io.BytesIO()
    counts = classify_stream(io.BytesIO("\n".join(lines).encode()), out, processor=proc)
    assert counts["envelopes"] == 2
    envs = [decode_object(line) for line in out.getvalue().splitlines()]
    emails = [e["type"] for e in envs[0]["fields"]["/body"]["entities"]]
    assert "EMAIL_ADDRESS" in emails
    assert no_network == []


def _sms_lines(shared_data: Path, n: int) -> list[bytes]:
    rows = (shared_data / "sms_spam_collection.tsv").read_text(encoding="utf-8").splitlines()[:n]
    out = []
    for i, row in enumerate(rows):
        label, _, text = row.partition("\t")
        out.append(json.dumps({
            "sid": f"SM{i:032x}", "account_sid": "AC" + "c" * 32, "to": "+14155550100",
            "from": "+14155550199", "body": text, "direction": "inbound", "status": "received",
            "tags": {"label": label},
        }).encode())
    return out


def test_classify_stream_on_real_sms_one_line_per_input(processor, shared_data_dir):
    lines = _sms_lines(shared_data_dir, 200)
    lines.insert(50, b"not-json{")
    lines.insert(120, b"")
    out = io.BytesIO()
    counts = classify_stream(io.BytesIO(b"\n".join(lines) + b"\n"), out, processor=processor)
    produced = out.getvalue().splitlines()
    assert len(produced) == len(lines) == 202
    assert counts == {**counts, "lines": 202, "envelopes": 200, "deadletters": 2}
    from schemas import load_schema
    from jsonschema import Draft202012Validator

    env_schema = Draft202012Validator(load_schema("envelope"))
    dl_schema = Draft202012Validator(load_schema("deadletter"))
    for i, line in enumerate(produced):
        obj = decode_object(line)
        if i in (50, 120):
            dl_schema.validate(obj)
            assert obj["source"]["offset"] == i
        else:
            env_schema.validate(obj)
            assert obj["fields"]["/body"]["category"] == "content"
            assert obj["fields"]["/to"]["category"] == "usage"
            assert obj["fields"]["/account_sid"]["category"] == "account"
