"""Fast accuracy guard: every 4th text of the dev set, thresholds a little under issue 4's."""

from __future__ import annotations

from pipeline.evaluation.detection_eval import SCORED_TYPES, run_detection_eval


def test_dev_subset_accuracy(detector, shared_data):
    res = run_detection_eval(shared_data / "pii_texts_dev.jsonl", detector=detector,
                             stock=False, subset=slice(0, None, 4))
    ours = res["dev"]["ours"]
    assert ours["micro"]["f1"] >= 0.91, ours["micro"]
    for typ in SCORED_TYPES:
        fig = ours["per_type"][typ]
        if fig["tp"] + fig["fn"]:
            assert fig["f1"] >= 0.82, (typ, fig)
    assert ours["distractor_hits"] <= 1
