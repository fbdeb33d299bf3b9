"""Detection accuracy: our :class:`Detector` vs stock Presidio on the labelled dev set.

Pure functions (no CLI, no printing): :func:`run_detection_eval` returns figures as a dict,
:func:`format_detection_report` turns them into rich tables, :func:`run_throughput`
times both detectors on a list of texts.

Scoring (issue 4): relaxed match. A gold span is found when a prediction of the same type
overlaps it; several predictions inside one gold span count once. A prediction that
overlaps no gold span of its type is a false positive. Only :data:`SCORED_TYPES` are
scored; a scored-type prediction overlapping a distractor (OTP, order id, amount, ...) is
a distractor hit. Stock Presidio is ``AnalyzerEngine`` on the same spaCy small model with
its default recognizers, ``score_threshold=0.35`` and tldextract offline.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

SCORED_TYPES = ("PERSON", "PHONE_NUMBER", "EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE",
                "US_SSN", "IP_ADDRESS", "LOCATION")
MULTIDOGO_LABELS = {"name": "PERSON", "phone_number": "PHONE_NUMBER",
                    "phonenumber": "PHONE_NUMBER", "address": "LOCATION"}
STOCK_THRESHOLD = 0.35

Span = tuple[str, int, int]  # (type, start, end)
Predictor = Callable[[Sequence[str]], list[list[Span]]]


# -- data ---------------------------------------------------------------------------------
def load_dev_set(path: str | Path) -> list[dict]:
    """The JSON Lines dev set: ``{"id", "lang", "text", "spans", "distractors"}`` per line."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_multidogo(path: str | Path) -> list[tuple[str, list[Span]]]:
    """Turns with a PII slot as ``(utterance, gold spans)``; tokens are whitespace tokens.

    Rows whose token and label counts differ (120 in the source) are skipped. Consecutive
    tokens with the same label form one span.
    """
    out = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            text = row.get("utterance") or ""
            labels = (row.get("slot-labels") or "").split()
            if not any(lab in MULTIDOGO_LABELS for lab in labels):
                continue
            offsets = []
            pos = 0
            for tok in text.split():
                start = text.index(tok, pos)
                offsets.append((start, start + len(tok)))
                pos = start + len(tok)
            if len(offsets) != len(labels):
                continue
            spans: list[Span] = []
            prev = None
            for (start, end), lab in zip(offsets, labels):
                typ = MULTIDOGO_LABELS.get(lab)
                if typ and prev == lab and spans:
                    spans[-1] = (typ, spans[-1][1], end)
                elif typ:
                    spans.append((typ, start, end))
                prev = lab
            out.append((text, spans))
    return out


# -- predictors ---------------------------------------------------------------------------
def ours_predictor(detector=None) -> Predictor:
    """Our :class:`~pipeline.detection.Detector` as a predictor (built when not given)."""
    if detector is None:
        from pipeline.detection import Detector

        detector = Detector()

    def predict(texts: Sequence[str]) -> list[list[Span]]:
        return [[(s.type, s.start, s.end) for s in spans]
                for spans in detector.analyze_batch(list(texts))]

    return predict


