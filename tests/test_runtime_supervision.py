"""Supervision follows Erlang/OTP semantics (DESIGN section 2)."""

from __future__ import annotations

import errno
import threading

import pytest

from runtime import ChildSpec, SupervisorSpec, handles
from runtime.backoff import Backoff
from tests.rt_helpers import Boom, Finish, Note, Recorder


_EXECUTION = {"kind": None}


@pytest.fixture(autouse=True, params=["pooled", "threaded"])
def execution(request):
    """Every supervision test runs with pooled and with threaded children: a
    pooled actor is supervised exactly as a threaded one is (DESIGN section 2)."""
    _EXECUTION["kind"] = request.param
    yield request.param
    _EXECUTION["kind"] = None


def spec(name, restart="permanent", journal=None, **kw):
    return ChildSpec(name, Recorder, kwargs={"journal": journal, **kw}, restart=restart,
                     execution=_EXECUTION["kind"])


def test_one_for_one_crash_leaves_siblings_untouched(harness_factory):
    h = harness_factory(spec("a"), spec("b"), spec("c"))
    h.tell("a", Note("a1"))
    h.tell("c", Note("c1"))
    b_before = h.actor("b")
    h.tell("b", Boom())
    h.advance(10)
    assert h.cell("b").incarnation == 2 and h.cell("b").restarts == 1
    assert h.actor("b") is not b_before
    assert h.cell("a").incarnation == 1 and h.actor("a").notes == ["a1"]
    assert h.cell("c").incarnation == 1 and h.actor("c").notes == ["c1"]


def test_one_for_one_a_second_crash_during_a_restart_backoff_cancels_no_restart(harness_factory):
    """b crashing while a waits out its restart backoff must not leave a dead:
    each child's pending restart is its own (one_for_one), and a's held mail
    reaches its next instance."""
    h = harness_factory(spec("a"), spec("b"), spec("c"))
    h.system.tell("a", Boom())
    h.system.tell("a", Note("held"))
    h.system.tell("b", Boom())  # before a's restart is due
    h.settle()
    h.advance(10)
    assert [h.cell(n).incarnation for n in "abc"] == [2, 2, 1]
    assert h.actor("a").notes == ["held"]


def test_one_for_all_restarts_every_child(harness_factory):
    h = harness_factory(spec("a"), spec("b"), spec("c"), strategy="one_for_all")
    h.tell("a", Note("x"))
    h.tell("b", Boom())
    h.advance(10)
    assert [h.cell(n).incarnation for n in "abc"] == [2, 2, 2]
    assert h.actor("a").notes == []  # fresh instance, state rebuilt from scratch


def test_rest_for_one_restarts_failed_and_later_children(harness_factory):
    journal = []
    h = harness_factory(spec("a", journal=journal), spec("b", journal=journal),
                        spec("c", journal=journal), strategy="rest_for_one")
    journal.clear()
    h.tell("b", Boom())
    h.advance(10)
    assert [h.cell(n).incarnation for n in "abc"] == [1, 2, 2]
    # c is stopped (reverse order), then b and c restart in start order.
    assert journal == [("stop", "c"), ("start", "b"), ("start", "c")]


def test_transient_child_not_restarted_after_normal_exit(harness_factory):
    h = harness_factory(spec("t", restart="transient"))
    h.tell("t", Finish())
    h.advance(10)
    assert h.system.directory.get("t") is None
    assert "t" not in h.snapshot()["supervisors"][0]["children"]


def test_a_retired_childs_instance_is_freed_at_once_not_at_a_full_collection(harness_factory):
    """An actor gone for good holds its cell (ctx.cell) and its handlers hold it: the
    runtime lets go of both, so short-lived actors (order groups) are freed by
    reference counting instead of piling up until the collector's next full pass."""
    import gc
    import weakref

    h = harness_factory(spec("t", restart="transient"))
    instance = weakref.ref(h.actor("t"))
    h.tell("t", Note("handled"))       # a handler resolved: the dispatch cache holds it
    gc.disable()
    try:
        h.tell("t", Finish())
        h.advance(10)
        assert h.system.directory.get("t") is None
        assert instance() is None, gc.get_referrers(instance())
    finally:
        gc.enable()


def test_transient_child_restarted_after_crash(harness_factory):
    h = harness_factory(spec("t", restart="transient"))
    h.tell("t", Boom())
    h.advance(10)
    assert h.cell("t").incarnation == 2 and h.cell("t").state == "running"


def test_temporary_child_never_restarted_and_later_mail_is_dead(harness_factory):
    h = harness_factory(spec("tmp", restart="temporary"))
    h.tell("tmp", Boom())
    h.advance(10)
    assert h.system.directory.get("tmp") is None
    h.tell("tmp", Note("late"))
    reasons = h.dead_letters.snapshot()["by_reason"]
    assert reasons.get("no such actor") == 1


def test_permanent_child_restarted_even_after_normal_exit(harness_factory):
    h = harness_factory(spec("p"))
    h.tell("p", Finish())
    h.advance(10)
    assert h.cell("p").incarnation == 2 and h.cell("p").state == "running"


def test_messages_told_during_restart_reach_new_instance_in_order(harness_factory):
    h = harness_factory(spec("a"))
    h.system.tell("a", Boom())
    for i in range(50):
        h.system.tell("a", Note(str(i)))
    h.settle()
    # The instance crashed; its successor waits out the backoff, messages held.
    assert h.cell("a").state == "restarting"
    assert h.cell("a").mailbox.depth == 50
    for i in range(50, 60):
        h.system.tell("a", Note(str(i)))
    h.advance(10)
    assert h.actor("a").notes == [str(i) for i in range(60)]
    assert h.dead_letters.snapshot()["by_reason"] == {"crashed handler: RuntimeError": 1}


