"""The keys' built-in development defaults are public: using them is warned about (names of
the unset variables only, never a key), and refused with ``REQUIRE_KEYS``."""

from __future__ import annotations

import logging

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import Settings

HASH, PSEUDO = "PRIVACY_PIPELINE_SECRET_HASH_KEY", "PRIVACY_PIPELINE_PSEUDONYM_KEY"


@pytest.mark.parametrize(
    "env, dev",
    [
        ({}, [HASH, PSEUDO]),
        ({HASH: "h-key-123"}, [PSEUDO]),
        ({PSEUDO: "p-key-123"}, [HASH]),
        ({HASH: "h-key-123", PSEUDO: "p-key-123"}, []),
        ({HASH: "dev-only-secret-hash-key-change-me", PSEUDO: "p-key-123"}, [HASH]),  # set to the default
        ({HASH: "", PSEUDO: "p-key-123"}, [HASH]),                                    # empty: as public
        ({HASH: "h-key-123", PSEUDO: "  \t"}, [PSEUDO]),                                # whitespace only
    ],
)
@pytest.mark.parametrize("require", [False, True])
def test_dev_keys_warn_or_refuse(env, dev, require, monkeypatch, caplog, tmp_path):
    for name in (HASH, PSEUDO, f"{HASH}_FILE", f"{PSEUDO}_FILE", "PRIVACY_PIPELINE_REQUIRE_KEYS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if require:
        monkeypatch.setenv("PRIVACY_PIPELINE_REQUIRE_KEYS", "true")
    settings = Settings()
    assert settings.dev_keys() == dev
    log = logging.getLogger("test.dev_keys")
    with caplog.at_level(logging.WARNING, logger="test.dev_keys"):
        if dev and require:
            with pytest.raises(ConfigError) as err:
                settings.check_keys(log)
            text = str(err.value)
        else:
            settings.check_keys(log)
            text = caplog.text
    assert all(name in text for name in dev)
    assert bool(text) is bool(dev)
    assert "key-123" not in text and "change-me" not in text  # never a key


def test_key_from_a_file_is_not_a_dev_key(monkeypatch, tmp_path):
    (tmp_path / "k").write_text("file-key\n")
    monkeypatch.delenv(PSEUDO, raising=False)
    monkeypatch.setenv(f"{PSEUDO}_FILE", str(tmp_path / "k"))
    monkeypatch.setenv(HASH, "h")
    assert Settings().dev_keys() == []