def stock_presidio_engine(model_name: str | None = "auto"):
    """Stock Presidio: default recognizers on the same spaCy model, tldextract offline."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    from pipeline.detection.offline import (
        make_email_validation_offline,
        resolve_model_name,
    )

    make_email_validation_offline()
    nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en",
                                         "model_name": resolve_model_name(model_name)}])
    nlp_engine.load()
    return AnalyzerEngine(nlp_engine=nlp_engine, supported_languages=["en"])


def stock_predictor(engine=None) -> Predictor:
    """Stock Presidio ``analyze`` (English, ``score_threshold=0.35``) as a predictor."""
    engine = engine or stock_presidio_engine()

    def predict(texts: Sequence[str]) -> list[list[Span]]:
        return [[(r.entity_type, r.start, r.end)
                 for r in engine.analyze(t, language="en", score_threshold=STOCK_THRESHOLD)]
                for t in texts]

    return predict


# -- scoring ------------------------------------------------------------------------------
def _overlaps(a0: int, a1: int, b0: int, b1: int) -> bool:
    return a0 < b1 and b0 < a1


def score_predictions(gold: Sequence[Sequence[Span]], pred: Sequence[Sequence[Span]],
                      distractors: Sequence[Sequence[tuple[int, int]]] | None = None,
                      types: Sequence[str] = SCORED_TYPES) -> dict:
    """Per-type tp/fp/fn, precision/recall/F1, micro figures and distractor hits."""
    counts = {t: {"tp": 0, "fp": 0, "fn": 0} for t in types}
    hits = 0
    hit_texts = 0
    examples: dict[str, list] = {"fp": [], "fn": [], "distractor": []}
    for i, (g, p) in enumerate(zip(gold, pred)):
        p = [s for s in p if s[0] in counts]
        for typ, gs, ge in g:
            if typ not in counts:
                continue
            if any(pt == typ and _overlaps(ps, pe, gs, ge) for pt, ps, pe in p):
                counts[typ]["tp"] += 1
            else:
                counts[typ]["fn"] += 1
                examples["fn"].append((i, typ, gs, ge))
        for pt, ps, pe in p:
            if not any(gt == pt and _overlaps(ps, pe, gs, ge) for gt, gs, ge in g):
                counts[pt]["fp"] += 1
                examples["fp"].append((i, pt, ps, pe))
        if distractors is not None:
            text_hits = sum(1 for pt, ps, pe in p
                            for ds, de in distractors[i] if _overlaps(ps, pe, ds, de))
            hits += text_hits
            hit_texts += bool(text_hits)
            if text_hits:
                examples["distractor"].append(i)
    per_type = {t: _prf(c) for t, c in counts.items()}
    total = {k: sum(c[k] for c in counts.values()) for k in ("tp", "fp", "fn")}
    return {"per_type": per_type, "micro": _prf(total), "distractor_hits": hits,
            "distractor_texts": hit_texts, "examples": examples}


def _prf(c: dict) -> dict:
    tp, fp, fn = c["tp"], c["fp"], c["fn"]
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": f}


def recall_by_type(gold: Sequence[Sequence[Span]], pred: Sequence[Sequence[Span]],
                   types: Sequence[str]) -> dict[str, dict]:
    """Recall (found / total) per type, relaxed match."""
    out = {t: {"found": 0, "total": 0} for t in types}
    for g, p in zip(gold, pred):
        for typ, gs, ge in g:
            if typ not in out:
                continue
            out[typ]["total"] += 1
            if any(pt == typ and _overlaps(ps, pe, gs, ge) for pt, ps, pe in p):
                out[typ]["found"] += 1
    for v in out.values():
        v["recall"] = v["found"] / v["total"] if v["total"] else 0.0
    return out


# -- the evaluation -----------------------------------------------------------------------
def run_detection_eval(dev_path: str | Path, multidogo_path: str | Path | None = None, *,
                       detector=None, stock: bool = True, subset: slice | None = None) -> dict:
    """Run the dev set (and MultiDoGO turns) through our detector and stock Presidio.

    Returns ``{"dev": {"n_texts", "ours", "stock"}, "multidogo": {"n_texts", "ours",
    "stock"} | None, "seconds": {...}}``; ``ours``/``stock`` hold :func:`score_predictions`
    figures (``examples`` lists indices of misses for debugging). ``stock=False`` skips
    stock Presidio; ``subset`` takes a slice of the dev set (used by the fast test).
    """
    rows = load_dev_set(dev_path)
    if subset is not None:
        rows = rows[subset]
    texts = [r["text"] for r in rows]
    gold = [[(s["type"], s["start"], s["end"]) for s in r["spans"]] for r in rows]
    distractors = [[(d["start"], d["end"]) for d in r.get("distractors", [])] for r in rows]
    predictors = {"ours": ours_predictor(detector)}
    if stock:
        predictors["stock"] = stock_predictor()
    result: dict = {"dev": {"n_texts": len(rows)}, "multidogo": None, "seconds": {}}
    for name, predict in predictors.items():
        t0 = time.perf_counter()
        pred = predict(texts)
        result["seconds"][f"dev_{name}"] = time.perf_counter() - t0
        result["dev"][name] = score_predictions(gold, pred, distractors)
    if multidogo_path is not None and Path(multidogo_path).exists():
        turns = load_multidogo(multidogo_path)
        m_texts = [t for t, _ in turns]
        m_gold = [g for _, g in turns]
        result["multidogo"] = {"n_texts": len(turns)}
        for name, predict in predictors.items():
            t0 = time.perf_counter()
            pred = predict(m_texts)
            result["seconds"][f"multidogo_{name}"] = time.perf_counter() - t0
            result["multidogo"][name] = recall_by_type(
                m_gold, pred, ("PERSON", "PHONE_NUMBER", "LOCATION"))
    return result


def run_throughput(texts: Sequence[str], *, detector=None, stock: bool = True,
                   batch_size: int = 256) -> dict:
    """Texts per second: our ``analyze_batch`` (batches of ``batch_size``) vs stock
    Presidio ``analyze`` one text at a time and ``BatchAnalyzerEngine.analyze_iterator``."""
    if detector is None:
        from pipeline.detection import Detector

        detector = Detector()
    texts = list(texts)
    out: dict = {"n_texts": len(texts)}
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        detector.analyze_batch(texts[i:i + batch_size])
    out["ours_texts_per_s"] = len(texts) / (time.perf_counter() - t0)
    if stock:
        from presidio_analyzer import BatchAnalyzerEngine

        engine = stock_presidio_engine()
        t0 = time.perf_counter()
        for t in texts:
            engine.analyze(t, language="en", score_threshold=STOCK_THRESHOLD)
        out["stock_analyze_texts_per_s"] = len(texts) / (time.perf_counter() - t0)
        batch = BatchAnalyzerEngine(analyzer_engine=engine)
        t0 = time.perf_counter()
        list(batch.analyze_iterator(texts, language="en", batch_size=batch_size,
                                    score_threshold=STOCK_THRESHOLD))
        out["stock_iterator_texts_per_s"] = len(texts) / (time.perf_counter() - t0)
    return out


# -- report -------------------------------------------------------------------------------
def format_detection_report(result: dict) -> list:
    """Rich tables for :func:`run_detection_eval` figures (print each with a Console)."""
    from rich.table import Table

    dev = result["dev"]
    systems = [s for s in ("ours", "stock") if s in dev]
    table = Table(title=f"Detection accuracy, dev set ({dev['n_texts']} texts, relaxed match)")
    table.add_column("type")
    for s in systems:
        for col in ("P", "R", "F1"):
            table.add_column(f"{s} {col}", justify="right")
    for typ in SCORED_TYPES:
        row = [typ]
        for s in systems:
            f = dev[s]["per_type"][typ]
            row += [f"{f['precision']:.3f}", f"{f['recall']:.3f}", f"{f['f1']:.3f}"]
        table.add_row(*row)
    row = ["micro"]
    for s in systems:
        f = dev[s]["micro"]
        row += [f"{f['precision']:.3f}", f"{f['recall']:.3f}", f"[bold]{f['f1']:.3f}[/bold]"]
    table.add_row(*row, end_section=True)
    row = ["distractor hits"]
    for s in systems:
        row += ["", "", str(dev[s]["distractor_hits"])]
    table.add_row(*row)
    tables = [table]
    md = result.get("multidogo")
    if md:
        t2 = Table(title=f"Recall on MultiDoGO customer turns ({md['n_texts']} turns)")
        t2.add_column("type")
        for s in systems:
            t2.add_column(f"{s} recall", justify="right")
        for typ in ("PERSON", "PHONE_NUMBER", "LOCATION"):
            cells = [typ]
            for s in systems:
                f = md[s][typ]
                cells.append(f"{f['recall']:.3f} ({f['found']}/{f['total']})")
            t2.add_row(*cells)
        tables.append(t2)
    return tables


def _main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - developer aid
    import argparse

    from rich.console import Console

    here = Path(__file__).resolve().parents[2]
    ap = argparse.ArgumentParser(description="detection accuracy vs stock Presidio")
    ap.add_argument("--dev", default=str(here.parent / "shared/data/pii_texts_dev.jsonl"))
    ap.add_argument("--multidogo",
                    default=str(here.parent / "shared/data/multidogo_customer_turns_test.tsv"))
    ap.add_argument("--no-stock", action="store_true")
    ap.add_argument("--no-multidogo", action="store_true")
    ap.add_argument("--show-errors", action="store_true")
    args = ap.parse_args(argv)
    res = run_detection_eval(args.dev, None if args.no_multidogo else args.multidogo,
                             stock=not args.no_stock)
    console = Console()
    for t in format_detection_report(res):
        console.print(t)
    console.print({k: round(v, 2) for k, v in res["seconds"].items()})
    if args.show_errors:
        rows = load_dev_set(args.dev)
        ex = res["dev"]["ours"]["examples"]
        for kind in ("fn", "fp"):
            for i, typ, s, e in ex[kind]:
                print(kind, typ, repr(rows[i]["text"][s:e]), "|", rows[i]["text"])
        for i in ex["distractor"]:
            print("distractor", rows[i]["text"])
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
