"""The report's charts: inline SVG step charts, drawn here with no plotting library.

A few polylines need no plotting library: the file opens in any browser,
attaches to a ticket, and the report costs no heavy dependency (matplotlib
is not installed in CI). Every series is drawn as steps (a value holds until
the next one is known; a diagonal would invent values in between), series
that coincide share one line and one legend entry, and every point carries
its value as a hover title (plain SVG, no script, fully offline). Absurd
figures (NaN, infinite, huge) are left out or clipped with a note, never a
failed report.

Every piece of text passes :func:`escape` (:func:`runtime.redact.redact_text`
then HTML escaping), so a secret that slipped into a figure never reaches
the page.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

from runtime.redact import redact_text

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")
MAX_LINES = 8
W, H, ML, MR, MT, MB = 1100, 280, 70, 230, 16, 32
#: hover points per series at most (a long run's samples are thinned for them)
MAX_HOVER_POINTS = 300
DASHES = ("", "6,3", "2,2", "8,3,2,3")


def escape(text: Any) -> str:
    """``text`` redacted and HTML-escaped: the only way text enters the report."""
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
                   f'{escape(_fmt(a))}s .. {escape(until)}: {escape(why)}</title></rect>')
    for ty in _nice_ticks(y0, y1):
        y = py(ty)
        out.append(f'<line x1="{ML}" x2="{ML + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{ML - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
                   f'{escape(_fmt(ty))}</text>')
    for tx in _nice_ticks(x0, x1, n=10):
        x = px(tx)
        out.append(f'<text x="{x:.1f}" y="{H - 12}" text-anchor="middle" font-size="11">'
                   f'{escape(_fmt(tx))}s</text>')
    if y0 < 0 < y1:
        out.append(f'<line x1="{ML}" x2="{ML + pw}" y1="{py(0):.1f}" y2="{py(0):.1f}" '
                   'stroke="#999" stroke-dasharray="3,3"/>')
    out.append(f'<text x="14" y="{MT + ph / 2:.1f}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 14 {MT + ph / 2:.1f})">{escape(y_label)}</text>')
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
                       f'><title>{escape(name)}: {escape(_fmt(y))} at {escape(_fmt(x))}s</title></circle>')
        out.append(f'<line x1="{W - MR + 8}" x2="{W - MR + 28}" y1="{legend_y - 4}" '
                   f'y2="{legend_y - 4}" stroke="{color}" stroke-width="3"{dash_attr}/>')
        label = str(name) if len(str(name)) <= 38 else str(name)[:37] + "…"
        out.append(f'<text x="{W - MR + 34}" y="{legend_y}" font-size="11">{escape(label)}'
                   + (f'<title>{escape(name)}</title>' if label != str(name) else "") + '</text>')
        legend_y += 16
    if shaded:
        out.append(f'<rect x="{W - MR + 8}" y="{legend_y - 10}" width="20" height="10" '
                   f'fill="#d62728" fill-opacity="0.13"/>')
        out.append(f'<text x="{W - MR + 34}" y="{legend_y}" font-size="11">kill switch '
                   f'engaged</text>')
    out.append("</svg>")
    return "".join(out) + note


def top_series(series: dict[str, list[tuple[float, float]]], n: int = MAX_LINES,
         ) -> tuple[dict[str, list[tuple[float, float]]], int]:
    """The ``n`` series with the largest peaks (non-zero only), and how many were left out."""
    ranked = sorted(((max((abs(y) for _, y in pts), default=0.0), k) for k, pts in series.items()),
                    key=lambda p: (-p[0], p[1]))
    nonzero = [k for peak, k in ranked if peak > 0]
    keep = nonzero[:n]
    return {k: series[k] for k in keep}, len(nonzero) - len(keep)
