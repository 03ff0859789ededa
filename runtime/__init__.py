"""The Tradewarden actor kernel: supervision, addressing, mailboxes, dispatcher, time.

It imports nothing from the application (``actors``, ``trading``, ``exchange``,
``config``, ``app``): the layering of DESIGN section 1."""

from runtime.actor import Actor, handles
from runtime.backoff import Backoff
from runtime.clock import Clock, LiveClock, VirtualClock
from runtime.context import ActorContext
from runtime.signals import TaskDone
from runtime.supervisor import ChildSpec, SupervisorEscalation, SupervisorSpec
from runtime.system import ActorSystem, AskInsideHandler, QuiescenceTimeout

__all__ = [
    "Actor", "ActorContext", "ActorSystem", "AskInsideHandler", "Backoff", "ChildSpec", "Clock",
    "LiveClock", "QuiescenceTimeout", "SupervisorEscalation", "SupervisorSpec", "TaskDone",
    "VirtualClock", "handles",
]
