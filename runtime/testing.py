"""A harness for testing actors in virtual time.

Start a system with the given children, inject messages to named actors,
advance virtual time, wait for quiescence and read an actor's state, all
deterministically and without ``sleep``::

    from runtime.testing import VirtualHarness
    from runtime import ChildSpec

    with VirtualHarness(ChildSpec("counter", Counter)) as h:
        h.tell("counter", Increment(3))
        h.advance(10)                       # fire timers due in the next 10 s
        assert h.actor("counter").total == 3
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from runtime.clock import EPOCH_DEFAULT, VirtualClock
from runtime.supervisor import SupervisorSpec
from runtime.system import ActorSystem


class VirtualHarness:
    def __init__(self, *children: Any, strategy: str = "one_for_one", intensity: int = 5,
                 period_s: float = 60.0, seed: int = 0, start: datetime = EPOCH_DEFAULT,
                 services: dict[str, Any] | None = None, executor_workers: int = 2,
                 root_name: str = "root", dispatcher_threads: int = 1, throughput: int = 64,
                 slow_handler_s: float = 0.05, placement: Any = None) -> None:
        self.clock = VirtualClock(start)
        self.system = ActorSystem(clock=self.clock, seed=seed, services=services,
                                  executor_workers=executor_workers, name="test",
                                  dispatcher_threads=dispatcher_threads, throughput=throughput,
                                  slow_handler_s=slow_handler_s, placement=placement)
        self.root_spec = SupervisorSpec(root_name, list(children), strategy=strategy,
                                        intensity=intensity, period_s=period_s)

    def start(self) -> VirtualHarness:
        self.system.start(self.root_spec)
        return self

    def __enter__(self) -> VirtualHarness:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.system.shutdown()

    # -- driving ----------------------------------------------------------------

    def tell(self, name: str, message: Any) -> None:
        """Inject a message and wait until the system is quiescent again."""
        self.system.tell(name, message)
        self.settle()

    def ask(self, name: str, message: Any, timeout: float = 10.0) -> Any:
        return self.system.ask(name, message, timeout=timeout)

    def settle(self, timeout: float = 10.0) -> None:
        self.system.wait_quiescent(timeout)

    def advance(self, seconds: float) -> None:
        self.system.advance(seconds)

    def run_until(self, t: float) -> None:
        self.system.run_until(t)

    @property
    def now(self) -> float:
        return self.clock.monotonic()

    # -- reading ------------------------------------------------------------------

    def actor(self, name: str) -> Any:
        """The current instance behind ``name``. Read its state only when settled."""
        cell = self.system.directory.get(name)
        if cell is None or cell.actor is None:
            raise LookupError(f"no running actor named {name!r}")
        return cell.actor

    def cell(self, name: str) -> Any:
        cell = self.system.directory.get(name)
        if cell is None:
            raise LookupError(f"no actor named {name!r}")
        return cell

    def snapshot(self, peek: int = 0) -> dict[str, Any]:
        return self.system.snapshot(peek=peek)

    @property
    def dead_letters(self) -> Any:
        return self.system.dead_letters
