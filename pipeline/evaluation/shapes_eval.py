"""Field categories on labelled CPaaS record shapes (issue 5, ``make eval``).

Each ``*.jsonl`` file under ``data_dir`` holds ``{"shape", "family", "record", "expected"}``
lines: ``expected`` maps every leaf pointer to its category. Categories do not depend on
the text detector (it only adds entity spans), so the classifier runs without one: the
evaluation is fast and measures exactly the rules, name hints, value hints and default.

Targets (issue 5): >= 98 % of leaves right per shape, content recall 1.0, account recall
>= 0.97.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pipeline.classify import Classifier, ClassifyInput
from pipeline.policy import Policy, load_policy

TARGET_ACCURACY = 0.98
TARGET_CONTENT_RECALL = 1.0
TARGET_ACCOUNT_RECALL = 0.97


def load_shape_file(path: str | Path) -> list[dict]:
    """The labelled lines of one shape file."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            item = json.loads(line)
            if not isinstance(item.get("record"), dict) or not isinstance(item.get("expected"), dict):
                raise ValueError(f"{path}:{n}: a shape line needs 'record' and 'expected' objects")
            out.append(item)
    return out


def _scores(c: Counter) -> dict:
    def ratio(a: str, b: str) -> float | None:
        return round(c[a] / c[b], 4) if c[b] else None

    return {"leaves": c["leaves"], "right": c["right"], "accuracy": ratio("right", "leaves"),
            "content_recall": ratio("content_found", "content"),
            "account_recall": ratio("account_found", "account"),
            "usage_recall": ratio("usage_found", "usage")}


def run_shapes_eval(data_dir: str | Path, policy: Policy | None = None, *, max_errors: int = 20) -> dict:
    """Classify every labelled record under ``data_dir`` and score it against its labels.

    Returns ``{"shapes": {shape: {leaves, right, accuracy, content_recall, account_recall,
    usage_recall, records, errors: [{pointer, expected, got, source, rule}]}},
    "overall": {...}, "targets": {...}, "passed": bool}``. Errors list pointers and
    categories only (the data is invented, but the habit matters).
    """
    policy = policy or load_policy()
    classifier = Classifier(policy, None)
    shapes: dict[str, dict] = {}
    total: Counter = Counter()
    for path in sorted(Path(data_dir).glob("*.jsonl")):
        items = load_shape_file(path)
        envs = classifier.classify_batch([ClassifyInput(it["record"], it.get("family", "auto"),
                                                        json.dumps(it["record"]).encode()) for it in items])
        for item, env in zip(items, envs):
            name = item.get("shape") or path.stem
            entry = shapes.setdefault(name, {"counts": Counter(), "errors": [], "records": 0})
            entry["records"] += 1
            c = entry["counts"]
            for ptr, want in item["expected"].items():
                got_field = env["fields"].get(ptr)
                got = got_field["category"] if got_field else None
                c["leaves"] += 1
                c[want] += 1
                if got == want:
                    c["right"] += 1
                    c[f"{want}_found"] += 1
                elif len(entry["errors"]) < max_errors:
                    entry["errors"].append({"pointer": ptr, "expected": want, "got": got,
                                            "source": got_field and got_field["source"],
                                            "rule": got_field and got_field["rule"],
                                            "event_type": env["event_type"]})
    result_shapes = {}
    for name, entry in sorted(shapes.items()):
        total.update(entry["counts"])
        result_shapes[name] = {**_scores(entry["counts"]), "records": entry["records"], "errors": entry["errors"]}
    overall = _scores(total)
    passed = bool(result_shapes) and all(
        (s["accuracy"] or 0) >= TARGET_ACCURACY
        and (s["content_recall"] is None or s["content_recall"] >= TARGET_CONTENT_RECALL)
        for s in result_shapes.values()
    ) and (overall["account_recall"] is None or overall["account_recall"] >= TARGET_ACCOUNT_RECALL)
    return {"shapes": result_shapes, "overall": overall, "passed": passed,
            "targets": {"accuracy": TARGET_ACCURACY, "content_recall": TARGET_CONTENT_RECALL,
                        "account_recall": TARGET_ACCOUNT_RECALL}}


def format_shapes_report(result: dict, *, show_errors: bool = True) -> str:
    """A text table: per shape the share of leaves right, content and account recall."""

    def pct(v):
        return "   -  " if v is None else f"{100 * v:6.2f}"

    lines = [f"{'shape':34} {'records':>7} {'leaves':>6} {'right%':>7} {'content':>7} {'account':>7}"]
    for name, s in result["shapes"].items():
        lines.append(f"{name:34} {s['records']:7d} {s['leaves']:6d} {pct(s['accuracy']):>7} "
                     f"{pct(s['content_recall']):>7} {pct(s['account_recall']):>7}")
    o = result["overall"]
    lines.append(f"{'overall':34} {'':7} {o['leaves']:6d} {pct(o['accuracy']):>7} "
                 f"{pct(o['content_recall']):>7} {pct(o['account_recall']):>7}")
    t = result["targets"]
    lines.append(f"targets: >= {100 * t['accuracy']:.0f}% right per shape, content recall "
                 f"{t['content_recall']:.2f} per shape, account recall >= {100 * t['account_recall']:.0f}% "
                 f"-> {'PASS' if result['passed'] else 'FAIL'}")
    if show_errors:
        for name, s in result["shapes"].items():
            for e in s["errors"]:
                lines.append(f"  {name}: {e['pointer']} expected {e['expected']} got {e['got']} "
                             f"({e['source']}:{e['rule']}, {e['event_type']})")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    import sys

    res = run_shapes_eval(sys.argv[1] if len(sys.argv) > 1 else "tests/data/shapes")
    print(format_shapes_report(res))
    sys.exit(0 if res["passed"] else 1)
