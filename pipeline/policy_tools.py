"""``privacy-pipeline policy check FILE`` and ``policy diff OLD NEW [--sample FILE]`` (issue 5).

Pure functions returning data plus ``format_*`` functions for the CLI (``agents/`` wires
them). Neither loads spaCy: categories and routes do not depend on the text detector.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pipeline.adapters import adapt_line
from pipeline.classify import Classifier, ClassifyInput
from pipeline.codec import decode_object
from pipeline.errors import DecodeError, PolicyError
from pipeline.policy import Policy, load_policy
from pipeline.router import Router
from pipeline.topics import TopicNames


def policy_check(path: str | Path) -> dict:
    """Validate a policy file.

    Returns ``{"ok", "path", "version", "errors": [{line, key, message}], "families":
    {family: {rule_category: n, "rules": n}}, "common_rules", "cloudevents_rules",
    "secret_names", "name_hints": {category: n}, "generic_names", "default", "drift",
    "uncited": [rule names]}``; never raises for a bad policy (``ok`` is false).
    """
    path = str(path)
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        return {"ok": False, "path": path, "version": None,
                "errors": [{"line": line, "key": key, "message": msg} for line, key, msg in exc.problems]}
    families = {}
    for name, fam in policy.families.items():
        counts = Counter(r.category for r in fam.rules)
        families[name] = {"rules": len(fam.rules), **{c: counts.get(c, 0) for c in ("content", "usage", "account")},
                          "secret": sum(1 for r in fam.rules if r.secret)}
    rules = [r for f in policy.families.values() for r in f.rules] + policy.common_rules + policy.cloudevents_rules
    hints = Counter()
    for h in policy.name_hints:
        hints[h.category] += len(h.names)
    return {
        "ok": True, "path": path, "version": policy.version, "errors": [],
        "families": families,
        "common_rules": len(policy.common_rules),
        "cloudevents_rules": len(policy.cloudevents_rules),
        "secret_names": len(policy.secrets.names),
        "name_hints": dict(sorted(hints.items())),
        "generic_names": len(policy.name_context.generic),
        "default": policy.default.category,
        "drift": {"enabled": policy.drift.enabled, "window": policy.drift.window,
                  "threshold": policy.drift.threshold},
        "uncited": sorted(r.name for r in rules if not r.cites.strip()),
    }


def format_policy_check(result: dict) -> str:
    """The ``policy check`` report."""
    if not result["ok"]:
        lines = [f"{result['path']}: INVALID"]
        for e in result["errors"]:
            lines.append(f"  {result['path']}:{e['line'] if e['line'] is not None else '?'}: {e['key']}: {e['message']}")
        return "\n".join(lines)
    lines = [f"{result['path']}: OK (version {result['version']})",
             f"{'family':10} {'rules':>5} {'content':>7} {'usage':>5} {'account':>7} {'secret':>6}"]
    for name, c in result["families"].items():
        lines.append(f"{name:10} {c['rules']:5d} {c['content']:7d} {c['usage']:5d} {c['account']:7d} {c['secret']:6d}")
    lines.append(f"common rules: {result['common_rules']}, CloudEvents rules: {result['cloudevents_rules']}, "
                 f"secret names: {result['secret_names']}")
    lines.append("name hints: " + ", ".join(f"{k} {v}" for k, v in result["name_hints"].items())
                 + f"; generic names: {result['generic_names']}; default: {result['default']}")
    d = result["drift"]
    lines.append(f"drift: {'on' if d['enabled'] else 'off'}, window {d['window']}, threshold {d['threshold']:.0%}")
    if result["uncited"]:
        lines.append("rules without a citation: " + ", ".join(result["uncited"]))
    return "\n".join(lines)


def _sample_items(sample_path: str | Path | None, n_generated: int) -> list[ClassifyInput]:
    items: list[ClassifyInput] = []
    if sample_path is None:
        from pipeline.samples import generate

        for ev in generate(n_generated, seed=0, bad=0):
            try:
                items.append(ClassifyInput(decode_object(ev.value), ev.family, ev.value))
            except DecodeError:
                continue
        return items
    with open(sample_path, "rb") as fh:
        for raw in fh:
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            value, hint = adapt_line(raw, "auto")
            try:
                obj = decode_object(value)
            except DecodeError:
                continue
            if isinstance(obj.get("record"), dict) and ("expected" in obj or "family" in obj):
                items.append(ClassifyInput(obj["record"], obj.get("family") or "auto", value))
            else:
                items.append(ClassifyInput(obj, hint or "auto", value))
    return items


def _field_routes(router: Router, env: dict) -> dict[str, list[str]]:
    out: dict[str, set[str]] = {p: set() for p in env["fields"]}
    for msg in router.route(env, input_key=b"policy-diff"):
        if msg.value is None:
            continue
        try:
            fields = json.loads(msg.value).get("fields") or {}
        except (ValueError, AttributeError):
            continue
        for ptr in fields:
            if ptr in out:
                out[ptr].add(msg.topic)
    return {p: sorted(t) for p, t in out.items()}


def policy_diff(old_path: str | Path, new_path: str | Path, sample_path: str | Path | None = None,
                *, n_generated: int = 300) -> list[dict]:
    """Which fields of sample events change category or route between two policies.

    Samples: ``sample_path`` (JSON Lines records, labelled shape lines or Asterisk CSV),
    else ``n_generated`` generated events. One dict per changed field: ``{"event": index,
    "event_id", "event_type", "pointer", "old": {category, source, rule, routes}, "new":
    {...}}``, in input order. Raises :class:`PolicyError` for an invalid policy.
    """
    old_p, new_p = load_policy(old_path), load_policy(new_path)
    items = _sample_items(sample_path, n_generated)
    return diff_policies(old_p, new_p, items)


def diff_policies(old: Policy, new: Policy, items: list[ClassifyInput]) -> list[dict]:
    """:func:`policy_diff` on loaded policies and inputs."""
    topics = TopicNames()
    sides = []
    for policy in (old, new):
        clf, router = Classifier(policy, None), Router(policy, topics)
        envs = clf.classify_batch(items)
        sides.append([(env, _field_routes(router, env)) for env in envs])
    changes: list[dict] = []
    for i, ((env_a, routes_a), (env_b, routes_b)) in enumerate(zip(*sides)):
        for ptr in env_a["fields"]:
            a, b = env_a["fields"][ptr], env_b["fields"].get(ptr)
            if b is None:
                continue
            if a["category"] != b["category"] or routes_a[ptr] != routes_b[ptr]:
                changes.append({
                    "event": i, "event_id": env_b["event_id"], "event_type": env_b["event_type"], "pointer": ptr,
                    "old": {"category": a["category"], "source": a["source"], "rule": a["rule"], "routes": routes_a[ptr]},
                    "new": {"category": b["category"], "source": b["source"], "rule": b["rule"], "routes": routes_b[ptr]},
                })
    return changes


def format_policy_diff(changes: list[dict], *, limit: int = 200) -> str:
    """The ``policy diff`` report: a summary by (old -> new) category and by rule, then one
    line per changed field (pointers masked: keys can be phone numbers)."""
    from pipeline.pointers import mask_pointer

    if not changes:
        return "no field changes category or route"
    events = len({c["event"] for c in changes})
    by_cat = Counter((c["old"]["category"], c["new"]["category"]) for c in changes)
    lines = [f"{len(changes)} field(s) in {events} event(s) change category or route"]
    for (a, b), n in sorted(by_cat.items()):
        lines.append(f"  {a} -> {b}: {n}")
    for c in changes[:limit]:
        o, n = c["old"], c["new"]
        route_note = ""
        if o["routes"] != n["routes"]:
            added = sorted(set(n["routes"]) - set(o["routes"]))
            removed = sorted(set(o["routes"]) - set(n["routes"]))
            route_note = " routes" + "".join(f" +{t}" for t in added) + "".join(f" -{t}" for t in removed)
        lines.append(f"event {c['event']} ({c['event_type']}) {mask_pointer(c['pointer'])}: "
                     f"{o['category']} ({o['source']}:{o['rule']}) -> {n['category']} ({n['source']}:{n['rule']})"
                     f"{route_note}")
    if len(changes) > limit:
        lines.append(f"... {len(changes) - limit} more")
    return "\n".join(lines)