def test_restart_waits_for_growing_bounded_backoff(harness_factory):
    h = harness_factory(spec("a"), intensity=100, period_s=3600)
    sup = h.system.directory.get("root").actor
    sup.spec.backoff = Backoff(base_s=1.0, max_s=4.0, jitter="none")
    delays = []
    for _ in range(5):
        h.tell("a", Boom())
        start = h.now
        inc = h.cell("a").incarnation
        while h.cell("a").incarnation == inc:
            h.advance(0.25)
        delays.append(h.now - start)
    assert delays == [1.0, 2.0, 4.0, 4.0, 4.0]


def test_intensity_exceeded_fails_supervisor_to_its_parent(harness_factory):
    inner = SupervisorSpec("inner", [spec("w")], intensity=2, period_s=60)
    h = harness_factory(inner, spec("sibling"), intensity=5)
    for _ in range(3):
        h.tell("w", Boom())
        h.advance(10)
    # The third crash within 60 s exceeds inner's intensity (2): inner gives up,
    # its parent (root, one_for_one) restarts inner, which restarts w.
    assert h.cell("inner").failures == 1
    assert h.cell("inner").incarnation == 2
    assert h.cell("w").state == "running"
    assert h.cell("sibling").incarnation == 1
    assert not h.system.halted


def test_root_intensity_exceeded_halts_system(harness_factory):
    halted = []
    h = harness_factory(spec("w"), intensity=1, period_s=60)
    h.system.on_halt(halted.append)
    h.tell("w", Boom())
    h.advance(10)
    h.tell("w", Boom())
    h.advance(10)
    assert h.system.halted and len(halted) == 1
    assert "restart intensity" in halted[0]
    assert h.cell("w").state != "running"


def test_children_start_in_order_and_stop_in_reverse(harness_factory):
    journal = []
    h = harness_factory(spec("a", journal=journal), spec("b", journal=journal),
                        spec("c", journal=journal))
    h.system.shutdown()
    assert journal == [("start", "a"), ("start", "b"), ("start", "c"),
                       ("stop", "c"), ("stop", "b"), ("stop", "a")]


def test_on_start_failure_is_supervised(harness_factory):
    h = harness_factory(spec("bad", fail_on_start=True), intensity=3)
    h.advance(60)
    cell = h.cell("root")
    assert h.system.failure_counts["bad"] >= 3
    assert h.system.halted and cell.state != "running"


def test_nested_restart_does_not_lose_held_messages(harness_factory):
    inner = SupervisorSpec("inner", [spec("w")], strategy="one_for_one")
    h = harness_factory(inner)
    h.system.tell("w", Boom())
    h.system.tell("w", Note("kept"))
    h.advance(10)
    assert h.actor("w").notes == ["kept"]


def test_shutdown_leaves_no_runtime_threads(harness_factory):
    before = {t.name for t in threading.enumerate()}
    h = harness_factory(spec("a"), SupervisorSpec("s", [spec("b")]))
    h.tell("a", Note("x"))
    h.system.shutdown()
    left = {t.name for t in threading.enumerate()} - before
    assert not [n for n in left if n.startswith("tw-")]


def test_bad_specs_are_rejected_with_clear_errors():
    with pytest.raises(ValueError, match="strategy"):
        SupervisorSpec("s", [], strategy="one_for_some")
    with pytest.raises(ValueError, match="restart"):
        ChildSpec("x", Recorder, restart="sometimes")
    with pytest.raises(ValueError, match="duplicate"):
        SupervisorSpec("s", [spec("a"), spec("a")])


class _DiskWriter(Recorder):
    """Its write fails as on a full disk (``ENOSPC``), as audit.jsonl's did."""

    @handles(int)
    def on_write(self, n: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_not_restarted_but_halts_the_runtime_at_once(harness_factory):
    """A restart cannot cure a full disk: the supervisors give up on the first
    failure (no crash loop up to the intensity) and the runtime halts with
    "disk full" as its reason."""
    halted = []
    inner = SupervisorSpec("inner", [ChildSpec("w", _DiskWriter)], intensity=5, period_s=60)
    h = harness_factory(inner, spec("sibling"), intensity=5, period_s=60)
    h.system.on_halt(halted.append)
    h.tell("w", 1)
    h.advance(10)
    assert h.system.halted and len(halted) == 1
    assert halted[0].startswith("disk full: ") and "ENOSPC" not in halted[0]
    assert "No space left on device" in halted[0]
    assert h.cell("w").restarts == 0 and h.cell("inner").restarts == 0
    assert h.cell("sibling").state != "running"


def test_disk_full_is_found_anywhere_in_the_exception_chain():
    from runtime.resources import exhausted

    full = OSError(errno.ENOSPC, "No space left on device")
    try:
        try:
            raise full
        except OSError as exc:
            raise RuntimeError("escalated") from exc
    except RuntimeError as outer:
        assert exhausted(outer) == f"disk full: {full!r}"
    assert exhausted(OSError(errno.EDQUOT, "quota")).startswith("disk quota exceeded")
    assert exhausted(RuntimeError("boom")) is None and exhausted(None) is None
    assert exhausted(OSError(errno.EACCES, "denied")) is None
