"""The run report: ``report.html`` in the run directory, one self-contained file.

Written at the end of ``run`` and of each scenario: equity/PnL over time,
exposure (signed position) per symbol, risk rejections by reason over time,
mailbox depth over time, and the end-of-run figures. The charts are inline
SVG drawn here: a few polylines need no plotting library, the file opens in
any browser, attaches to a ticket, and the report costs no heavy dependency
(matplotlib is not installed in CI).

What happened at a known instant is drawn from the run directory's own
records, at that instant: exposure per symbol from the exchange's fills
(``events.jsonl``), rejections from the audit trail, kill-switch periods
(shaded on every chart) from its engaged/released records. Figures that
are only known when sampled (PnL, mailbox depth) come from a
:class:`Sampler` the caller drives: ``run`` samples from its progress loop
(every 0.5 s of wall time), ``scenario`` at each timeline step. Sampling
reads published figures (``cell.info``) and mailbox depths only, so it stays
out of the actors' hot paths. Every series is drawn as steps (a value holds
until the next one is known; a diagonal would invent values in between),
series that coincide share one line and one legend entry, and every point
carries its value as a hover title (plain SVG, no script, fully offline).
Time is seconds since the run (or scenario) started.

Every piece of text in the report passes :func:`runtime.redact.redact_text`
and is HTML-escaped, so a secret that slipped into a figure never reaches it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from runtime.introspection import info_of
from app.metrics import number, system_of
from runtime.redact import redact_text
from messages.jsonl import iter_jsonl, write_text_atomic
from app.summary import summary_rows

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")
MAX_LINES = 8
W, H, ML, MR, MT, MB = 1100, 280, 70, 230, 16, 32
#: hover points per series at most (a long run's samples are thinned for them)
MAX_HOVER_POINTS = 300
DASHES = ("", "6,3", "2,2", "8,3,2,3")


class Sampler:
    """Time series of a runtime's figures, bounded in memory.

    Past ``max_samples`` every other sample is dropped and the interval
    doubles, so a long run keeps an even, coarser picture instead of growing.
    The bound is small (a chart is 760 px wide: 120 to 240 points) and a
    sample keeps only the mailboxes that had messages waiting, so the sampler
    reaches its ceiling within two minutes rather than climbing through the
    first half hour of a run (4,000 samples of every mailbox were ~0.2 MB a
    minute of a default run).
    """

    def __init__(self, min_interval_s: float = 0.5, max_samples: int = 240) -> None:
        self.min_interval_s = min_interval_s
        self.max_samples = max_samples
        self.samples: list[dict[str, Any]] = []
        self.actors: list[dict[str, Any]] = []
        self._last_t: float | None = None

    def sample(self, target: Any, t: float, *, force: bool = False) -> bool:
        system = system_of(target)
        if system is None:
            return False
        if (not force and self._last_t is not None
                and t - self._last_t < self.min_interval_s):
            return False
        self._last_t = t
        c = info_of(system, "coordinator")
        pnl = c.get("pnl") or {}
        realized, unrealized = number(pnl.get("realized")), number(pnl.get("unrealized"))
        cells = system.directory.cells()
        self.samples.append({
            "t": float(t),
            "pnl": {"total": realized + unrealized, "realized": realized,
                    "unrealized": unrealized, "daily": number(c.get("daily_pnl"))},
            "positions": {s: number(q) for s, q in (c.get("positions") or {}).items()},
            "rejected": {str(r): int(n) for r, n in (c.get("rejected") or {}).items()},
            "depth": {cell.name: d for cell in cells if (d := cell.mailbox.depth)},
        })
        self.actors = [{"name": cell.name, "supervisor": cell.supervisor, "state": cell.state,
                        "high_water": cell.mailbox.high_water,
                        "processed": cell.mailbox.processed, "restarts": cell.restarts,
                        "last_failure": (cell.last_failure or {}).get("error")}
                       for cell in cells]
        if len(self.samples) > self.max_samples:
            self.samples = self.samples[::2]
            self.min_interval_s *= 2
        return True

    # -- series ---------------------------------------------------------------------

    def series(self, field: str) -> dict[str, list[tuple[float, float]]]:
        """``field`` (a dict per sample) as one series per key, missing keys as 0."""
        keys: list[str] = []
        for s in self.samples:
            for k in s[field]:
                if k not in keys:
                    keys.append(k)
        return {k: [(s["t"], float(s[field].get(k, 0))) for s in self.samples] for k in keys}


# -- SVG ---------------------------------------------------------------------------------


def _e(text: Any) -> str:
    return html.escape(redact_text(str(text)), quote=True)


#: plotted values are clipped to this magnitude: the chart still draws, and
#: differences of clipped values stay finite (a figure like 9E+999999 is inf as a float)
PLOT_LIMIT = 1e300
#: never more ticks than this on one axis, whatever the range
MAX_TICKS = 12


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values across [lo, hi]; just the two ends when the range is
    too narrow for float steps (1e20 .. 1e20 + 1) or not finite."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + max(abs(lo) * 1e-9, 1.0)
    raw = (hi - lo) / n
    if not math.isfinite(raw) or raw <= 0 or raw < max(abs(lo), abs(hi)) * 1e-12:
        return [lo] if hi == lo else [lo, hi]
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    k0, k1 = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    if k1 - k0 + 1 > max(MAX_TICKS, 2 * n):
        return [lo, hi]
    return [round(k * step, 10) for k in range(k0, k1 + 1)]


def _plottable(series: Mapping[str, list[tuple[float, float]]]) -> tuple[
        dict[str, list[tuple[float, float]]], int]:
    """The points that can be drawn (NaN dropped, magnitudes clipped to
    PLOT_LIMIT) and how many were dropped or clipped."""
    out: dict[str, list[tuple[float, float]]] = {}
    odd = 0
    for name, pts in series.items():
        kept = []
        for x, y in pts:
            if math.isnan(x) or math.isnan(y):
                odd += 1
                continue
            cx, cy = (max(-PLOT_LIMIT, min(PLOT_LIMIT, v)) for v in (x, y))
            odd += (cx, cy) != (x, y)
            kept.append((cx, cy))
        out[name] = kept
    return out, odd


def _fmt(v: float) -> str:
    if abs(v) >= 1e6 or (abs(v) < 1e-3 and v != 0):
        return f"{v:.2e}"
    return f"{v:,.6g}"


def _merge_identical(series: Mapping[str, list[tuple[float, float]]],
                     ) -> dict[str, list[tuple[float, float]]]:
    """Series with exactly the same points become one, named ``a = b``: otherwise
    the later one hides the earlier and a legend entry points at nothing."""
    out: dict[str, list[tuple[float, float]]] = {}
    names: dict[tuple[tuple[float, float], ...], str] = {}
    for name, pts in series.items():
        key = tuple(pts)
        if key in names:
            merged = f"{names[key]} = {name}"
            out[merged] = out.pop(names[key])
            names[key] = merged
        else:
            names[key] = str(name)
            out[str(name)] = pts
    return out


def _thin(pts: list[tuple[float, float]], n: int) -> list[tuple[float, float]]:
    if len(pts) <= n:
        return pts
    step = len(pts) / n
    return [pts[int(i * step)] for i in range(n)] + [pts[-1]]


def line_chart(series: Mapping[str, list[tuple[float, float]]], *, y_label: str,
               step: bool = True, shaded: list[tuple[float, float | None, str]] | None = None,
               x_end: float | None = None) -> str:
    """An inline SVG chart of ``series`` (name -> [(t, value)]), steps by default.

    ``shaded``: (from, to or None for "until the end", why) periods drawn behind
    the lines (kill switch engaged). ``x_end`` extends the time axis (and every
    step line's last value) to the end of the run."""
    series, odd = _plottable(series)
    series = _merge_identical({k: v for k, v in series.items() if v})
    if not series:
        return '<p class="empty">no samples</p>'
    # absurd figures (NaN, infinite, beyond PLOT_LIMIT) never stop the report
    note = (f'<p class="empty">{odd} value(s) not finite or beyond {PLOT_LIMIT:.0e}: '
            "left out or clipped</p>") if odd else ""
    shaded = shaded or []
    xs = [x for pts in series.values() for x, _ in pts] + [a for a, _, _ in shaded]
    if x_end is not None:
        xs.append(x_end)
    ys = [y for pts in series.values() for _, y in pts]
    x0, x1 = min(min(xs), 0.0), max(xs)
    y0, y1 = min(min(ys), 0.0), max(max(ys), 0.0)
    if x1 <= x0:
        x1 = x0 + 1.0
    if y1 <= y0:
        y1 = y0 + 1.0
    pad = (y1 - y0) * 0.05
    y0, y1 = (y0 - pad if y0 < 0 else y0), y1 + pad
    pw, ph = W - ML - MR, H - MT - MB

    def px(x: float) -> float:
        return ML + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return MT + ph - (y - y0) / (y1 - y0) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 {W} {H}" '
           f'preserveAspectRatio="xMinYMin meet" role="img">',
           f'<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>']
    for a, b, why in shaded:
        xa, xb = px(max(a, x0)), px(x1 if b is None else min(b, x1))
        until = "the end" if b is None else f"{_fmt(b)}s"
        out.append(f'<rect class="halt" x="{xa:.1f}" y="{MT}" width="{max(xb - xa, 1.5):.1f}" '
                   f'height="{ph}" fill="#d62728" fill-opacity="0.13"><title>kill switch engaged '
                   f'{_e(_fmt(a))}s .. {_e(until)}: {_e(why)}</title></rect>')
    for ty in _nice_ticks(y0, y1):
        y = py(ty)
        out.append(f'<line x1="{ML}" x2="{ML + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{ML - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
                   f'{_e(_fmt(ty))}</text>')
    for tx in _nice_ticks(x0, x1, n=10):
        x = px(tx)
        out.append(f'<text x="{x:.1f}" y="{H - 12}" text-anchor="middle" font-size="11">'
                   f'{_e(_fmt(tx))}s</text>')
    if y0 < 0 < y1:
        out.append(f'<line x1="{ML}" x2="{ML + pw}" y1="{py(0):.1f}" y2="{py(0):.1f}" '
                   'stroke="#999" stroke-dasharray="3,3"/>')
    out.append(f'<text x="14" y="{MT + ph / 2:.1f}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 14 {MT + ph / 2:.1f})">{_e(y_label)}</text>')
    legend_y = MT + 12
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        dash = DASHES[(i // len(PALETTE) + i) % len(DASHES)] if len(series) > 1 else ""
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        drawn = list(pts)
        if step and x_end is not None and drawn and drawn[-1][0] < x_end:
            drawn.append((x_end, drawn[-1][1]))
        coords: list[str] = []
        prev_y = None
        for x, y in drawn:
            if step and prev_y is not None:
                coords.append(f"{px(x):.1f},{py(prev_y):.1f}")
            coords.append(f"{px(x):.1f},{py(y):.1f}")
            prev_y = y
        if len(coords) > 1:
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8"{dash_attr} '
                       f'points="{" ".join(coords)}"/>')
        for x, y in _thin(pts, MAX_HOVER_POINTS):  # a hover title on every known value
            out.append(f'<circle class="pt" cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" '
                       f'stroke="{color}" fill="{color}" fill-opacity="{1 if len(pts) == 1 else 0}"'
                       f'><title>{_e(name)}: {_e(_fmt(y))} at {_e(_fmt(x))}s</title></circle>')
        out.append(f'<line x1="{W - MR + 8}" x2="{W - MR + 28}" y1="{legend_y - 4}" '
                   f'y2="{legend_y - 4}" stroke="{color}" stroke-width="3"{dash_attr}/>')
        label = str(name) if len(str(name)) <= 38 else str(name)[:37] + "…"
        out.append(f'<text x="{W - MR + 34}" y="{legend_y}" font-size="11">{_e(label)}'
                   + (f'<title>{_e(name)}</title>' if label != str(name) else "") + '</text>')
        legend_y += 16
    if shaded:
        out.append(f'<rect x="{W - MR + 8}" y="{legend_y - 10}" width="20" height="10" '
                   f'fill="#d62728" fill-opacity="0.13"/>')
        out.append(f'<text x="{W - MR + 34}" y="{legend_y}" font-size="11">kill switch '
                   f'engaged</text>')
    out.append("</svg>")
    return "".join(out) + note


def _top(series: dict[str, list[tuple[float, float]]], n: int = MAX_LINES,
         ) -> tuple[dict[str, list[tuple[float, float]]], int]:
    """The ``n`` series with the largest peaks (non-zero only), and how many were left out."""
    ranked = sorted(((max((abs(y) for _, y in pts), default=0.0), k) for k, pts in series.items()),
                    key=lambda p: (-p[0], p[1]))
    nonzero = [k for peak, k in ranked if peak > 0]
    keep = nonzero[:n]
    return {k: series[k] for k in keep}, len(nonzero) - len(keep)


# -- HTML --------------------------------------------------------------------------------

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222;
max-width:1180px}svg{max-width:1180px;display:block}circle.pt:hover{fill-opacity:1;r:5}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px;border-bottom:1px solid #eee;
text-align:left}th{background:#f4f4f4}.bad{color:#b00}.ok{color:#070}.empty,.note{color:#777;
font-size:13px}"""


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e('' if c is None else c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


@dataclass
class RunRecords:
    """What the run directory's own records say, on the report's time axis."""

    positions: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    rejections: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    #: (engaged at, released at or None, why)
    halts: list[tuple[float, float | None, str]] = field(default_factory=list)
    fills: int = 0
    end: float | None = None
    #: the audit trail was read (so no rejection in it means none happened)
    audited: bool = False


def _seconds(ts: Any, origin: datetime) -> float | None:
    try:
        return (datetime.fromisoformat(str(ts)) - origin).total_seconds()
    except (TypeError, ValueError):
        return None


def _cumulative(points: dict[str, list[tuple[float, float]]], key: str, t: float,
                delta: float) -> None:
    """Append ``key``'s running total after ``delta`` at ``t``; what happened before
    the axis starts (a resumed run's first part) becomes its value at 0."""
    pts = points.setdefault(key, [(0.0, 0.0)])
    value = pts[-1][1] + delta
    t = max(t, 0.0)
    if pts[-1][0] == t:
        pts[-1] = (t, value)
    else:
        pts.append((t, value))


def read_run_records(run_dir: Path, origin: datetime | None) -> RunRecords:
    """Fills from ``events.jsonl`` and decisions from ``audit.jsonl``, at their own times."""
    rec = RunRecords()
    if origin is None:
        return rec
    events, audit = Path(run_dir) / "events.jsonl", Path(run_dir) / "audit.jsonl"
    last = 0.0
    if events.exists():
        for e in iter_jsonl(events):
            if e.get("kind") != "order_filled":
                continue
            t = _seconds(e.get("t") or e.get("ts"), origin)
            if t is None:
                continue
            sign = 1.0 if str(e.get("side")).lower() == "buy" else -1.0
            _cumulative(rec.positions, str(e.get("symbol")), t, sign * number(e.get("qty")))
            rec.fills += 1
            last = max(last, t)
    if audit.exists():
        rec.audited = True
        open_at: tuple[float, str] | None = None
        for r in iter_jsonl(audit):
            t = _seconds(r.get("timestamp"), origin)
            if t is None:
                continue
            last = max(last, t)
            if r.get("kind") == "risk_decision" and r.get("approved") is False:
                _cumulative(rec.rejections, str(r.get("reason")), t, 1.0)
            elif r.get("kind") == "kill_switch" and r.get("reason") == "engaged":
                if open_at is None:
                    open_at = (max(t, 0.0), str((r.get("inputs") or {}).get("why") or ""))
            elif r.get("kind") == "kill_switch" and r.get("reason") == "released":
                if open_at is not None:
                    rec.halts.append((open_at[0], max(t, 0.0), open_at[1]))
                    open_at = None
        if open_at is not None:
            rec.halts.append((open_at[0], None, open_at[1]))
    rec.end = last
    return rec


def _origin(summary: Mapping[str, Any]) -> datetime | None:
    """Time zero of the sampler: this start of the run (a resumed run's resume)."""
    for key in ("resumed_at", "started_at"):
        try:
            return datetime.fromisoformat(str(summary.get(key)))
        except (TypeError, ValueError):
            continue
    return None


def render_report(summary: Mapping[str, Any], sampler: Sampler, *, title: str,
                  run_dir: Path | None = None) -> str:
    s = sampler
    records = read_run_records(run_dir, _origin(summary)) if run_dir is not None else RunRecords()
    end = max([records.end or 0.0] + ([s.samples[-1]["t"]] if s.samples else []))
    halts = records.halts
    pnl = s.series("pnl")
    from_events = bool(records.positions)
    positions, pos_more = _top(records.positions if from_events else s.series("positions"))
    from_audit = records.audited
    rejects, rej_more = _top(records.rejections if from_audit else s.series("rejected"))
    depth, depth_more = _top(s.series("depth"))
    peak = {k: int(max((y for _, y in pts), default=0)) for k, pts in s.series("depth").items()}
    chart = {"shaded": halts, "x_end": end}
    halt_note = (f'<p class="note">shaded: kill switch engaged ({len(halts)} period'
                 f'{"s" if len(halts) != 1 else ""}); hover a shaded period or a point for '
                 'its value</p>' if halts else
                 '<p class="note">hover a point for its value</p>')
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="note">{len(s.samples)} samples'
        + (f", t = {s.samples[0]['t']:.1f}s .. {s.samples[-1]['t']:.1f}s" if s.samples else "")
        + (f"; {records.fills} fills from events.jsonl" if from_events else "")
        + "; time is seconds since the start</p>",
        '<h2 id="summary">Summary</h2>',
        _table(["what", "value"], [[what, value] for what, value, _ in summary_rows(summary)]),
        '<h2 id="equity">Equity / PnL</h2>',
        '<p class="note">sampled (each value holds until the next sample)</p>' + halt_note,
        line_chart({k: pnl[k] for k in ("total", "realized", "unrealized", "daily") if k in pnl},
                   y_label="PnL (quote currency)", **chart),
        '<h2 id="exposure">Exposure per symbol</h2>',
        ('<p class="note">signed position per symbol from the exchange\'s fills '
         '(events.jsonl), at the time of each fill</p>' if from_events else
         '<p class="note">signed position (quantity) per symbol, as the coordinator held it '
         'at each sample</p>'),
        line_chart(positions, y_label="position", **chart) + _more(pos_more, "symbols"),
        '<h2 id="rejections">Risk rejections by reason</h2>',
        '<p class="note">cumulative count per reason code, at the time of each decision '
        '(audit.jsonl)</p>' if from_audit else
        '<p class="note">cumulative count per reason code, sampled</p>',
        line_chart(rejects, y_label="rejections", **chart) + _more(rej_more, "reasons")
        if rejects else '<p class="empty">no rejections</p>',
        '<h2 id="mailboxes">Mailbox depth</h2>',
        '<p class="note">messages waiting, sampled; the actors with the deepest mailboxes '
        '(an actor at 0 throughout is not drawn)</p>',
        line_chart(depth, y_label="messages waiting", **chart) + _more(depth_more, "actors")
        if depth else '<p class="empty">every mailbox stayed empty at the sampling points</p>',
        '<h2 id="actors">Actors at the end</h2>',
        _table(["actor", "supervisor", "state", "peak depth (sampled)", "high-water",
                "processed", "restarts", "last failure"],
               [[a["name"], a["supervisor"], a["state"], peak.get(a["name"], 0), a["high_water"],
                 a["processed"], a["restarts"], a["last_failure"]] for a in s.actors]),
        "</body></html>\n",
    ]
    return "\n".join(parts)


def _more(n: int, what: str) -> str:
    return f'<p class="note">{n} more {what} not drawn</p>' if n > 0 else ""


def write_report(run_dir: Path, summary: Mapping[str, Any], sampler: Sampler, *,
                 title: str = "Tradewarden run report") -> Path:
    path = Path(run_dir) / "report.html"
    write_text_atomic(path, render_report(summary, sampler, title=title, run_dir=Path(run_dir)))
    return path
