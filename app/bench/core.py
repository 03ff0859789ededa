"""Runtime benchmarks: tell throughput (bare pykka vs the runtime) and a
4-actor pipeline's latency at a fixed rate. Live clock, real threads."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pykka

from runtime import Actor, ActorSystem, ChildSpec, SupervisorSpec, handles
from runtime.context import ActorContext


class _RawCounter(pykka.ThreadingActor):
    def __init__(self, n: int, done: threading.Event) -> None:
        super().__init__()
        self.n, self.done, self.count = n, done, 0

    def on_receive(self, message: Any) -> None:
        self.count += 1
        if self.count == self.n:
            self.done.set()


class _Counter(Actor):
    def __init__(self, ctx: ActorContext, n: int, done: threading.Event) -> None:
        super().__init__(ctx)
        self.n, self.done, self.count = n, done, 0

    @handles(int)
    def on_int(self, message: int) -> None:
        self.count += 1
        if self.count == self.n:
            self.done.set()


def pykka_raw_tell_per_s(n: int) -> float:
    done = threading.Event()
    ref = _RawCounter.start(n, done)
    try:
        t0 = time.perf_counter()
        tell = ref.tell
        for i in range(n):
            tell(i)
        done.wait(120)
        return n / (time.perf_counter() - t0)
    finally:
        ref.stop()


def runtime_tell_per_s(n: int) -> float:
    done = threading.Event()
    system = ActorSystem(name="bench")
    system.start(SupervisorSpec("root", [ChildSpec("counter", _Counter, args=(n, done))]))
    try:
        tell = system.address("counter").tell
        t0 = time.perf_counter()
        for i in range(n):
            tell(i)
        done.wait(120)
        return n / (time.perf_counter() - t0)
    finally:
        system.shutdown()


def paced_latency_us(send: Any, sink: list[float], rate: int,
                     seconds: float) -> tuple[float, float]:
    """Call ``send(i)`` ``rate`` times a second for ``seconds``, wait until the
    sink holds a latency (seconds) for each, and return their p50/p99 in us."""
    total = int(rate * seconds)
    interval = 1.0 / rate
    start = time.perf_counter()
    for i in range(total):
        due = start + i * interval
        now = time.perf_counter()
        if due > now:
            # Sleep (never spin): a spinning producer holds the GIL for a
            # whole switch interval (5 ms) and would measure itself.
            time.sleep(due - now)
        send(i)
    deadline = time.monotonic() + 10
    while len(sink) < total and time.monotonic() < deadline:
        time.sleep(0.001)
    lat = np.array(sink) * 1e6
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


class _Stage(Actor):
    def __init__(self, ctx: ActorContext, nxt: str | None, sink: list[float]) -> None:
        super().__init__(ctx)
        self.nxt = ctx.system.address(nxt) if nxt else None
        self.sink = sink

    @handles(float)
    def on_stamp(self, t0: float) -> None:
        if self.nxt is not None:
            self.nxt.tell(t0)
        else:
            self.sink.append(time.perf_counter() - t0)


def pipeline4_latency_us(rate: int, seconds: float) -> tuple[float, float]:
    """p50/p99 latency (us) through 4 actors, paced at ``rate`` messages/s."""
    sink: list[float] = []
    names = ["p1", "p2", "p3", "p4"]
    children = [ChildSpec(n, _Stage, args=(names[i + 1] if i < 3 else None, sink))
                for i, n in enumerate(names)]
    system = ActorSystem(name="bench-pipeline")
    system.start(SupervisorSpec("root", children))
    try:
        first = system.address("p1")
        return paced_latency_us(lambda _i: first.tell(time.perf_counter()), sink, rate, seconds)
    finally:
        system.shutdown()


class _HopFrom(Actor):
    """Stamps the time and tells the other actor: the hop being measured starts here."""

    def __init__(self, ctx: ActorContext, to: str) -> None:
        super().__init__(ctx)
        self.to = ctx.system.address(to)

    @handles(int)
    def on_go(self, _n: int) -> None:
        self.to.tell(time.perf_counter())


class _HopTo(Actor):
    def __init__(self, ctx: ActorContext, sink: list[float]) -> None:
        super().__init__(ctx)
        self.sink = sink

    @handles(float)
    def on_stamp(self, t0: float) -> None:
        self.sink.append(time.perf_counter() - t0)


def hop_latency_us(execution: str, rate: int, seconds: float) -> tuple[float, float]:
    """p50/p99 (us) of one message from one actor to another, both ``execution``
    (pooled: the same dispatcher worker; threaded: a thread each), paced."""
    sink: list[float] = []
    system = ActorSystem(name=f"bench-hop-{execution}")
    system.start(SupervisorSpec("root", [
        ChildSpec("hop-to", _HopTo, args=(sink,), execution=execution),
        ChildSpec("hop-from", _HopFrom, args=("hop-to",), execution=execution)]))
    try:
        return paced_latency_us(system.address("hop-from").tell, sink, rate, seconds)
    finally:
        system.shutdown()


def run(quick: bool) -> dict[str, Any]:
    n = 200_000 if quick else 1_000_000
    raw = pykka_raw_tell_per_s(n)
    rt = runtime_tell_per_s(n)
    p50, p99 = pipeline4_latency_us(5_000, 2.0 if quick else 5.0)
    hop_s = 1.0 if quick else 3.0
    d50, d99 = hop_latency_us("pooled", 2_000, hop_s)
    t50, t99 = hop_latency_us("threaded", 2_000, hop_s)
    return {
        "pykka_raw_tell_per_s": round(raw),
        "runtime_tell_per_s": round(rt),
        "runtime_vs_pykka_ratio": round(rt / raw, 2),
        "pipeline4_p50_us": round(p50, 1),
        "pipeline4_p99_us": round(p99, 1),
        "dispatch_hop_p50_us": round(d50, 1),
        "dispatch_hop_p99_us": round(d99, 1),
        "threaded_hop_p50_us": round(t50, 1),
        "threaded_hop_p99_us": round(t99, 1),
    }
