"""Detector contract: config validation, batching and order, long texts, no network."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from pipeline.detection import DetectionConfig, Detector, EntitySpan
from pipeline.detection.offline import resolve_model_name


def test_default_config_is_valid_and_documents_dropped_recognizers():
    cfg = DetectionConfig()
    assert "PHONE_NUMBER" in cfg.entities and "CPAAS_SID" in cfg.entities
    assert "DateRecognizer" in cfg.dropped_recognizers
    assert DetectionConfig.model_validate(cfg.model_dump()) == cfg


@pytest.mark.parametrize("bad", [
    {"unknown_key": 1},
    {"recognizers": ["phone", "nope"]},
    {"thresholds": {"PERSON": 1.5}},
    {"languages": ["xx"]},
    {"default_language": "de", "languages": ["en"]},
])
def test_config_rejects(bad):
    with pytest.raises(ValidationError):
        DetectionConfig.model_validate(bad)


def test_batch_order_sorted_spans_and_entities_filter(detector):
    texts = ["", "call +14155550123 or mail a@example.com", "nothing here", "ssn 464-72-7630"]
    out = detector.analyze_batch(texts)
    assert len(out) == 4 and out[0] == [] and out[2] == []
    assert [s.type for s in out[1]] == ["PHONE_NUMBER", "EMAIL_ADDRESS"]
    assert all(isinstance(s, EntitySpan) for s in out[1])
    assert [s.start for s in out[1]] == sorted(s.start for s in out[1])
    only = detector.analyze_batch(texts, entities=["EMAIL_ADDRESS"])
    assert [s.type for s in only[1]] == ["EMAIL_ADDRESS"] and only[3] == []


def test_code_point_offsets(detector):
    text = "😀😀 écrivez à zoë@example.com"
    (span,) = [s for s in detector.analyze_batch([text])[0] if s.type == "EMAIL_ADDRESS"]
    assert text[span.start:span.end] == "zoë@example.com"


def test_million_character_body_is_chunked(detector):
    filler = "lorem ipsum dolor sit amet " * 37_000  # 999,000 characters
    tail = "call +14155550123 now "
    text = filler + tail + "x" * (1_000_001 - len(filler) - len(tail))
    assert len(text) == 1_000_001
    (spans,) = detector.analyze_batch([text])
    phones = [s for s in spans if s.type == "PHONE_NUMBER"]
    assert [text[s.start:s.end] for s in phones] == ["+14155550123"]


def test_per_entity_threshold_and_allow_list():
    cfg = DetectionConfig(recognizers=["phone", "email"], thresholds={"PHONE_NUMBER": 0.99},
                          allow_list=["Support@Example.com"])
    det = Detector(cfg)
    (spans,) = det.analyze_batch(["see 555-123-4567 or support@example.com"])
    assert spans == []


def test_no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    det = Detector(DetectionConfig())
    (spans,) = det.analyze_batch(["write to jane.doe@example.co.uk please"])
    assert [s.type for s in spans] == ["EMAIL_ADDRESS"]
    assert resolve_model_name("auto")


def test_pipeline_has_no_kafka_imports():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[3] / "pipeline" / "detection"
    for path in root.rglob("*.py"):
        src = path.read_text()
        for mod in ("faust", "aiokafka", "kafka"):
            assert f"import {mod}" not in src and f"from {mod}" not in src, path
