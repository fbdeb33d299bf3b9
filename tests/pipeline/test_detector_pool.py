"""The detector pool and the template cache give the same spans as plain in-process analysis."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from pipeline.benchmark import a2p_bodies, default_sms_path
from pipeline.detection import DetectionConfig, Detector
from pipeline.detection.engine import template_skeleton
from pipeline.detection.pool import PooledDetector
from pipeline.samples import load_sms_bodies

_FALLBACK = [
    "Hi Maria, call me back at +1 415 555 0142 when you can.",
    "Order #48213 shipped to 12 Market Street, Springfield. Questions? ana.silva@example.com",
    "Hola Juan, nos vemos mañana en la calle Mayor 5.",
    "ok see you at 5",
    "My card is 4111 1111 1111 1111 and my IBAN DE89 3704 0044 0532 0130 00",
]


@pytest.fixture(scope="module")
def sms_texts() -> list[str]:
    bodies = load_sms_bodies(default_sms_path())
    if len(bodies) < 200:
        rng = random.Random(3)
        bodies = [rng.choice(_FALLBACK) + f" {i}" for i in range(200)]
    return bodies[:200]


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(DetectionConfig(template_cache=0))


def test_pool_matches_in_process_detector(detector, sms_texts):
    expected = detector.analyze_batch(sms_texts)
    with PooledDetector(DetectionConfig(template_cache=0), processes=2) as pool:
        got = []
        for i in range(0, len(sms_texts), 64):
            got.extend(pool.analyze_batch(sms_texts[i:i + 64]))
        assert pool.analyze_batch([]) == []
        assert pool.analyze_batch(sms_texts[:1], entities=["PHONE_NUMBER"]) == \
            detector.analyze_batch(sms_texts[:1], entities=["PHONE_NUMBER"])
    assert got == expected


def test_template_cache_matches_uncached_analysis(detector):
    texts = a2p_bodies(150, seed=9)
    # a name after a greeting varies too: those texts must not share a skeleton
    texts += [f"Hi {name}, your code is {code:06d}. Reply STOP to opt out."
              for name, code in zip(["Maria", "John", "Priya", "Luis"] * 5, range(100000, 100020))]
    expected = detector.analyze_batch(texts)
    cached = Detector(DetectionConfig(template_cache=256))
    got = []
    for i in range(0, len(texts), 32):
        got.extend(cached.analyze_batch(texts[i:i + 32]))
    assert got == expected
    assert cached.template_stats["hits"] > len(texts) // 2


@pytest.mark.parametrize("text, skeleton", [
    ("Your code is 123456.", "Your code is 000000."),
    ("Track https://t.example.com/AB12 now", "Track " + "0" * 26 + " now"),
    ("Mail bob.k@example.com today", "Mail " + "0" * 17 + " today"),
    ("Room 4B at 10:30", "Room 00 at 00:00"),
])
def test_template_skeleton_masks_values_and_keeps_length(text, skeleton):
    assert template_skeleton(text) == skeleton
    assert len(template_skeleton(text)) == len(text)


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rpartition(")")[2].split()[1])


def _pss_and_rss(pid: int) -> tuple[int, int]:
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            fields[key] = rest
    return int(fields["Pss"].split()[0]), int(fields["Rss"].split()[0])


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="needs Linux /proc")
def test_shared_pool_forks_children_that_share_the_models(detector, sms_texts):
    """The first child forks the others once warm: same spans as in-process analysis, each
    fork's proportional share of memory is well under its resident set (the model pages are
    shared), a killed fork is replaced by a separately spawned child, and closing the pool
    leaves no process behind."""
    expected = detector.analyze_batch(sms_texts)
    with PooledDetector(DetectionConfig(template_cache=0), processes=3) as pool:
        first, *forks = pool.child_pids()
        assert pool.shared_children == 2
        assert [_ppid(pid) for pid in forks] == [first, first]
        got = []
        for i in range(0, len(sms_texts), 64):
            got.extend(pool.analyze_batch(sms_texts[i:i + 64]))
        assert got == expected
        for pid in forks:
            pss, rss = _pss_and_rss(pid)
            assert pss < 0.7 * rss, (pss, rss)
        before = pool.child_pids()
        for pid in before:  # Ctrl-C reaches the whole process group: the parent decides
            os.kill(pid, signal.SIGINT)
        time.sleep(0.3)
        assert pool.analyze_batch(sms_texts[:8]) == expected[:8]
        assert pool.child_pids() == before and all(_state(p) != "Z" for p in before)
        os.kill(forks[0], signal.SIGKILL)
        again = []
        for i in range(0, len(sms_texts), 64):
            again.extend(pool.analyze_batch(sms_texts[i:i + 64]))
        assert again == expected
        replaced = pool.child_pids()[1]
        assert replaced != forks[0] and _ppid(replaced) == os.getpid()
        pids = pool.child_pids()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") and
                                              _state(p) != "Z" for p in pids):
        time.sleep(0.05)
    assert [p for p in pids if os.path.exists(f"/proc/{p}") and _state(p) != "Z"] == []


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0]
    except OSError:
        return "gone"


def test_unshared_pool_spawns_every_child(detector, sms_texts):
    with PooledDetector(DetectionConfig(template_cache=0), processes=2, share_models=False) as pool:
        assert pool.shared_children == 0
        assert [_ppid(pid) for pid in pool.child_pids()] == [os.getpid()] * 2
        assert pool.analyze_batch(sms_texts[:40]) == detector.analyze_batch(sms_texts[:40])


_FORK_FAILS = r'''
import errno, os, sys
from pipeline.detection import pool

class End:
    def __init__(self): self.sent, self.closed = [], False
    def send(self, msg): self.sent.append(msg)
    def close(self): self.closed = True

def fail(): raise OSError(getattr(errno, sys.argv[1]), "fork failed")
os.fork = fail
own, siblings = End(), [End(), End()]
kept = pool._fork_siblings(own, siblings, detector=None)
print(kept is own, own.sent, [(s.sent, s.closed) for s in siblings])
'''


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
@pytest.mark.parametrize("errno_name, error", [("EAGAIN", "BlockingIOError"), ("ENOMEM", "OSError")])
def test_a_failed_fork_asks_the_parent_for_a_separate_child(errno_name, error):
    """``os.fork`` failing in the first child (EAGAIN) reports ``nofork`` on every sibling's
    end instead of ending the pool's start-up (run in a fresh process: it sets SIGCHLD and
    freezes the collector)."""
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([sys.executable, "-c", _FORK_FAILS, errno_name], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == (f"True [] [([('nofork', '{error}', None)], True), "
                                  f"([('nofork', '{error}', None)], True)]")
