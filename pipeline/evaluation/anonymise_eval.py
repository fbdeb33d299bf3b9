"""Leak check of anonymisation (issue 6): gold PII values still present after anonymising.

Each dev text (``pii_texts_dev.jsonl``) becomes the body of an inbound message event, goes
through the real :class:`~pipeline.processing.Processor` (classification with the detector,
then the anonymiser) and every gold span's ``value`` is searched, as an exact substring, in
the anonymised record's strings. Targets: no leak for EMAIL_ADDRESS, CREDIT_CARD,
IBAN_CODE, US_SSN and IP_ADDRESS; at most 2 % of all gold values overall.

Pure functions: :func:`run_leak_eval` returns figures, :func:`format_leak_report` turns them
into rich tables. Leaks are listed by text id and type, never by value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from pipeline.codec import encode
from pipeline.records import SourceRecord

ZERO_LEAK_TYPES = ("EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS")
MAX_OVERALL_LEAK_RATE = 0.02
EVAL_ACCOUNT = "AC" + "e" * 32
BATCH = 64


def _load(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def message_event(item: dict) -> dict:
    """The inbound message event a dev text is anonymised as."""
    sid = "SM" + hashlib.sha256(str(item.get("id", item["text"])).encode()).hexdigest()[:32]
    return {"sid": sid, "account_sid": EVAL_ACCOUNT, "from": "+14155550100", "to": "+14155550199",
            "direction": "inbound", "body": item["text"]}


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def run_leak_eval(dev_path: str | Path, processor, *, limit: int | None = None) -> dict:
    """Anonymise every dev text and count gold values still present.

    Returns ``{"n_texts", "per_type": {type: {"total", "leaked", "rate"}}, "overall":
    {"total", "leaked", "rate"}, "targets": {"zero_leak_types": {type: bool},
    "overall_max_rate", "met"}, "leaks": [{"id", "type"}]}``.
    """
    items = _load(dev_path)[:limit]
    per_type: dict[str, dict] = {}
    leaks: list[dict] = []
    for off in range(0, len(items), BATCH):
        chunk = items[off:off + BATCH]
        recs = [SourceRecord("eval", None, off + i, None, encode(message_event(it))) for i, it in enumerate(chunk)]
        results = processor.process_batch(recs, event_type="message")
        for item, res in zip(chunk, results):
            anon = processor.anonymiser.anonymise_envelope(processor.router.redacted(res.envelope))
            out = "\n".join(_strings(anon["record"]))
            for span in item.get("spans", []):
                t = per_type.setdefault(span["type"], {"total": 0, "leaked": 0})
                t["total"] += 1
                if span["value"] and span["value"] in out:
                    t["leaked"] += 1
                    leaks.append({"id": item.get("id"), "type": span["type"]})
    for t in per_type.values():
        t["rate"] = t["leaked"] / t["total"] if t["total"] else 0.0
    total = sum(t["total"] for t in per_type.values())
    leaked = sum(t["leaked"] for t in per_type.values())
    overall = {"total": total, "leaked": leaked, "rate": leaked / total if total else 0.0}
    zero = {typ: per_type.get(typ, {"leaked": 0})["leaked"] == 0 for typ in ZERO_LEAK_TYPES}
    return {
        "n_texts": len(items),
        "per_type": dict(sorted(per_type.items())),
        "overall": overall,
        "targets": {"zero_leak_types": zero, "overall_max_rate": MAX_OVERALL_LEAK_RATE,
                    "met": all(zero.values()) and overall["rate"] <= MAX_OVERALL_LEAK_RATE},
        "leaks": leaks,
    }


def format_leak_report(result: dict) -> list:
    """Rich tables for a :func:`run_leak_eval` result (per type, overall, target status)."""
    from rich.table import Table

    table = Table(title=f"Anonymisation leak check, dev set ({result['n_texts']} texts): "
                        "gold values still present after anonymising")
    for col in ("type", "gold values", "leaked", "leak rate", "target"):
        table.add_column(col, justify="left" if col == "type" else "right")
    zero = result["targets"]["zero_leak_types"]
    for typ, t in result["per_type"].items():
        target = ("0 " + ("ok" if zero[typ] else "MISSED")) if typ in zero else "-"
        table.add_row(typ, str(t["total"]), str(t["leaked"]), f"{t['rate']:.1%}", target)
    o = result["overall"]
    ok = o["rate"] <= result["targets"]["overall_max_rate"]
    table.add_row("overall", str(o["total"]), str(o["leaked"]), f"{o['rate']:.1%}",
                  f"<= {result['targets']['overall_max_rate']:.0%} " + ("ok" if ok else "MISSED"), style="bold")
    return [table]


def _main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - developer aid
    import argparse

    from rich.console import Console

    from pipeline.processing import Processor
    from pipeline.settings import load_settings

    ap = argparse.ArgumentParser(description="anonymisation leak check on the dev set")
    ap.add_argument("dev", nargs="?", default="../shared/data/pii_texts_dev.jsonl")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    result = run_leak_eval(args.dev, Processor.from_settings(load_settings()))
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "leaks"}, indent=2))
    else:
        console = Console()
        for t in format_leak_report(result):
            console.print(t)
        if result["leaks"]:
            console.print("leaks (id, type): " + ", ".join(f"{x['id']} {x['type']}" for x in result["leaks"]))
    return 0 if result["targets"]["met"] else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
