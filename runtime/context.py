"""What an actor can do to the rest of the system, in one object.

Everything here is non-blocking: tell, schedule a timer, submit CPU work
(whose result comes back as a message), start a child. There is no ``ask``:
a handler that needs an answer sends a request carrying its own name and
handles the reply when it arrives, with a timer for the timeout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from collections.abc import Callable

from runtime.signals import GracefulStop, StartChild, TerminateChild

if TYPE_CHECKING:
    from runtime.clock import Clock
    from runtime.directory import ActorCell
    from runtime.system import ActorSystem


class ActorContext:
    __slots__ = ("system", "cell", "name", "clock")

    def __init__(self, system: ActorSystem, cell: ActorCell) -> None:
        self.system = system
        self.cell = cell
        self.name = cell.name
        self.clock: Clock = system.clock

    def tell(self, target: str, message: Any) -> bool:
        return self.system.tell(target, message)

    def tell_self(self, message: Any) -> None:
        self.cell.mailbox.put(message)

    def schedule(self, delay_s: float, message: Any, *, target: str | None = None,
                 interval_s: float | None = None) -> int:
        """Deliver ``message`` (to self unless ``target``) after ``delay_s`` seconds."""
        return self.system.timers.schedule(delay_s, target or self.name, message,
                                           interval_s=interval_s)

    def cancel_timer(self, timer_id: int | None) -> bool:
        return self.system.timers.cancel(timer_id)

    def submit(self, fn: Callable[..., Any], *args: Any, tag: Any = None) -> None:
        """Run ``fn(*args)`` on the shared executor; a TaskDone comes back to self."""
        self.system.executor.submit(fn, *args, reply_to=self.name, tag=tag)

    def start_child(self, supervisor: str, spec: Any) -> None:
        self.system.tell(supervisor, StartChild(spec))

    def terminate_child(self, supervisor: str, name: str) -> None:
        self.system.tell(supervisor, TerminateChild(name))

    def stop_self(self, reason: str = "done") -> None:
        """Stop after the messages already waiting (a normal exit)."""
        self.cell.mailbox.put(GracefulStop(reason))

    @property
    def seed(self) -> int:
        return self.system.seed

    @property
    def services(self) -> dict[str, Any]:
        """Shared, read-mostly objects the launcher provides (config, store...)."""
        return self.system.services
