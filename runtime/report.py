"""The run report: ``report.html`` in the run directory, one self-contained file.

Written at the end of ``run`` and of each scenario: equity/PnL over time,
exposure (signed position) per symbol, risk rejections by reason over time,
mailbox depth over time, and the end-of-run figures. The charts are inline
SVG drawn here: a few polylines need no plotting library, the file opens in
any browser, attaches to a ticket, and the report costs no heavy dependency
(matplotlib is not installed in CI).

Time series come from a :class:`Sampler` the caller drives: ``run`` samples
from its progress loop (every 0.5 s of wall time), ``scenario`` at each
timeline step. Sampling reads published figures (``cell.info``) and mailbox
depths only, so it stays out of the actors' hot paths.

Every piece of text in the report passes :func:`runtime.redact.redact_text`
and is HTML-escaped, so a secret that slipped into a figure never reaches it.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from runtime.introspection import info_of
from runtime.metrics import number, system_of
from runtime.redact import redact_text
from runtime.run_files import write_text_atomic
from runtime.summary import summary_rows

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")
MAX_LINES = 8
W, H, ML, MR, MT, MB = 760, 240, 64, 170, 16, 32


class Sampler:
    """Time series of a runtime's figures, bounded in memory.

    Past ``max_samples`` every other sample is dropped and the interval
    doubles, so a long run keeps an even, coarser picture instead of growing.
    """

    def __init__(self, min_interval_s: float = 0.5, max_samples: int = 4000) -> None:
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
            "depth": {cell.name: cell.mailbox.depth for cell in cells},
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


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = (lo // step) * step
    ticks, v = [], first
    while v <= hi + step * 1e-9:
        if v >= lo - step * 1e-9:
            ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt(v: float) -> str:
    if abs(v) >= 1e6 or (abs(v) < 1e-3 and v != 0):
        return f"{v:.2e}"
    return f"{v:,.6g}"


def line_chart(series: Mapping[str, list[tuple[float, float]]], *, y_label: str,
               step: bool = False) -> str:
    """An inline SVG line chart; ``step`` draws counters as steps."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return '<p class="empty">no samples</p>'
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    x0, x1 = min(xs), max(xs)
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

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" role="img">',
           f'<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>']
    for ty in _nice_ticks(y0, y1):
        y = py(ty)
        out.append(f'<line x1="{ML}" x2="{ML + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{ML - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
                   f'{_e(_fmt(ty))}</text>')
    for tx in _nice_ticks(x0, x1):
        x = px(tx)
        out.append(f'<text x="{x:.1f}" y="{H - 12}" text-anchor="middle" font-size="11">'
                   f'{_e(_fmt(tx))}s</text>')
    if y0 < 0 < y1:
        out.append(f'<line x1="{ML}" x2="{ML + pw}" y1="{py(0):.1f}" y2="{py(0):.1f}" '
                   'stroke="#999" stroke-dasharray="3,3"/>')
    out.append(f'<text x="14" y="{MT + ph / 2:.1f}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 14 {MT + ph / 2:.1f})">{_e(y_label)}</text>')
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        coords: list[str] = []
        prev_y = None
        for x, y in pts:
            if step and prev_y is not None:
                coords.append(f"{px(x):.1f},{py(prev_y):.1f}")
            coords.append(f"{px(x):.1f},{py(y):.1f}")
            prev_y = y
        if len(coords) == 1:
            cx, cy = coords[0].split(",")
            out.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{color}"/>')
        else:
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" '
                       f'points="{" ".join(coords)}"/>')
        ly = MT + 12 + i * 16
        out.append(f'<rect x="{W - MR + 10}" y="{ly - 9}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{W - MR + 26}" y="{ly}" font-size="11">{_e(str(name)[:28])}</text>')
    out.append("</svg>")
    return "".join(out)


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
max-width:980px}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px;border-bottom:1px solid #eee;
text-align:left}th{background:#f4f4f4}.bad{color:#b00}.ok{color:#070}.empty,.note{color:#777;
font-size:13px}"""


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e('' if c is None else c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report(summary: Mapping[str, Any], sampler: Sampler, *, title: str) -> str:
    s = sampler
    pnl = s.series("pnl")
    positions, pos_more = _top(s.series("positions"))
    rejects, rej_more = _top(s.series("rejected"))
    depth, depth_more = _top(s.series("depth"))
    peak = {k: int(max((y for _, y in pts), default=0)) for k, pts in s.series("depth").items()}
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="note">{len(s.samples)} samples'
        + (f", t = {s.samples[0]['t']:.1f}s .. {s.samples[-1]['t']:.1f}s" if s.samples else "")
        + "</p>",
        '<h2 id="summary">Summary</h2>',
        _table(["what", "value"], [[what, value] for what, value, _ in summary_rows(summary)]),
        '<h2 id="equity">Equity / PnL</h2>',
        line_chart({k: pnl[k] for k in ("total", "realized", "unrealized", "daily") if k in pnl},
                   y_label="PnL (quote currency)"),
        '<h2 id="exposure">Exposure per symbol</h2>',
        '<p class="note">signed position (quantity) per symbol, as the coordinator holds it</p>',
        line_chart(positions, y_label="position", step=True) + _more(pos_more, "symbols"),
        '<h2 id="rejections">Risk rejections by reason</h2>',
        '<p class="note">cumulative count per reason code</p>',
        line_chart(rejects, y_label="rejections", step=True) + _more(rej_more, "reasons")
        if rejects else '<p class="empty">no rejections</p>',
        '<h2 id="mailboxes">Mailbox depth</h2>',
        '<p class="note">messages waiting, sampled; the actors with the deepest mailboxes '
        '(an actor at 0 throughout is not drawn)</p>',
        line_chart(depth, y_label="messages waiting") + _more(depth_more, "actors")
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
    write_text_atomic(path, render_report(summary, sampler, title=title))
    return path
