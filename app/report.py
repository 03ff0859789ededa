"""The run report: ``report.html`` in the run directory, one self-contained file.

Written at the end of ``run`` and of each scenario: equity/PnL over time,
exposure (signed position) per symbol, risk rejections by reason over time,
mailbox depth over time, and the end-of-run figures. This module lays out
the page; the pieces have their own modules: ``app.report_records`` (what
the run directory's events and audit trail say, at their own instants:
exposure, rejections, kill-switch periods, shaded on every chart),
``app.report_sampler`` (figures only known when sampled: PnL, mailbox
depth) and ``app.report_chart`` (the inline SVG charts). Records win over
samples where both exist: a fill is known at its instant, a sample only
every half second.

Every piece of text in the report passes :func:`app.report_chart.escape`
(redaction, then HTML escaping), so a secret that slipped into a figure
never reaches it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.report_chart import escape, line_chart, top_series
from app.report_records import RunRecords, read_run_records, run_origin
from app.report_sampler import Sampler
from app.summary import summary_rows
from messages.jsonl import write_text_atomic

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222;
max-width:1180px}svg{max-width:1180px;display:block}circle.pt:hover{fill-opacity:1;r:5}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px;border-bottom:1px solid #eee;
text-align:left}th{background:#f4f4f4}.bad{color:#b00}.ok{color:#070}.empty,.note{color:#777;
font-size:13px}"""


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape('' if c is None else c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report(summary: Mapping[str, Any], sampler: Sampler, *, title: str,
                  run_dir: Path | None = None) -> str:
    s = sampler
    records = read_run_records(run_dir, run_origin(summary)) if run_dir is not None else RunRecords()
    end = max([records.end or 0.0] + ([s.samples[-1]["t"]] if s.samples else []))
    halts = records.halts
    pnl = s.series("pnl")
    from_events = bool(records.positions)
    positions, pos_more = top_series(records.positions if from_events else s.series("positions"))
    from_audit = records.audited
    rejects, rej_more = top_series(records.rejections if from_audit else s.series("rejected"))
    depth, depth_more = top_series(s.series("depth"))
    peak = {k: int(max((y for _, y in pts), default=0)) for k, pts in s.series("depth").items()}
    chart = {"shaded": halts, "x_end": end}
    halt_note = (f'<p class="note">shaded: kill switch engaged ({len(halts)} period'
                 f'{"s" if len(halts) != 1 else ""}); hover a shaded period or a point for '
                 'its value</p>' if halts else
                 '<p class="note">hover a point for its value</p>')
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
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
