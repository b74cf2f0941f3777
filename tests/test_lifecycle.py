"""The lifecycle as plain code: Drafts of FaxStatus objects in, state changes and effects out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from faxfleet.messages import (
    AttemptProgress,
    AttemptResult,
    Cause,
    DocumentInfo,
    FaxStatus,
    JobState,
    RecipientStatus,
    RenderDone,
    Resolution,
    RouteChoice,
    Routed,
    now,
)
from faxfleet.settings import Settings
from scheduler import states
from scheduler.lifecycle import Changed, Effect, Lifecycle, Notify, Render, Route
from scheduler.store import Draft, route_timer, watch_member

S = JobState
SCALE = 0.01
SETTINGS = Settings(
    time_scale=SCALE,
    max_dials=4,
    max_tries=3,
    retry_busy_seconds=180,
    retry_protocol_seconds=120,
    stuck_after_seconds=600,
    routing_stuck_after_seconds=60,
)


@pytest.fixture
def lc() -> Lifecycle:
    return Lifecycle(SETTINGS)


def make_fax(
    n_recipients: int = 1,
    *,
    pages: int | None = None,
    send_after_seconds: float | None = None,
    recipient_states: list[JobState] | None = None,
) -> FaxStatus:
    created = now()
    rstates = recipient_states or [S.SUBMITTED] * n_recipients
    recipients = [
        RecipientStatus(index=i, number=f"+3314268530{i}", state=st_)
        for i, st_ in enumerate(rstates)
    ]
    return FaxStatus(
        id="fx_test",
        tenant="acme",
        state=states.summarise(rstates),
        priority=7,
        resolution=Resolution.FINE,
        user="alice",
        sender="Alice",
        home_site="paris",
        created_at=created,
        send_after=(
            created + timedelta(seconds=send_after_seconds)
            if send_after_seconds is not None
            else None
        ),
        kill_at=created + timedelta(days=1),
        documents=[DocumentInfo(name="a.pdf", content_type="application/pdf", size=10)],
        pages=pages,
        recipients=recipients,
    )


class Fax:
    """A fax driven through the lifecycle the way JobStore.update does, without Redis."""

    def __init__(self, status: FaxStatus) -> None:
        self.status = status
        self.last: Draft | None = None
        self.draft_transitions: list = []

    def step(self, change: Callable[[Draft], list[Effect]]) -> list[Effect]:
        draft = Draft(self.status)
        effects = change(draft)
        summary = states.summarise([r.state for r in draft.status.recipients])
        if summary != draft.status.state:
            draft.set(state=summary)
        self.status = draft.status
        self.last = draft
        self.draft_transitions += draft.transitions
        return effects

    def r(self, index: int = 0) -> RecipientStatus:
        return self.status.recipients[index]


def progress(
    seq: int,
    phase: str,
    *,
    attempt: int = 1,
    page: int | None = None,
    confirmed: int = 0,
    recipient: int = 0,
) -> AttemptProgress:
    return AttemptProgress(
        job_id="fx_test",
        recipient=recipient,
        attempt=attempt,
        seq=seq,
        site="lyon",
        line="lyon-1",
        phase=phase,  # type: ignore[arg-type]
        page=page,
        pages_confirmed=confirmed,
        at=now(),
    )


def result(
    seq: int,
    *,
    ok: bool,
    confirmed: int,
    attempt: int = 1,
    connected: bool = True,
    cause: Cause | None = None,
    recipient: int = 0,
) -> AttemptResult:
    return AttemptResult(
        job_id="fx_test",
        recipient=recipient,
        attempt=attempt,
        seq=seq,
        site="lyon",
        line="lyon-1",
        ok=ok,
        pages_confirmed=confirmed,
        connected=connected,
        cause=cause,
        remote_id="REMOTE" if ok else None,
        at=now(),
    )


def routed(lc: Lifecycle, fax: Fax, *, pages: int = 3, attempt: int = 1) -> None:
    """Bring a fax from submitted to queued at lyon."""
    fax.step(lc.start)
    fax.step(lambda d: lc.on_render_done(d, RenderDone(job_id="fx_test", pages=pages, at=now())))
    for r in fax.status.recipients:
        fax.step(
            lambda d, i=r.index: lc.on_routed(
                d, Routed(job_id="fx_test", recipient=i, attempt=attempt, site="lyon", at=now())
            )
        )


def of_type(effects: list[Effect], kind: type) -> list:
    return [e for e in effects if isinstance(e, kind)]


# -- submission and rendering -----------------------------------------------------------


def test_start_goes_to_rendering(lc: Lifecycle) -> None:
    fax = Fax(make_fax(2))
    effects = fax.step(lc.start)
    assert [r.state for r in fax.status.recipients] == [S.RENDERING, S.RENDERING]
    assert fax.status.state == S.RENDERING
    renders = of_type(effects, Render)
    assert len(renders) == 1
    order = renders[0].order
    assert order.job_id == "fx_test"
    assert order.documents == 1
    assert order.priority == 7
    assert order.home_site == "paris"
    assert fax.last is not None
    assert [(t.from_state, t.to_state) for t in fax.last.transitions] == [
        (S.SUBMITTED, S.RENDERING)
    ] * 2


def test_render_done_routes_each_recipient(lc: Lifecycle) -> None:
    fax = Fax(make_fax(2))
    fax.step(lc.start)
    effects = fax.step(
        lambda d: lc.on_render_done(d, RenderDone(job_id="fx_test", pages=4, at=now()))
    )
    assert fax.status.pages == 4
    assert [r.state for r in fax.status.recipients] == [S.ROUTING, S.ROUTING]
    routes = of_type(effects, Route)
    assert [r.order.recipient for r in routes] == [0, 1]
    for route in routes:
        assert route.order.first_page == 1
        assert route.order.attempt == 1
        assert route.order.pages == 4
        assert route.order.priority == 7
        assert route.order.tenant == "acme"
        assert route.order.number == fax.r(route.order.recipient).number
    assert all(fax.r(i).attempt == 1 for i in (0, 1))
    assert len(of_type(effects, Changed)) == 2
    assert fax.last is not None
    assert set(fax.last.watches) == {watch_member("fx_test", 0), watch_member("fx_test", 1)}
    assert all(v is not None for v in fax.last.watches.values())


def test_render_done_with_future_send_after_schedules(lc: Lifecycle) -> None:
    fax = Fax(make_fax(1, send_after_seconds=3600))
    fax.step(lc.start)
    effects = fax.step(
        lambda d: lc.on_render_done(d, RenderDone(job_id="fx_test", pages=1, at=now()))
    )
    assert fax.r().state == S.SCHEDULED
    assert fax.r().next_try_at == fax.status.send_after
    assert not of_type(effects, Route)
    assert fax.last is not None
    assert fax.last.timers == {route_timer("fx_test", 0): fax.status.send_after.timestamp()}


def test_render_done_with_past_send_after_routes(lc: Lifecycle) -> None:
    fax = Fax(make_fax(1, send_after_seconds=-10))
    fax.step(lc.start)
    effects = fax.step(
        lambda d: lc.on_render_done(d, RenderDone(job_id="fx_test", pages=1, at=now()))
    )
    assert fax.r().state == S.ROUTING
    assert len(of_type(effects, Route)) == 1


# -- the call -----------------------------------------------------------------------------


def test_routed_then_progress_then_done(lc: Lifecycle) -> None:
    fax = Fax(make_fax(1))
    routed(lc, fax, pages=2)
    assert fax.r().state == S.QUEUED
    assert fax.r().site == "lyon"
    assert fax.last is not None
    # Queued at a site: watched, so a lost placement is routed again.
    deadline = fax.last.watches[watch_member("fx_test", 0)]
    assert deadline is not None
    assert 0 < deadline - now().timestamp() <= 60 * SCALE + 1

    fax.step(lambda d: lc.on_progress(d, progress(1, "dialing")))
    assert fax.r().state == S.DIALING
    assert fax.r().line == "lyon-1"
    assert fax.r().event_seq == 1

    fax.step(lambda d: lc.on_progress(d, progress(2, "page", page=1, confirmed=0)))
    assert fax.r().state == S.SENDING
    assert fax.r().page == 1
    fax.step(lambda d: lc.on_progress(d, progress(3, "page", page=2, confirmed=1)))
    assert fax.r().state == S.SENDING
    assert fax.r().page == 2
    assert fax.r().pages_confirmed == 1
    assert fax.last is not None
    assert fax.last.watches[watch_member("fx_test", 0)] is not None

    effects = fax.step(lambda d: lc.on_result(d, result(4, ok=True, confirmed=2)))
    assert fax.r().state == S.DONE
    assert fax.r().pages_confirmed == 2
    assert fax.r().remote_id == "REMOTE"
    assert fax.status.state == S.DONE
    assert of_type(effects, Notify) == [Notify("fx_test", S.DONE)]
    assert fax.last is not None
    assert fax.last.watches == {watch_member("fx_test", 0): None}


def test_routing_choice_and_call_start_are_kept(lc: Lifecycle) -> None:
    """The dispatcher's choice, with when it placed the fax and when the call started;
    also when the site reports dialling before the "routed" event arrives."""
    for early in (False, True):
        fax = Fax(make_fax(1))
        fax.step(lc.start)
        fax.step(lambda d: lc.on_render_done(d, RenderDone(job_id="fx_test", pages=1, at=now())))
        ev = Routed(
            job_id="fx_test",
            recipient=0,
            attempt=1,
            site="lyon",
            at=now(),
            cost="0.0123",
            currency="EUR",
            reason="cheapest able to start within 0s; paris, cheaper, had no free line in time",
            choice=RouteChoice.OVERFLOW,
        )
        if early:
            fax.step(lambda d: lc.on_progress(d, progress(1, "dialing")))
        fax.step(lambda d, ev=ev: lc.on_routed(d, ev))
        if not early:
            fax.step(lambda d: lc.on_progress(d, progress(1, "dialing")))
        r = fax.r()
        assert r.state == S.DIALING, early
        assert r.route_choice == RouteChoice.OVERFLOW and r.routed_at == ev.at
        assert r.route_reason == ev.reason and r.cost_estimate == "0.0123"
        assert r.queued_since is not None and r.call_started_at is not None
        if not early:
            queued = [t for t in fax.draft_transitions if t.to_state == S.QUEUED]
            assert queued[-1].detail == f"overflow: {ev.reason}"


def test_routed_for_an_older_attempt_is_ignored(lc: Lifecycle) -> None:
    fax = Fax(make_fax(1))
    fax.step(lc.start)
    fax.step(lambda d: lc.on_render_done(d, RenderDone(job_id="fx_test", pages=1, at=now())))
    before = fax.status
    effects = fax.step(
        lambda d: lc.on_routed(
            d, Routed(job_id="fx_test", recipient=0, attempt=0, site="lyon", at=now())
        )
    )
    assert effects == []
    assert fax.status == before


def test_ok_with_missing_pages_is_not_done(lc: Lifecycle) -> None:
    fax = Fax(make_fax(1))
    routed(lc, fax, pages=3)
    fax.step(lambda d: lc.on_progress(d, progress(1, "dialing")))
    fax.step(lambda d: lc.on_progress(d, progress(2, "page", page=1)))
    effects = fax.step(lambda d: lc.on_result(d, result(3, ok=True, confirmed=2)))
    assert fax.r().state == S.RETRY_SCHEDULED
    assert fax.r().cause == Cause.PROTOCOL_ERROR
    assert fax.r().tries == 1
    assert fax.r().pages_confirmed == 2
    assert fax.status.state != S.DONE
    assert not of_type(effects, Notify)


def test_ok_with_zero_pages_rendered_is_not_done(lc: Lifecycle) -> None:
    fax = Fax(make_fax(1))
    routed(lc, fax, pages=0)
    fax.step(lambda d: lc.on_progress(d, progress(1, "dialing")))
    fax.step(lambda d: lc.on_progress(d, progress(2, "page", page=1)))
    fax.step(lambda d: lc.on_result(d, result(3, ok=True, confirmed=0)))
    assert fax.r().state != S.DONE


@pytest.mark.parametrize(
    "stale",
    [
        progress(5, "page", attempt=0, page=3, confirmed=2),  # older attempt
        progress(2, "page", page=3, confirmed=2),  # seq not above the last one
        progress(1, "page", page=3, confirmed=2),
        result(2, ok=True, confirmed=3),
        result(9, ok=False, confirmed=0, attempt=0, cause=Cause.BUSY),
    ],
)
def test_stale_events_change_nothing(lc: Lifecycle, stale: AttemptProgress) -> None:
    fax = Fax(make_fax(1))
    routed(lc, fax, pages=3)
    fax.step(lambda d: lc.on_progress(d, progress(1, "dialing")))
    fax.step(lambda d: lc.on_progress(d, progress(2, "page", page=1)))
    before = fax.status
    if isinstance(stale, AttemptResult):
        effects = fax.step(lambda d: lc.on_result(d, stale))
    else:
        effects = fax.step(lambda d: lc.on_progress(d, stale))
    assert effects == []
    assert fax.status == before
    assert fax.last is not None
    assert fax.last.transitions == []
    assert fax.last.timers == {}
    assert fax.last.watches == {}


def test_events_after_done_change_nothing(lc: Lifecycle) -> None:
    fax = Fax(make_fax(1))
    routed(lc, fax, pages=1)
    fax.step(lambda d: lc.on_progress(d, progress(1, "dialing")))
    fax.step(lambda d: lc.on_progress(d, progress(2, "page", page=1)))
    fax.step(lambda d: lc.on_result(d, result(3, ok=True, confirmed=1)))
    before = fax.status
    assert fax.step(lambda d: lc.on_result(d, result(4, ok=False, confirmed=0))) == []
    assert fax.step(lambda d: lc.on_progress(d, progress(5, "page", page=1))) == []
    assert fax.status == before


def test_busy_is_retried_with_a_timer(lc: Lifecycle) -> None:
    fax = Fax(make_fax(1))
    routed(lc, fax, pages=1)
    fax.step(lambda d: lc.on_progress(d, progress(1, "dialing")))
    ev = result(2, ok=False, confirmed=0, connected=False, cause=Cause.BUSY)
    effects = fax.step(lambda d: lc.on_result(d, ev))
    r = fax.r()
    assert r.state == S.RETRY_SCHEDULED
    assert r.cause == Cause.BUSY
    assert r.dials == 1
    assert r.tries == 0
    expected = ev.at + timedelta(seconds=180 * SCALE)
    assert r.next_try_at == expected
    assert fax.last is not None
    assert fax.last.timers == {route_timer("fx_test", 0): expected.timestamp()}
    assert fax.last.watches == {watch_member("fx_test", 0): None}
    assert not of_type(effects, Notify)
    assert fax.status.state == S.RETRY_SCHEDULED


def test_busy_until_max_dials_fails_and_notifies(lc: Lifecycle) -> None:
    fax = Fax(make_fax(1))
    routed(lc, fax, pages=1)
    effects: list[Effect] = []
    for attempt in range(1, SETTINGS.max_dials + 1):
        if attempt > 1:
            effects = fax.step(lambda d: lc.on_route_timer(d, 0))
            assert of_type(effects, Route)[0].order.attempt == attempt
            fax.step(
                lambda d, a=attempt: lc.on_routed(
                    d, Routed(job_id="fx_test", recipient=0, attempt=a, site="lyon", at=now())
                )
            )
        fax.step(lambda d, a=attempt: lc.on_progress(d, progress(1, "dialing", attempt=a)))
        effects = fax.step(
            lambda d, a=attempt: lc.on_result(
                d, result(2, ok=False, confirmed=0, connected=False, cause=Cause.BUSY, attempt=a)
            )
        )
    assert fax.r().state == S.FAILED
    assert fax.r().cause == Cause.TOO_MANY_DIALS
    assert fax.r().dials == SETTINGS.max_dials
    assert of_type(effects, Notify) == [Notify("fx_test", S.FAILED)]


def test_second_not_a_fax_answer_fails_the_recipient(lc: Lifecycle) -> None:
    """retry.decide: a voice answer is retried once (NOT_A_FAX_LIMIT = 2), then final."""
    fax = Fax(make_fax(1))
    routed(lc, fax, pages=1)
    for attempt in (1, 2):
        if attempt > 1:
            fax.step(lambda d: lc.on_route_timer(d, 0))
            fax.step(
                lambda d, a=attempt: lc.on_routed(
                    d, Routed(job_id="fx_test", recipient=0, attempt=a, site="lyon", at=now())
                )
            )
        fax.step(lambda d, a=attempt: lc.on_progress(d, progress(1, "dialing", attempt=a)))
        fax.step(
            lambda d, a=attempt: lc.on_result(
                d, result(2, ok=False, confirmed=0, cause=Cause.NOT_A_FAX, attempt=a)
            )
        )
        if attempt == 1:
            assert fax.r().state == S.RETRY_SCHEDULED
    assert fax.r().state == S.FAILED
    assert fax.r().cause == Cause.NOT_A_FAX


def test_drop_after_page_two_resumes_at_page_three(lc: Lifecycle) -> None:
    fax = Fax(make_fax(1))
    routed(lc, fax, pages=5)
    fax.step(lambda d: lc.on_progress(d, progress(1, "dialing")))
    fax.step(lambda d: lc.on_progress(d, progress(2, "page", page=1, confirmed=0)))
    fax.step(lambda d: lc.on_progress(d, progress(3, "page", page=2, confirmed=1)))
    fax.step(lambda d: lc.on_progress(d, progress(4, "page", page=3, confirmed=2)))
    fax.step(
        lambda d: lc.on_result(d, result(5, ok=False, confirmed=2, cause=Cause.REMOTE_DISCONNECTED))
    )
    assert fax.r().state == S.RETRY_SCHEDULED
    assert fax.r().pages_confirmed == 2
    assert fax.r().tries == 1
    assert fax.r().dials == 0
    assert fax.r().page is None

    effects = fax.step(lambda d: lc.on_route_timer(d, 0))
    routes = of_type(effects, Route)
    assert len(routes) == 1
    assert routes[0].order.attempt == 2
    assert routes[0].order.first_page == 3
    assert routes[0].order.pages == 5
    assert fax.r().state == S.ROUTING
    assert fax.r().attempt == 2
    assert fax.r().event_seq == 0
    assert fax.r().pages_confirmed == 2
    assert fax.last is not None
    assert fax.last.timers == {route_timer("fx_test", 0): None}

    # The new attempt's events start again at seq 1 and are applied.
    fax.step(
        lambda d: lc.on_routed(
            d, Routed(job_id="fx_test", recipient=0, attempt=2, site="lyon", at=now())
        )
    )
    fax.step(lambda d: lc.on_progress(d, progress(1, "dialing", attempt=2)))
    assert fax.r().state == S.DIALING
    # A late event of attempt 1 is stale.
    assert fax.step(lambda d: lc.on_progress(d, progress(9, "page", page=4, confirmed=3))) == []
    assert fax.r().state == S.DIALING


def test_route_timer_ignored_unless_waiting(lc: Lifecycle) -> None:
    fax = Fax(make_fax(1))
    routed(lc, fax)
    before = fax.status
    assert fax.step(lambda d: lc.on_route_timer(d, 0)) == []
    assert fax.status == before


# -- watchdog -----------------------------------------------------------------------------


def test_watch_expired_while_sending_is_uncertain_then_settled_late(lc: Lifecycle) -> None:
    fax = Fax(make_fax(1))
    routed(lc, fax, pages=2)
    fax.step(lambda d: lc.on_progress(d, progress(1, "dialing")))
    fax.step(lambda d: lc.on_progress(d, progress(2, "page", page=2, confirmed=1)))

    effects = fax.step(lambda d: lc.on_watch_expired(d, 0))
    assert fax.r().state == S.OUTCOME_UNCERTAIN
    assert fax.r().cause == Cause.WORKER_LOST
    assert "lyon" in (fax.r().detail or "")
    assert fax.status.state == S.OUTCOME_UNCERTAIN
    assert of_type(effects, Notify) == [Notify("fx_test", S.OUTCOME_UNCERTAIN)]
    assert not of_type(effects, Route)  # never redialled automatically

    # progress of the lost attempt does not reopen it
    assert fax.step(lambda d: lc.on_progress(d, progress(3, "page", page=2, confirmed=1))) == []
    assert fax.r().state == S.OUTCOME_UNCERTAIN

    effects = fax.step(lambda d: lc.on_result(d, result(4, ok=True, confirmed=2)))
    assert fax.r().state == S.DONE
    assert fax.r().cause is None
    assert fax.status.state == S.DONE
    assert of_type(effects, Notify) == [Notify("fx_test", S.DONE)]  # the final outcome too


def test_watch_expired_while_dialing_is_uncertain(lc: Lifecycle) -> None:
    fax = Fax(make_fax(1))
    routed(lc, fax)
    fax.step(lambda d: lc.on_progress(d, progress(1, "dialing")))
    fax.step(lambda d: lc.on_watch_expired(d, 0))
    assert fax.r().state == S.OUTCOME_UNCERTAIN


def test_watch_expired_while_routing_resends_the_same_attempt(lc: Lifecycle) -> None:
    fax = Fax(make_fax(1))
    fax.step(lc.start)
    first = fax.step(
        lambda d: lc.on_render_done(d, RenderDone(job_id="fx_test", pages=2, at=now()))
    )
    effects = fax.step(lambda d: lc.on_watch_expired(d, 0))
    routes = of_type(effects, Route)
    assert len(routes) == 1
    assert routes[0].order == of_type(first, Route)[0].order
    assert routes[0].order.attempt == 1
    assert fax.r().state == S.ROUTING
    assert fax.r().attempt == 1
    assert fax.last is not None
    assert fax.last.transitions == []
    assert fax.last.watches[watch_member("fx_test", 0)] is not None


@pytest.mark.parametrize("state", [S.RETRY_SCHEDULED, S.DONE])
def test_watch_expired_elsewhere_does_nothing(lc: Lifecycle, state: JobState) -> None:
    fax = Fax(make_fax(recipient_states=[state], pages=1))
    before = fax.status
    assert fax.step(lambda d: lc.on_watch_expired(d, 0)) == []
    assert fax.status == before


# -- cancel and notification --------------------------------------------------------------


def test_cancel_leaves_calls_on_the_line_alone(lc: Lifecycle) -> None:
    fax = Fax(
        make_fax(
            recipient_states=[S.QUEUED, S.DIALING, S.SENDING, S.RETRY_SCHEDULED, S.DONE],
            pages=2,
        )
    )
    effects = fax.step(lc.cancel)
    assert [r.state for r in fax.status.recipients] == [
        S.CANCELLED,
        S.DIALING,
        S.SENDING,
        S.CANCELLED,
        S.DONE,
    ]
    assert fax.r(0).cause == Cause.CANCELLED
    assert fax.r(3).cause == Cause.CANCELLED
    assert sorted(c.recipient for c in of_type(effects, Changed)) == [0, 3]
    assert not of_type(effects, Notify)
    assert fax.last is not None
    assert fax.last.timers == {route_timer("fx_test", 0): None, route_timer("fx_test", 3): None}
    assert fax.last.watches == {
        watch_member("fx_test", 0): None,
        watch_member("fx_test", 3): None,
    }


def test_cancel_of_waiting_fax_notifies_once(lc: Lifecycle) -> None:
    fax = Fax(make_fax(recipient_states=[S.SCHEDULED, S.ROUTING], pages=1))
    effects = fax.step(lc.cancel)
    assert fax.status.state == S.CANCELLED
    assert of_type(effects, Notify) == [Notify("fx_test", S.CANCELLED)]
    assert fax.step(lc.cancel) == []


def test_site_reports_cancel_of_call_on_the_line(lc: Lifecycle) -> None:
    fax = Fax(make_fax(1))
    routed(lc, fax, pages=3)
    fax.step(lambda d: lc.on_progress(d, progress(1, "dialing")))
    fax.step(lambda d: lc.on_progress(d, progress(2, "page", page=1)))
    assert fax.step(lc.cancel) == []
    assert fax.r().state == S.SENDING
    effects = fax.step(
        lambda d: lc.on_result(d, result(3, ok=False, confirmed=1, cause=Cause.CANCELLED))
    )
    assert fax.r().state == S.CANCELLED
    assert of_type(effects, Notify) == [Notify("fx_test", S.CANCELLED)]


def test_notify_only_when_the_last_recipient_settles(lc: Lifecycle) -> None:
    fax = Fax(make_fax(2))
    routed(lc, fax, pages=1)
    notifies = []
    for i in (0, 1):
        fax.step(lambda d, i=i: lc.on_progress(d, progress(1, "dialing", recipient=i)))
        fax.step(lambda d, i=i: lc.on_progress(d, progress(2, "page", page=1, recipient=i)))
    effects = fax.step(lambda d: lc.on_watch_expired(d, 1))
    notifies.append(of_type(effects, Notify))
    effects = fax.step(lambda d: lc.on_result(d, result(3, ok=True, confirmed=1, recipient=0)))
    notifies.append(of_type(effects, Notify))
    assert fax.status.state == S.OUTCOME_UNCERTAIN
    effects = fax.step(lambda d: lc.on_result(d, result(3, ok=True, confirmed=1, recipient=1)))
    notifies.append(of_type(effects, Notify))
    assert fax.status.state == S.DONE
    assert notifies == [[], [Notify("fx_test", S.OUTCOME_UNCERTAIN)], [Notify("fx_test", S.DONE)]]


def test_dialing_before_the_routed_event_implies_queued(lc: Lifecycle) -> None:
    """The router pushes the order, then reports; a fast site may report dialing first."""
    fax = Fax(make_fax(1))
    fax.step(lc.start)
    fax.step(lambda d: lc.on_render_done(d, RenderDone(job_id="fx_test", pages=1, at=now())))
    assert fax.r().state == S.ROUTING
    fax.step(lambda d: lc.on_progress(d, progress(1, "dialing")))
    assert fax.r().state == S.DIALING
    assert fax.r().site == progress(1, "dialing").site
    late = Routed(job_id="fx_test", recipient=0, attempt=1, site="lyon", at=now())
    assert fax.step(lambda d: lc.on_routed(d, late)) == []
    assert fax.r().state == S.DIALING
    moves = [(t.from_state, t.to_state) for t in fax.draft_transitions if t.recipient == 0]
    assert (S.ROUTING, S.QUEUED) in moves and (S.QUEUED, S.DIALING) in moves


def test_requeued_fax_goes_back_to_routing_and_keeps_its_home(lc: Lifecycle) -> None:
    from faxfleet.messages import Requeued

    fax = Fax(make_fax(1))
    routed(lc, fax, pages=1)
    assert fax.r().state == S.QUEUED
    ev = Requeued(
        job_id="fx_test",
        recipient=0,
        attempt=1,
        site="lyon",
        detail="site lyon went down before starting it",
        at=now(),
    )
    fax.step(lambda d: lc.on_requeued(d, ev))
    assert fax.r().state == S.ROUTING and fax.r().attempt == 1
    assert "went down" in (fax.r().detail or "")
    # placed again elsewhere: same attempt, new site; the home site is unchanged
    fax.step(
        lambda d: lc.on_routed(
            d, Routed(job_id="fx_test", recipient=0, attempt=1, site="nice", at=now())
        )
    )
    assert fax.r().state == S.QUEUED and fax.r().site == "nice"
    assert fax.status.home_site == "paris"
    # a stale requeue for an older attempt changes nothing
    stale = Requeued(job_id="fx_test", recipient=0, attempt=0, site="nice", detail="x", at=now())
    assert fax.step(lambda d: lc.on_requeued(d, stale)) == []
