"""The benchmark's rounds: every round on streams of its own (no event seen twice), the best
round reported with every round's rate, and the first A2P/P2P round's ratio kept."""

from __future__ import annotations

import pytest

from pipeline import benchmark as B


class _Recording:
    """A processor stand-in for :func:`pipeline.benchmark.classify_rate`: records the values
    it is given (``process_batches``/``process_batch``) and returns no results."""

    def __init__(self):
        self.values: list[bytes] = []

    def process_batch(self, records, **kw):
        return []

    def process_batches(self, batches):
        for records, _ in batches:
            self.values.extend(r.value for r in records)
            yield []


def test_structured_rounds_never_repeat_an_event():
    streams = [B.structured_stream(3000, seed=13 + k) for k in range(B.ROUNDS)]
    values = [r.value for s in streams for r in s]
    assert len(values) == B.ROUNDS * 3000 == len(set(values))


def test_best_of_streams_keeps_every_round():
    proc = _Recording()
    streams = [B.structured_stream(500, seed=40 + k) for k in range(3)]
    res = B.best_of_streams(proc, streams, batch_size=64)
    assert len(res["rounds"]) == 3 and res["first"] == res["rounds"][0]
    assert res["events_per_s"] == max(res["rounds"])
    assert proc.values == [r.value for s in streams for r in s]


@pytest.mark.parametrize("rounds", [1, 3])
def test_a2p_vs_p2p_rounds_are_fresh_and_interleaved(rounds):
    proc = _Recording()
    res = B.a2p_vs_p2p(proc, 120, seed=11, rounds=rounds, batch_size=50)
    assert len(res["a2p"]["rounds"]) == len(res["p2p"]["rounds"]) == rounds
    seen = proc.values
    assert len(seen) == 2 * rounds * 120
    # P2P then A2P in each round; the A2P bodies of each round are new texts
    a2p_values = [seen[(2 * k + 1) * 120:(2 * k + 2) * 120] for k in range(rounds)]
    flat = [v for chunk in a2p_values for v in chunk]
    assert len(set(flat)) == len(flat)
    ratios = [round(a / p, 2) for a, p in zip(res["a2p"]["rounds"], res["p2p"]["rounds"])]
    assert res["ratios"] == ratios and res["cold_ratio"] == ratios[0]
    assert res["ratio"] == sorted(ratios)[len(ratios) // 2]


# (target key, the table row whose note carries its mark)
_TARGET_ROWS = [
    ("vs_analyze_iterator>=2.5", "  vs analyze_iterator"),
    ("vs_analyze_dict>=60", "  vs analyze_dict"),
    ("structured_per_core>=20000", "structured-only, one core"),
    ("a2p_vs_p2p>=3", "  A2P / P2P"),
    ("e2e_share>=0.5", "  share of offline classify"),
    ("e2e_half_p99<=1000ms", "e2e, one worker, half load"),
    ("worker_memory<=800MB", "worker peak memory (with children)"),
]


def _saved_results() -> dict:
    import json
    from pathlib import Path

    saved = sorted((Path(__file__).resolve().parents[2] / "bench" / "results").glob("*.json"))
    with_e2e = [p for p in saved if "e2e" in json.loads(p.read_text())]
    return json.loads(with_e2e[-1].read_text())


@pytest.mark.parametrize("target, row", _TARGET_ROWS)
@pytest.mark.parametrize("met, prefix", [(True, "✓ "), (False, "✗ MISSED: ")])
def test_table_marks_each_target_met_or_missed(target, row, met, prefix):
    res = _saved_results()
    res["targets"] = {k: True for k, _ in _TARGET_ROWS}
    res["targets"][target] = met
    notes = {name: note for name, _, note in B.table_rows(res)}
    assert notes[row].startswith(prefix)
    others = [notes[r] for t, r in _TARGET_ROWS if t != target]
    assert all(n.startswith("✓ ") for n in others)


def test_table_without_targets_has_no_marks():
    res = _saved_results()
    del res["targets"]
    assert not any(note.startswith(("✓", "✗")) for _, _, note in B.table_rows(res))


def test_quiet_logger_drops_warnings_inside_only(caplog):
    import logging

    log = logging.getLogger("presidio-analyzer")
    with caplog.at_level(logging.WARNING):
        with B.quiet_logger("presidio-analyzer"):
            log.warning("inside")
            log.error("an error still shows")
        log.warning("after")
    assert [r.getMessage() for r in caplog.records] == ["an error still shows", "after"]
