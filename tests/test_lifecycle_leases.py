"""Lost leases, give-backs and the watchdogs of every waiting state, as plain code.

A fax whose worker died is sent again where its pages stood, keeping its place in the
queue; one that may already be complete at the far end is left uncertain; a fax in any
non-final state that stops moving is picked up again by its watch."""

from __future__ import annotations

from datetime import timedelta

import pytest

from faxfleet.messages import Cause, HolderDead, JobState, LeaseLost, Requeued, Routed, now
from scheduler.lifecycle import MAX_RENDERS, Lifecycle, Notify, Render, Route
from tests.test_lifecycle import Fax, make_fax, of_type, progress, routed

S = JobState


@pytest.fixture
def lc() -> Lifecycle:
    from tests.test_lifecycle import SETTINGS

    return Lifecycle(SETTINGS)


def dead(attempt: int = 1) -> HolderDead:
    return HolderDead(
        job_id="fx_test", recipient=0, attempt=attempt, site="lyon", worker="lyon@h:1", at=now()
    )


def lost(attempt: int = 1) -> LeaseLost:
    return LeaseLost(
        job_id="fx_test",
        recipient=0,
        attempt=attempt,
        site="lyon",
        worker="lyon@host:1",
        detail="site lyon stopped renewing its lease on the call",
        at=now(),
    )


def test_route_orders_carry_when_the_fax_started_waiting(lc: Lifecycle) -> None:
    fax = Fax(make_fax())
    fax.step(lc.start)
    from faxfleet.messages import RenderDone

    effects = fax.step(
        lambda d: lc.on_render_done(d, RenderDone(job_id="fx_test", pages=2, at=now()))
    )
    order = of_type(effects, Route)[0].order
    assert order.queued_since is not None
    assert fax.r().queued_since == order.queued_since


@pytest.mark.parametrize("phase", ["queued", "dialing"])
def test_holder_dead_before_a_page_routes_again_at_once_keeping_its_place(
    lc: Lifecycle, phase: str
) -> None:
    fax = Fax(make_fax())
    routed(lc, fax, pages=3)
    waited_since = fax.r().queued_since
    if phase == "dialing":
        fax.step(lambda d: lc.on_progress(d, progress(1, "dialing")))
    effects = fax.step(lambda d: lc.on_holder_dead(d, dead()))
    assert fax.r().state == S.ROUTING
    assert fax.r().attempt == 2
    assert fax.r().tries == 0  # nothing reached the far end: not the fax's fault
    order = of_type(effects, Route)[0].order
    assert order.attempt == 2
    assert order.first_page == 1
    assert order.queued_since == waited_since  # its place in the queue is kept


def test_holder_dead_mid_fax_resumes_at_the_first_unconfirmed_page(lc: Lifecycle) -> None:
    fax = Fax(make_fax())
    routed(lc, fax, pages=5)
    fax.step(lambda d: lc.on_progress(d, progress(1, "dialing")))
    fax.step(lambda d: lc.on_progress(d, progress(2, "page", page=3, confirmed=2)))
    effects = fax.step(lambda d: lc.on_holder_dead(d, dead()))
    assert fax.r().state == S.ROUTING
    assert fax.r().tries == 1
    order = of_type(effects, Route)[0].order
    assert order.first_page == 3
    assert "from page 3" in (fax.r().detail or "")


def test_holder_dead_on_the_last_page_is_uncertain_and_not_redialled(lc: Lifecycle) -> None:
    fax = Fax(make_fax())
    routed(lc, fax, pages=2)
    fax.step(lambda d: lc.on_progress(d, progress(1, "dialing")))
    fax.step(lambda d: lc.on_progress(d, progress(2, "page", page=2, confirmed=1)))
    effects = fax.step(lambda d: lc.on_holder_dead(d, dead()))
    assert fax.r().state == S.OUTCOME_UNCERTAIN
    assert fax.r().cause == Cause.WORKER_LOST
    assert of_type(effects, Route) == []
    assert of_type(effects, Notify)


def test_holder_dead_mid_fax_too_often_fails_with_its_cause(lc: Lifecycle) -> None:
    fax = Fax(make_fax())
    routed(lc, fax, pages=5)
    for attempt in range(1, 4):
        if attempt > 1:
            fax.step(
                lambda d, a=attempt: lc.on_routed(
                    d, Routed(job_id="fx_test", recipient=0, attempt=a, site="lyon", at=now())
                )
            )
        fax.step(lambda d, a=attempt: lc.on_progress(d, progress(1, "dialing", attempt=a)))
        fax.step(
            lambda d, a=attempt: lc.on_progress(
                d, progress(2, "page", attempt=a, page=2, confirmed=1)
            )
        )
        fax.step(lambda d, a=attempt: lc.on_holder_dead(d, dead(a)))
    assert fax.r().state == S.FAILED
    assert fax.r().cause == Cause.WORKER_LOST


