"""The run report: ``report.html`` at the end of ``run`` and of each
scenario, self-contained, with equity/PnL, exposure per symbol, rejections by
reason over time and mailbox depth over time; nothing secret in it."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from app.report import render_report, write_report
from app.report_chart import line_chart
from app.report_sampler import Sampler
from app.scenario_runner import run_scenario
from tests.virtual_runtime import VirtualRuntime

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("Summary", "Equity / PnL", "Exposure per symbol", "Risk rejections by reason",
            "Mailbox depth", "Actors at the end")


def _svgs(html: str) -> list[ET.Element]:
    return [ET.fromstring(s) for s in re.findall(r"<svg.*?</svg>", html, re.S)]


def test_report_from_a_sampled_runtime(tmp_path) -> None:
    from app.summary import collect_summary

    sampler = Sampler(min_interval_s=0.0)
    with VirtualRuntime(tmp_path / "run", ("BTCUSDT", "ETHUSDT")) as vr:
        vr.quote("BTCUSDT", "100.0", "100.1")
        vr.quote("ETHUSDT", "50.0", "50.1")
        vr.at(1.0)
        sampler.sample(vr.rt, vr.now)
        vr.signal("BTCUSDT", "buy", "2")
        vr.at(2.0)
        sampler.sample(vr.rt, vr.now)
        vr.signal("DOGEUSDT", "buy", "1")     # unknown_symbol
        vr.quote("BTCUSDT", "103.0", "103.1")
        vr.at(3.0)
        sampler.sample(vr.rt, vr.now)
        vr.signal("ETHUSDT", "sell", "1")
        vr.at(4.0)
        sampler.sample(vr.rt, vr.now)
    summary = collect_summary(vr.rt, started_at="a", ended_at="b")
    path = write_report(tmp_path / "run", summary, sampler, title="test report")
    html = path.read_text()
    assert path.name == "report.html"
    for section in SECTIONS:
        assert f">{section}</h2>" in html.replace("&#x27;", "'"), section
    assert "unknown_symbol" in html
    assert "BTCUSDT" in html and "ETHUSDT" in html
    assert len(sampler.samples) == 4
    assert sampler.samples[-1]["positions"]["BTCUSDT"] == 2.0
    assert sampler.samples[-1]["positions"]["ETHUSDT"] == -1.0
    svgs = _svgs(html)
    assert len(svgs) >= 3               # PnL, exposure, rejections (depth may be all zero)
    assert "<script" not in html and "src=" not in html   # self-contained, nothing fetched


def test_every_scenario_writes_a_report(tmp_path) -> None:
    result = run_scenario(ROOT / "tests/scenarios/circuit_breaker_trip.yaml", tmp_path)
    html = (result.run_dir / "report.html").read_text()
    for section in SECTIONS:
        assert f">{section}</h2>" in html, section
    assert "expect" in html and result.summary["scenario"] in html.replace("&#x27;", "'")
    assert _svgs(html)


def test_report_text_is_redacted_and_escaped(tmp_path) -> None:
    sampler = Sampler(min_interval_s=0.0)
    sampler.samples = [{"t": 0.0, "pnl": {"total": 1.0}, "positions": {"<b>X</b>": 1.0},
                        "rejected": {"reason api_key=canary-xyz": 1}, "depth": {}}]
    summary = {"run_id": "r1 token=canary-abc", "invariant_violations": [],
               "risk": {"approved": 0, "rejected": {}}}
    html = render_report(summary, sampler, title="t")
    assert "canary-xyz" not in html and "canary-abc" not in html
    assert "<b>X</b>" not in html and "&lt;b&gt;X&lt;/b&gt;" in html


def test_sampler_stays_bounded() -> None:
    from runtime.testing import VirtualHarness

    with VirtualHarness() as h:
        sampler = Sampler(min_interval_s=1.0, max_samples=100)
        for i in range(1000):
            sampler.sample(h, float(i))
    assert len(sampler.samples) <= 100
    ts = [s["t"] for s in sampler.samples]
    assert ts == sorted(ts) and ts[0] == 0.0 and ts[-1] >= 900


def test_line_chart_edge_cases() -> None:
    assert "no samples" in line_chart({}, y_label="y")
    one = line_chart({"a": [(1.0, 5.0)]}, y_label="y")
    ET.fromstring(one)
    flat = line_chart({"a": [(0.0, 0.0), (1.0, 0.0)], "b": [(0.0, -3.0), (2.0, 4.0)]},
                      y_label="y", step=True)
    ET.fromstring(flat)


def test_the_report_and_the_console_table_show_the_same_rows() -> None:
    """One list of rows feeds both: the report used to lack stop exits, hedges,
    groups and the kill switch, which the console table showed."""
    import html as html_lib

    from rich.console import Console

    from app.summary import summary_rows, summary_table

    summary = {"run_id": "r", "started_at": "a", "ended_at": "b", "market_events": 10,
               "signals": 2, "risk": {"approved": 2, "rejected": {"max_volatility": 1}},
               "orders": {"submitted": 2, "filled": 2}, "stop_exits": {"limit": 1,
                                                                      "market_fallback": 3},
               "hedges": 4, "groups": {"submitted": 5, "filled": 3, "rolled_back": 1,
                                       "failed": 1, "rejected": 0},
               "positions": {"BTCUSDT": "2"}, "exchange_positions": {"BTCUSDT": "1"},
               "pnl": {"realized": "1.5", "unrealized": "0"},
               "kill_switch": {"state": "HALTED", "reason": "daily loss"},
               "restarts": {"coordinator": 1},
               "invariant_violations": [{"detail": "netting [red]BTCUSDT[/red]"}]}
    rows = summary_rows(summary)
    assert [r[0] for r in rows] == ["run", "market events", "signals", "risk", "orders",
                                    "stop exits", "hedges", "order groups", "positions", "pnl",
                                    "kill switch", "restarts", "invariants"]
    page = html_lib.unescape(render_report(summary, Sampler(), title="t"))
    console = Console(width=400, record=True, color_system=None)
    console.print(summary_table(summary))
    text = console.export_text()
    for what, value, _ in rows:
        assert what in page and value in page, (what, value)
        assert what in text and value in text, (what, value)
    assert "market fallback 3" in page and "BTCUSDT 2 (exchange 1)" in page
    assert "[red]BTCUSDT[/red]" in text, "a value is shown as written, never read as markup"


def test_absurd_figures_still_give_a_report(tmp_path) -> None:
    """A figure like 9E+999999 (infinite as a float), a NaN or a 1e308 swing
    used to overflow the axis ticks, and report.html was not written; a range
    too narrow for float steps (1e20 .. 1e20 + 1) looped. Now they are left
    out or clipped, and the chart says so."""
    from app.metrics import number

    sampler = Sampler(min_interval_s=0.0)
    huge = number("9E+999999")
    assert huge == float("inf")
    for t, pnl, pos in ((0.0, huge, 1e308), (1.0, float("nan"), -1e308), (2.0, 1.0, 1e20),
                        (3.0, -huge, 1e20 + 1)):
        sampler.samples.append({"t": t, "pnl": {"total": pnl, "realized": pnl, "unrealized": 0.0,
                                                "daily": pnl},
                                "positions": {"BTCUSDT": pos, "ETHUSDT": 1e20},
                                "rejected": {}, "depth": {"coordinator": 0}})
    summary = {"run_id": "absurd", "invariant_violations": [],
               "pnl": {"realized": "9E+999999", "unrealized": "-9E+999999"}}
    path = write_report(tmp_path, summary, sampler, title="absurd")
    html = path.read_text()
    assert len(_svgs(html)) >= 2  # every chart is well-formed SVG
    assert "not finite or beyond" in html


# -- charts that tell the truth -----------------------------------------------------------------


def _polylines(svg: ET.Element) -> list[list[tuple[float, float]]]:
    out = []
    for pl in svg.iter("{http://www.w3.org/2000/svg}polyline"):
        out.append([tuple(map(float, p.split(","))) for p in pl.get("points").split()])
    return out


def _titles(html: str) -> list[str]:
    import html as html_lib

    return [html_lib.unescape(t) for t in re.findall(r"<title>(.*?)</title>", html)]


def test_exposure_comes_from_the_fills_at_their_own_times_as_steps(tmp_path) -> None:
    """The stop fills at 4 s while the runtime is down (no sample then): the chart
    shows it at 4 s from events.jsonl, drawn as steps, never as a diagonal."""
    result = run_scenario(ROOT / "tests/scenarios/stop_fills_while_runtime_down.yaml", tmp_path)
    html = (result.run_dir / "report.html").read_text()
    titles = _titles(html)
    assert "BTCUSDT: 8 at 1s" in titles and "BTCUSDT: 0 at 4s" in titles
    assert "fills from events.jsonl" in html
    for svg in _svgs(html):
        for line in _polylines(svg):
            for (xa, ya), (xb, yb) in zip(line, line[1:], strict=False):
                assert xa == xb or ya == yb, f"diagonal from {(xa, ya)} to {(xb, yb)}"
    # total, realized and daily PnL coincide here: one line, one legend entry naming all
    assert "total = realized = daily" in html


def test_kill_switch_periods_are_shaded_on_every_chart(tmp_path) -> None:
    result = run_scenario(ROOT / "tests/scenarios/kill_switch_survives_crash.yaml", tmp_path)
    html = (result.run_dir / "report.html").read_text()
    svgs = _svgs(html)
    halts = [[r for r in svg.iter("{http://www.w3.org/2000/svg}rect")
              if r.get("class") == "halt"] for svg in svgs]
    assert svgs and all(len(h) == 1 for h in halts)  # one engaged period, on each chart
    assert any(t.startswith("kill switch engaged 0.5s .. 5s: manual: operator")
               for t in _titles(html))


def test_charts_are_wide_and_every_series_has_a_visible_legend_and_hover_values() -> None:
    series = {f"S{i}": [(0.0, 0.0), (float(i + 1), float(i))] for i in range(12)}
    text = line_chart(series, y_label="y")
    svg = ET.fromstring(text)
    assert svg.get("width") == "100%" and float(svg.get("viewBox").split()[2]) >= 1000
    legend = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text") if t.text in series]
    assert legend == list(series)  # every series named, in order
    lines = svg.findall("{http://www.w3.org/2000/svg}polyline")
    styles = {(pl.get("stroke"), pl.get("stroke-dasharray")) for pl in lines}
    assert len(styles) == len(series), "two series must never look the same"
    assert len(_titles(text)) == 2 * len(series)  # a hover title on every known value
    assert "S3: 3 at 4s" in _titles(text)
