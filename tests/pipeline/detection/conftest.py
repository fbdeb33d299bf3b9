"""Fixtures for the detection tests: one Detector per session (loading takes ~2 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SHARED_CANDIDATES = (Path("/work/shared/data"), REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def detector():
    from pipeline.detection import Detector

    return Detector()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    for path in SHARED_CANDIDATES:
        if (path / "pii_texts_dev.jsonl").exists():
            return path
    pytest.skip("labelled dev set not found in /work/shared/data or ../shared/data "
                "relative to the repo: accuracy test skipped")


def found(detector, text: str) -> list[tuple[str, str]]:
    """``[(type, surface)]`` reported for ``text``."""
    return [(s.type, text[s.start:s.end]) for s in detector.analyze_batch([text])[0]]
