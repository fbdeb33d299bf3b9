"""The worker's live dashboard: ``/dashboard`` (one self-contained HTML page, no external
scripts, styles or fonts) polling ``/dashboard/data`` (JSON built from the worker's
``PipelineMetrics`` registry, the same numbers ``/metrics`` exports).

The page shows this worker only (each worker serves its own counters); Grafana
(``deploy/grafana``) aggregates across workers. Rates are computed here from snapshots of the
counters taken at each data request and every :data:`SAMPLE_EVERY_S` seconds, over the last
:data:`RATE_WINDOW_S` seconds, so a freshly opened page shows rates at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from pipeline.metrics import PipelineMetrics

__all__ = ["DASHBOARD_HTML", "DashboardData", "histogram_quantile", "register_dashboard"]

#: Rates are averaged over this window (seconds).
RATE_WINDOW_S = 60.0
#: The worker samples the counters this often (seconds) so rates exist before the first poll.
SAMPLE_EVERY_S = 5.0
#: Points of the records/s history (one per sample: 15 minutes).
SERIES_POINTS = 180
#: Top entity types shown.
TOP_ENTITIES = 10

Key = tuple[str, tuple[tuple[str, str], ...]]


def _flat(metrics: PipelineMetrics) -> dict[Key, float]:
    """Every sample of the registry: ``(sample name, sorted labels) -> value``."""
    out: dict[Key, float] = {}
    for fam in metrics.registry.collect():
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def _group(flat: Mapping[Key, float], name: str, by: Iterable[str]) -> dict[tuple[str, ...], float]:
    by = tuple(by)
    out: dict[tuple[str, ...], float] = {}
    for (n, labels), v in flat.items():
        if n != name:
            continue
        d = dict(labels)
        k = tuple(d.get(b, "") for b in by)
        out[k] = out.get(k, 0.0) + v
    return out


def _buckets(flat: Mapping[Key, float], name: str) -> list[tuple[float, float]]:
    """Cumulative ``(upper bound, count)`` of histogram ``name``, sorted by bound."""
    out = []
    for (n, labels), v in flat.items():
        if n == name + "_bucket":
            le = dict(labels).get("le", "+Inf")
            out.append((math.inf if le in ("+Inf", "Inf") else float(le), v))
    return sorted(out)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile`` on cumulative buckets (linear within a bucket;
    the highest finite bound when the quantile falls in ``+Inf``); ``None`` when empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def _round(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


class DashboardData:
    """Snapshots of the metrics and the JSON the page polls."""

    def __init__(self, metrics: PipelineMetrics, *, window_s: float = RATE_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.window_s = window_s
        self.clock = clock
        self.started = clock()
        self._history: deque[tuple[float, dict[Key, float]]] = deque(maxlen=256)
        #: ``(seconds since start, records/s, events/s)`` between samples, for the sparkline
        self._series: deque[tuple[float, float, float]] = deque(maxlen=SERIES_POINTS)
        flat = _flat(metrics)
        self._last: tuple[float, float, float] | None = (
            self.started, sum(v for (n, _), v in flat.items() if n == "privacy_batch_size_sum"),
            sum(v for (n, _), v in flat.items() if n == "privacy_events_total"))
        self._lock = threading.Lock()

    def sample(self) -> tuple[float, dict[Key, float]]:
        now, flat = self.clock(), _flat(self.metrics)
        records = sum(v for (n, _), v in flat.items() if n == "privacy_batch_size_sum")
        events = sum(v for (n, _), v in flat.items() if n == "privacy_events_total")
        with self._lock:
            self._history.append((now, flat))
            while len(self._history) > 2 and now - self._history[1][0] >= self.window_s:
                self._history.popleft()
            if self._last is None:
                self._last = (now, records, events)
            elif now - self._last[0] >= SAMPLE_EVERY_S * 0.8:
                t0, r0, e0 = self._last
                dt = now - t0
                self._series.append((round(now - self.started, 1), round((records - r0) / dt, 2),
                                     round((events - e0) / dt, 2)))
                self._last = (now, records, events)
        return now, flat

    def _baseline(self, now: float) -> tuple[float, dict[Key, float]] | None:
        """The oldest snapshot within the window (at least 0.5 s old)."""
        with self._lock:
            for t, flat in self._history:
                if now - t <= self.window_s + SAMPLE_EVERY_S and now - t >= 0.5:
                    return t, flat
        return None

    def build(self, *, ready: bool | None = None) -> dict[str, Any]:
        now, flat = self.sample()
        base = self._baseline(now)
        dt = (now - base[0]) if base else 0.0
        old = base[1] if base else {}

        def rated(name: str, by: tuple[str, ...]) -> list[dict[str, Any]]:
            cur, prev = _group(flat, name, by), _group(old, name, by)
            rows = []
            for k, v in cur.items():
                row = dict(zip(by, k))
                row["total"] = v
                row["per_s"] = _round((v - prev.get(k, 0.0)) / dt, 2) if dt > 0 else 0.0
                rows.append(row)
            return sorted(rows, key=lambda r: (-r["total"], *(r[b] for b in by)))

        def total(name: str) -> float:
            return sum(v for (n, _), v in flat.items() if n == name)

        def rate(name: str) -> float:
            if dt <= 0:
                return 0.0
            return _round((total(name) - sum(v for (n, _), v in old.items() if n == name)) / dt, 2)

        fields = rated("privacy_fields_total", ("category", "source"))
        by_cat: dict[str, dict[str, Any]] = {}
        for r in fields:
            c = by_cat.setdefault(r["category"], {"category": r["category"], "total": 0.0, "per_s": 0.0,
                                                  "by_source": {}})
            c["total"] += r["total"]
            c["per_s"] = _round(c["per_s"] + r["per_s"], 2)
            c["by_source"][r["source"]] = c["by_source"].get(r["source"], 0.0) + r["total"]

        cls_buckets = _buckets(flat, "privacy_classify_seconds")
        cls_count, cls_sum = total("privacy_classify_seconds_count"), total("privacy_classify_seconds_sum")
        old_count = sum(v for (n, _), v in old.items() if n == "privacy_classify_seconds_count")
        old_sum = sum(v for (n, _), v in old.items() if n == "privacy_classify_seconds_sum")
        bs_count, bs_sum = total("privacy_batch_size_count"), total("privacy_batch_size_sum")
        lag = sorted(({"topic": dict(lb)["topic"], "partition": int(dict(lb)["partition"]), "lag": v}
                      for (n, lb), v in flat.items() if n == "privacy_consumer_lag"),
                     key=lambda r: (r["topic"], r["partition"]))
        events = rated("privacy_events_total", ("route",))
        return {
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "uptime_s": round(now - self.started, 1),
            "window_s": round(dt, 1),
            "ready": ready,
            "totals": {
                "events": total("privacy_events_total"),
                "records": bs_sum,
                "fields": total("privacy_fields_total"),
                "entities": total("privacy_entities_total"),
                "deadletters": total("privacy_deadletter_total"),
                "unknown_fields": total("privacy_unknown_fields_total"),
                "drift": total("privacy_drift_total"),
                "lag": sum(r["lag"] for r in lag),
                "batches": cls_count,
            },
            "rates": {
                "records_per_s": rate("privacy_batch_size_sum"),
                "events_per_s": rate("privacy_events_total"),
                "fields_per_s": rate("privacy_fields_total"),
                "deadletters_per_s": rate("privacy_deadletter_total"),
            },
            "series": [{"t": t, "records_per_s": r, "events_per_s": e} for t, r, e in self._series],
            "events_by_route": events,
            "events_by_type": rated("privacy_events_total", ("event_type",)),
            "fields_by_category": sorted(by_cat.values(), key=lambda r: -r["total"]),
            "fields_by_source": rated("privacy_fields_total", ("source",)),
            "entities_top": rated("privacy_entities_total", ("entity_type",))[:TOP_ENTITIES],
            "deadletters_by_reason": rated("privacy_deadletter_total", ("reason",)),
            "unknown_fields_by_type": rated("privacy_unknown_fields_total", ("event_type",)),
            "drift_by_rule": rated("privacy_drift_total", ("event_type", "rule")),
            "lag": lag,
            "classify_seconds": {
                "count": cls_count,
                "mean": _round(cls_sum / cls_count, 4) if cls_count else None,
                "window_mean": _round((cls_sum - old_sum) / (cls_count - old_count), 4)
                if cls_count > old_count else None,
                "p50": _round(histogram_quantile(0.5, cls_buckets), 4),
                "p95": _round(histogram_quantile(0.95, cls_buckets), 4),
                "p99": _round(histogram_quantile(0.99, cls_buckets), 4),
                "buckets": [{"le": "+Inf" if math.isinf(b) else b, "count": c} for b, c in cls_buckets],
            },
            "batch_size": {"count": bs_count, "mean": _round(bs_sum / bs_count, 1) if bs_count else None},
        }


def register_dashboard(app: Any, metrics: PipelineMetrics, *,
                       refresh_lag: Callable[[], Awaitable[None]] | None = None,
                       ready: Callable[[], bool] | None = None) -> DashboardData:
    """Add ``/dashboard``, ``/dashboard/data`` and a sampling timer to a Faust app."""
    data = DashboardData(metrics)
    app.dashboard_data = data

    @app.page("/dashboard")
    async def dashboard_page(web, request):
        return web.html(DASHBOARD_HTML, headers={"Cache-Control": "no-store"})

    @app.page("/dashboard/data")
    async def dashboard_data(web, request):
        if refresh_lag is not None:
            await refresh_lag()
        is_ready = None
        if ready is not None:
            try:
                is_ready = bool(ready())
            except Exception:
                is_ready = False
        return web.json(data.build(ready=is_ready), headers={"Cache-Control": "no-store"})

    @app.timer(SAMPLE_EVERY_S, name="privacy-dashboard-sample")
    async def dashboard_sample():
        data.sample()

    return data


DASHBOARD_HTML = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>privacy-pipeline worker</title>
<style>
  :root { --bg:#f6f7f9; --card:#fff; --ink:#1d2330; --muted:#667085; --line:#e4e7ec;
          --bar:#3b82f6; --warn:#d97706; --bad:#dc2626; --ok:#16a34a; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; background:var(--bg); color:var(--ink); }
  header { display:flex; align-items:center; gap:16px; padding:12px 20px; background:#111827; color:#fff; }
  header h1 { font-size:18px; margin:0; font-weight:600; }
  header .meta { color:#cbd5e1; font-size:12px; margin-left:auto; }
  .pill { padding:2px 10px; border-radius:999px; font-size:12px; font-weight:600; background:#374151; }
  .pill.ok { background:var(--ok); } .pill.bad { background:var(--bad); }
  main { padding:16px 20px; display:grid; gap:16px; grid-template-columns:repeat(auto-fill,minmax(360px,1fr)); }
  .tiles { grid-column:1/-1; display:grid; gap:12px; grid-template-columns:repeat(auto-fill,minmax(150px,1fr)); }
  .tile, section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
  .tile .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
  .tile .value { font-size:24px; font-weight:650; font-variant-numeric:tabular-nums; }
  .tile .sub { color:var(--muted); font-size:12px; font-variant-numeric:tabular-nums; }
  section h2 { font-size:14px; margin:0 0 8px; }
  table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
  th, td { text-align:left; padding:3px 6px; border-bottom:1px solid var(--line); font-size:13px; }
  th { color:var(--muted); font-weight:500; white-space:nowrap; }
  h2 .sub { color:var(--muted); font-weight:400; font-size:12px; }
  td.n, th.n { text-align:right; }
  td.barcell { width:35%; }
  .bar { height:8px; background:var(--bar); border-radius:4px; min-width:1px; }
  .bar.warn { background:var(--warn); } .bar.bad { background:var(--bad); }
  .empty { color:var(--muted); font-style:italic; }
  svg { width:100%; height:60px; display:block; }
  .wide { grid-column:1/-1; }
  #error { color:var(--bad); }
</style>
</head>
<body>
<header>
  <h1>privacy-pipeline worker</h1>
  <span id="ready" class="pill" data-testid="ready">…</span>
  <span id="error"></span>
  <span class="meta">updated <span id="updated" data-testid="updated">never</span> ·
    up <span id="uptime">0</span> s · rates over <span id="window">0</span> s · this worker only</span>
</header>
<main>
  <div class="tiles">
    <div class="tile"><div class="label">Records</div><div class="value" data-testid="records-total" id="t-records">0</div>
      <div class="sub"><span id="r-records">0</span>/s</div></div>
    <div class="tile"><div class="label">Events (per route)</div><div class="value" data-testid="events-total" id="t-events">0</div>
      <div class="sub"><span id="r-events" data-testid="events-per-s">0</span>/s</div></div>
    <div class="tile"><div class="label">Fields tagged</div><div class="value" data-testid="fields-total" id="t-fields">0</div>
      <div class="sub"><span id="r-fields">0</span>/s</div></div>
    <div class="tile"><div class="label">Entities</div><div class="value" data-testid="entities-total" id="t-entities">0</div></div>
    <div class="tile"><div class="label">Dead letters</div><div class="value" data-testid="deadletters-total" id="t-deadletters">0</div>
      <div class="sub"><span id="r-deadletters">0</span>/s</div></div>
    <div class="tile"><div class="label">Unknown fields</div><div class="value" data-testid="unknown-total" id="t-unknown">0</div></div>
    <div class="tile"><div class="label">Drift</div><div class="value" data-testid="drift-total" id="t-drift">0</div></div>
    <div class="tile"><div class="label">Consumer lag</div><div class="value" data-testid="lag-total" id="t-lag">0</div></div>
    <div class="tile"><div class="label">Classify / batch</div><div class="value" data-testid="classify-mean" id="t-classify">–</div>
      <div class="sub">p95 <span id="t-p95" data-testid="classify-p95">–</span> · <span id="t-batches" data-testid="batches-total">0</span> batches</div></div>
  </div>
  <section class="wide"><h2>Records per second, last 15 minutes
    <span class="sub">(peak <span id="peak" data-testid="records-peak">0</span>/s)</span></h2>
    <svg id="spark" viewBox="0 0 600 60" preserveAspectRatio="none"></svg></section>
  <section><h2>Events by route</h2><table id="routes" data-testid="routes"></table></section>
  <section><h2>Fields by category</h2><table id="categories" data-testid="categories"></table></section>
  <section><h2>Top entity types</h2><table id="entities" data-testid="entities"></table></section>
  <section><h2>Dead letters by reason</h2><table id="deadletters" data-testid="deadletters"></table></section>
  <section><h2>Unknown fields by event type</h2><table id="unknown" data-testid="unknown"></table></section>
  <section><h2>Drift by rule</h2><table id="drift" data-testid="drift"></table></section>
  <section><h2>Consumer lag by partition</h2><table id="lag" data-testid="lag"></table></section>
  <section><h2>Classify seconds per batch</h2><table id="latency" data-testid="latency"></table></section>
</main>
<script>
"use strict";
const POLL_MS = 2000;
// /dashboard -> /dashboard/data (relative to the page, so a path prefix in a proxy works)
const DATA_URL = location.pathname.replace(/\/?$/, "/data");
const fmt = (x) => x === null || x === undefined ? "–" : Math.round(x).toLocaleString("en-US");
const fmt2 = (x) => x === null || x === undefined ? "–" : (+x).toLocaleString("en-US", {maximumFractionDigits: 2});
const secs = (x) => x === null || x === undefined ? "–" : (x < 1 ? (x * 1000).toFixed(1) + " ms" : x.toFixed(2) + " s");
function setText(id, v) { const el = document.getElementById(id); if (el) el.textContent = v; }
function cell(tr, text, cls) { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; tr.appendChild(td); return td; }
function table(id, head, rows, values, opts) {
  opts = opts || {};
  const t = document.getElementById(id);
  t.replaceChildren();
  const hr = document.createElement("tr");
  head.forEach((h, i) => { const th = document.createElement("th"); th.textContent = h; if (i >= opts.numFrom) th.className = "n"; hr.appendChild(th); });
  const bh = document.createElement("th"); hr.appendChild(bh); t.appendChild(hr);
  if (!rows.length) { const tr = document.createElement("tr"); const td = cell(tr, opts.empty || "none yet", "empty"); td.colSpan = head.length + 1; t.appendChild(tr); return; }
  const max = Math.max(1, ...rows.map(opts.barOf));
  rows.forEach((r) => {
    const tr = document.createElement("tr");
    values(r).forEach((v, i) => cell(tr, v, i >= opts.numFrom ? "n" : ""));
    const bc = cell(tr, "", "barcell"); const bar = document.createElement("div");
    bar.className = "bar " + (opts.barClass || ""); bar.style.width = (100 * opts.barOf(r) / max).toFixed(1) + "%"; bc.appendChild(bar);
    tr.dataset.key = values(r)[0]; t.appendChild(tr);
  });
}
function spark(series) {
  const vals = series.map((p) => p.records_per_s);
  const peak = Math.max(0, ...vals), max = Math.max(1, peak), n = Math.max(2, vals.length);
  setText("peak", fmt2(peak));
  const pts = vals.map((v, i) => `${(i * 600 / (n - 1)).toFixed(1)},${(58 - 56 * v / max).toFixed(1)}`).join(" ");
  document.getElementById("spark").innerHTML =
    `<polyline fill="none" stroke="#3b82f6" stroke-width="2" vector-effect="non-scaling-stroke" points="${pts}"/>`;
}
function render(d) {
  const T = d.totals, R = d.rates;
  const ready = document.getElementById("ready");
  ready.textContent = d.ready === null ? "unknown" : (d.ready ? "ready" : "not ready");
  ready.className = "pill " + (d.ready ? "ok" : "bad");
  setText("updated", d.generated_at); setText("uptime", fmt(d.uptime_s)); setText("window", fmt(d.window_s));
  setText("t-records", fmt(T.records)); setText("r-records", fmt2(R.records_per_s));
  setText("t-events", fmt(T.events)); setText("r-events", fmt2(R.events_per_s));
  setText("t-fields", fmt(T.fields)); setText("r-fields", fmt2(R.fields_per_s));
  setText("t-entities", fmt(T.entities));
  setText("t-deadletters", fmt(T.deadletters)); setText("r-deadletters", fmt2(R.deadletters_per_s));
  setText("t-unknown", fmt(T.unknown_fields)); setText("t-drift", fmt(T.drift)); setText("t-lag", fmt(T.lag));
  const C = d.classify_seconds;
  setText("t-classify", secs(C.mean)); setText("t-p95", secs(C.p95)); setText("t-batches", fmt(C.count));
  spark(d.series);
  table("routes", ["route", "total", "per s"], d.events_by_route, (r) => [r.route, fmt(r.total), fmt2(r.per_s)], {numFrom: 1, barOf: (r) => r.total});
  const sources = [...new Set(d.fields_by_category.flatMap((r) => Object.keys(r.by_source)))].sort();
  table("categories", ["category", "total", "per s", ...sources], d.fields_by_category,
        (r) => [r.category, fmt(r.total), fmt2(r.per_s), ...sources.map((s) => fmt(r.by_source[s] || 0))], {numFrom: 1, barOf: (r) => r.total});
  table("entities", ["entity type", "total", "per s"], d.entities_top, (r) => [r.entity_type, fmt(r.total), fmt2(r.per_s)], {numFrom: 1, barOf: (r) => r.total});
  table("deadletters", ["reason", "total", "per s"], d.deadletters_by_reason, (r) => [r.reason, fmt(r.total), fmt2(r.per_s)], {numFrom: 1, barOf: (r) => r.total, barClass: "bad", empty: "no dead letters"});
  table("unknown", ["event type", "total", "per s"], d.unknown_fields_by_type, (r) => [r.event_type, fmt(r.total), fmt2(r.per_s)], {numFrom: 1, barOf: (r) => r.total, barClass: "warn", empty: "no unknown fields"});
  table("drift", ["rule", "event type", "total"], d.drift_by_rule, (r) => [r.rule, r.event_type, fmt(r.total)], {numFrom: 2, barOf: (r) => r.total, barClass: "warn", empty: "no drift"});
  table("lag", ["topic", "partition", "lag"], d.lag, (r) => [r.topic, String(r.partition), fmt(r.lag)], {numFrom: 1, barOf: (r) => r.lag, empty: "no partitions fetched yet"});
  const B = d.batch_size;
  const lat = [{k: "batches", v: fmt(C.count)}, {k: "mean", v: secs(C.mean)}, {k: "mean (window)", v: secs(C.window_mean)},
               {k: "p50", v: secs(C.p50)}, {k: "p95", v: secs(C.p95)}, {k: "p99", v: secs(C.p99)},
               {k: "records per batch (mean)", v: fmt2(B.mean)}];
  table("latency", ["", "value"], lat, (r) => [r.k, r.v], {numFrom: 1, barOf: () => 0});
}
async function poll() {
  try {
    const resp = await fetch(DATA_URL, {cache: "no-store"});
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    render(await resp.json());
    setText("error", "");
  } catch (e) { setText("error", "cannot reach the worker: " + e.message); }
  finally { setTimeout(poll, POLL_MS); }
}
poll();
</script>
</body>
</html>
"""
