"""``ray_hop_p50_us`` / ``ray_hop_p99_us``: one message to a remote actor and
back, paced, on the live clock; beside it the same through a host on a
thread of this process (``thread_hop_*``: the codec and the proxy alone)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from messages.base import Message, message
from runtime import Actor, ActorSystem, ChildSpec, SupervisorSpec, handles


@message
class HopPing(Message):
    n: int


@message
class HopPong(Message):
    n: int


class HopEcho(Actor):
    """The remote end: answers every ping to ``hop-sink``."""

    @handles(HopPing)
    def on_ping(self, p: HopPing) -> None:
        self.ctx.tell("hop-sink", HopPong(p.n))


class HopSink(Actor):
    def __init__(self, ctx: Any, arrived: dict[int, float]) -> None:
        super().__init__(ctx)
        self.arrived = arrived

    @handles(HopPong)
    def on_pong(self, p: HopPong) -> None:
        self.arrived[p.n] = time.perf_counter()


def hop_us(placement: Any, *, n: int = 400, rate: int = 200) -> tuple[float, float]:
    """p50/p99 (us): a ping told to the remote ``hop-echo`` until its pong is handled here."""
    arrived: dict[int, float] = {}
    system = ActorSystem(name="bench-remote-hop", placement=placement)
    system.start(SupervisorSpec("root", [
        ChildSpec("hop-sink", HopSink, args=(arrived,)),
        ChildSpec("hop-echo", HopEcho, execution="remote")]))
    try:
        echo = system.address("hop-echo").tell
        echo(HopPing(-1))  # the first batch starts the far side: not a hop
        deadline = time.monotonic() + 60
        while -1 not in arrived and time.monotonic() < deadline:
            time.sleep(0.01)
        sent: dict[int, float] = {}
        start = time.perf_counter()
        for i in range(n):
            due = start + i / rate
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            sent[i] = time.perf_counter()
            echo(HopPing(i))
        deadline = time.monotonic() + 30
        while len(arrived) < n + 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        lat = np.array([(arrived[i] - sent[i]) * 1e6 for i in range(n) if i in arrived])
        return float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
    finally:
        system.shutdown()


def processed_on_ray(n_symbols: int, flood_events: int) -> dict[str, Any]:
    """``processed_events_per_s`` with the symbol actors (and their strategy) on
    a local Ray instance: the pipeline section's flood, the same figure."""
    import shutil
    import tempfile
    from pathlib import Path

    from exchange.synthetic import make_symbols
    from app.bench.pipeline import _flood, _market_events
    from app.bench.rig import Peak, start_runtime

    symbols = make_symbols(n_symbols)
    tmp = Path(tempfile.mkdtemp(prefix=f"tw-bench-ray{n_symbols}-"))
    rt = None
    try:
        # the far side loads the bench strategy by its dotted path
        rt = start_runtime(symbols, tmp / "run", "app.bench.rig.BenchEvery",
                           {"period_s": n_symbols / 1_000}, extra={
                               "runtime": {"placement": {"symbols": "ray", "ray_processes": 2,
                                                         "ray_num_cpus": 2}}})
        events = [e for e in _market_events(symbols, flood_events / 5_000)][:flood_events]
        flood = _flood(rt, events, Peak())
        return {"processed_per_s": flood["processed_per_s"], "events_per_s": flood["events_per_s"],
                "conflated_pct": flood["conflated_pct"]}
    finally:
        if rt is not None:
            rt.stop(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def run(quick: bool) -> dict[str, Any]:
    from runtime.remote_placement import ThreadPlacement

    n = 200 if quick else 1000
    out: dict[str, Any] = {}
    t50, t99 = hop_us(ThreadPlacement(), n=n)
    out["thread_hop_p50_us"], out["thread_hop_p99_us"] = round(t50, 1), round(t99, 1)
    from runtime.ray_placement import RayPlacement, ray_missing

    why = ray_missing()
    if why is not None:
        out["ray_hop_skipped"] = why
        return out
    placement = RayPlacement("auto", processes=1, num_cpus=2)
    try:
        r50, r99 = hop_us(placement, n=n)
    finally:
        placement.close()
    out["ray_hop_p50_us"], out["ray_hop_p99_us"] = round(r50, 1), round(r99, 1)
    on_ray = processed_on_ray(1000, 5_000 if quick else 20_000)
    out["processed_events_per_s_ray"] = {"1000": round(on_ray["processed_per_s"])}
    out["processed_conflated_pct_ray"] = {"1000": round(on_ray["conflated_pct"], 1)}
    return out
