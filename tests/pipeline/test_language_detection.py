"""lingua's one-text call in a loop (detector children: no thread, so they can fork) gives
the languages of its parallel batch call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.detection.language import LanguageDetector

_TEXTS = [
    ("Hello Maria, call me back tomorrow morning please", "en"),
    ("Hola Juan, nos vemos mañana en la calle Mayor de Madrid", "es"),
    ("Hallo Herr Müller, wir treffen uns morgen in der Hauptstraße", "de"),
    ("Bonjour Claire, rendez-vous demain matin devant la gare", "fr"),
    ("Olá João, até amanhã na Rua das Flores em Lisboa", "pt"),
    ("ok 5", "en"),  # too few letters: the default
    ("", "en"),
]


@pytest.fixture(scope="module")
def detectors() -> tuple[LanguageDetector, LanguageDetector]:
    langs = ["en", "es", "de", "fr", "pt"]
    return LanguageDetector(langs, parallel=True), LanguageDetector(langs, parallel=False)


def test_sequential_and_parallel_calls_agree(detectors):
    parallel, sequential = detectors
    texts = [t for t, _ in _TEXTS]
    assert sequential.detect_batch(texts) == parallel.detect_batch(texts) == [lang for _, lang in _TEXTS]


@pytest.mark.parametrize("env, parallel", [("1", False), ("2", True), (None, True)])
def test_parallel_follows_rayon_threads(monkeypatch, env, parallel):
    if env is None:
        monkeypatch.delenv("RAYON_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("RAYON_NUM_THREADS", env)
    assert LanguageDetector(["en", "es"]).parallel is parallel


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
@pytest.mark.parametrize("parallel, threads", [(False, 1), (True, 2)])
def test_only_the_parallel_call_starts_a_thread(parallel, threads):
    """In a fresh process with one rayon thread (as a detector child): the sequential calls
    leave it single-threaded (safe to fork), the parallel call starts rayon's thread."""
    code = ("import os\n"
            "from pipeline.detection.language import LanguageDetector\n"
            f"d = LanguageDetector(['en', 'es', 'fr'], parallel={parallel})\n"
            "d.detect_batch(['Bonjour Claire, rendez-vous demain matin devant la gare'] * 5)\n"
            "print(len(os.listdir('/proc/self/task')))\n")
    env = dict(os.environ, RAYON_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert int(out.stdout.strip().splitlines()[-1]) == threads
