"""Fixtures for the pure pipeline tests: one real Processor (policy + Presidio) per session."""

from __future__ import annotations

import os

import pytest

# Unit tests run detection in-process; the pool has its own tests (test_detector_pool.py).
os.environ.setdefault("PRIVACY_PIPELINE_DETECTOR_PROCESSES", "1")

from pipeline.processing import Processor
from pipeline.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(secret_hash_key="test-secret-key", pseudonym_key="test-pseudonym-key", detector_processes=1)


@pytest.fixture(scope="session")
def processor(settings) -> Processor:
    """A real Processor: the packaged policy, spaCy's small model and Presidio, offline."""
    return Processor.from_settings(settings)


@pytest.fixture(scope="module")
def fixed_processor(processor):
    """The session processor with a fixed clock (envelopes carry ``classified_at``): the
    same input gives the same bytes."""
    from datetime import UTC, datetime

    clock = processor.classifier.clock
    processor.classifier.clock = lambda: datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    yield processor
    processor.classifier.clock = clock


@pytest.fixture(scope="session")
def shared_data_dir():
    """``../shared/data`` next to the repository; tests that need it skip when it is absent."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (the ../shared folder is absent)")
    return path