def test_a_stale_holder_death_changes_nothing(lc: Lifecycle) -> None:
    fax = Fax(make_fax())
    routed(lc, fax, pages=2)
    before = fax.status
    assert fax.step(lambda d: lc.on_holder_dead(d, dead(attempt=7))) == []
    assert fax.status == before


def test_a_lost_lease_alone_sends_nothing_again_and_arms_the_watch(lc: Lifecycle) -> None:
    """A cut-off site may still be on the call: the attempt waits for its result, for
    proof its worker is gone, or for the watchdog."""
    fax = Fax(make_fax())
    routed(lc, fax, pages=3)
    fax.step(lambda d: lc.on_progress(d, progress(1, "dialing")))
    fax.step(lambda d: lc.on_progress(d, progress(2, "page", page=2, confirmed=1)))
    effects = fax.step(lambda d: lc.on_lease_lost(d, lost()))
    assert effects == []
    assert fax.r().state == S.SENDING and fax.r().attempt == 1
    assert fax.last is not None and fax.last.watches["fx_test:0"] is not None
    assert "lease" in (fax.last.transitions[-1].detail or "")
    # The watch runs out: uncertain, as for any silent call...
    fax.step(lambda d: lc.on_watch_expired(d, 0))
    assert fax.r().state == S.OUTCOME_UNCERTAIN
    # ...and proof that the holder died mid-fax sends it on from the unconfirmed page.
    effects = fax.step(lambda d: lc.on_holder_dead(d, dead()))
    assert fax.r().state == S.ROUTING
    assert of_type(effects, Route)[0].order.first_page == 2


def test_a_late_result_after_a_lost_lease_settles_the_attempt(lc: Lifecycle) -> None:
    from tests.test_lifecycle import result

    fax = Fax(make_fax())
    routed(lc, fax, pages=2)
    fax.step(lambda d: lc.on_progress(d, progress(1, "dialing")))
    fax.step(lambda d: lc.on_progress(d, progress(2, "page", page=1)))
    fax.step(lambda d: lc.on_lease_lost(d, lost()))
    fax.step(lambda d: lc.on_result(d, result(3, ok=True, confirmed=2)))
    assert fax.r().state == S.DONE


def test_requeued_before_routed_is_noted_and_routed_then_updates_the_site(
    lc: Lifecycle,
) -> None:
    """Two event workers may apply a give-back before the hand-out it undoes."""
    fax = Fax(make_fax())
    routed(lc, fax, pages=1)
    back = Requeued(
        job_id="fx_test", recipient=0, attempt=1, site="lyon", detail="lyon went down", at=now()
    )
    fax.step(lambda d: lc.on_requeued(d, back))
    assert fax.r().state == S.ROUTING
    fax.step(
        lambda d: lc.on_routed(
            d, Routed(job_id="fx_test", recipient=0, attempt=1, site="nice", at=now())
        )
    )
    assert (fax.r().state, fax.r().site) == (S.QUEUED, "nice")
    # A late "routed" of the same attempt to yet another site just follows it.
    fax.step(
        lambda d: lc.on_routed(
            d, Routed(job_id="fx_test", recipient=0, attempt=1, site="metz", at=now())
        )
    )
    assert (fax.r().state, fax.r().site) == (S.QUEUED, "metz")


def test_queued_watch_sends_the_same_order_again(lc: Lifecycle) -> None:
    fax = Fax(make_fax())
    routed(lc, fax, pages=1)
    effects = fax.step(lambda d: lc.on_watch_expired(d, 0))
    order = of_type(effects, Route)[0].order
    assert order.attempt == 1  # idempotent: ignored by the router while it is placed
    assert fax.r().state == S.QUEUED
    assert fax.last is not None and fax.last.watches  # watched again


@pytest.mark.parametrize("start", [False, True])
def test_render_watch_starts_rendering_again_then_gives_up(lc: Lifecycle, start: bool) -> None:
    fax = Fax(make_fax())
    if start:
        fax.step(lc.start)
    for n in range(1, MAX_RENDERS):
        effects = fax.step(lambda d: lc.on_watch_expired(d, 0))
        assert of_type(effects, Render), n
        assert fax.r().state == S.RENDERING
        assert fax.status.renders == n
    effects = fax.step(lambda d: lc.on_watch_expired(d, 0))
    assert fax.r().state == S.FAILED
    assert fax.r().cause == Cause.RENDER_ERROR
    assert "did not finish" in (fax.r().detail or "")
    assert of_type(effects, Notify)


def test_start_arms_the_render_watch(lc: Lifecycle) -> None:
    fax = Fax(make_fax())
    fax.step(lc.start)
    assert fax.last is not None
    deadline = fax.last.watches["fx_test:0"]
    assert deadline is not None
    expected = now() + timedelta(seconds=lc.s.render_watch_seconds)
    assert abs(deadline - expected.timestamp()) < 5
