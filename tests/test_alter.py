"""Job control as plain code (no Redis): an operator alters a fax not yet on a line
(priority, send_after, kill time, numbers) and requeues a failed or uncertain one. Every
transition and every refusal, and what a lost, repeated or late message does."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from faxfleet.messages import (
    AttemptProgress,
    Cause,
    CoverFields,
    DocumentInfo,
    FaxStatus,
    JobState,
    PendingChange,
    RecipientStatus,
    RenderDone,
    Requeued,
    Resolution,
    Withdrawn,
    now,
)
from faxfleet.settings import Settings
from scheduler import states
from scheduler.lifecycle import (
    Alteration,
    BadAlteration,
    Changed,
    Lifecycle,
    NotAlterable,
    NotRequeueable,
    Route,
    Withdraw,
)
from scheduler.store import Draft, route_timer, watch_member
from tests.test_resolve import Fax, of_type

S = JobState
BOB = "tenant acme (user bob, key 5e6f7a8b)"
ADMIN = "admin (key 1a2b3c4d)"
OLD, NEW = "+33142685300", "+33142685399"


@pytest.fixture
def lc() -> Lifecycle:
    return Lifecycle(Settings(time_scale=0.01, routing_stuck_after_seconds=60))


def fax_in(
    *rstates: JobState,
    pages: int | None = 4,
    priority: int = 5,
    send_after: datetime | None = None,
    cover: bool = False,
    created_ago: timedelta = timedelta(minutes=10),
) -> FaxStatus:
    """A fax whose recipients (numbers OLD, then +3314268530<i>) stand in ``rstates``, on
    attempt 1 (attempt 0 before routing)."""
    created = now() - created_ago
    start = max(created, send_after or created)
    queued_since = now() - timedelta(minutes=5)
    recipients = []
    for i, state in enumerate(rstates):
        routed = state not in (S.SUBMITTED, S.RENDERING, S.SCHEDULED)
        recipients.append(
            RecipientStatus(
                index=i,
                number=OLD if i == 0 else f"+3314268530{i}",
                state=state,
                attempt=1 if routed else 0,
                site="paris" if state in (S.QUEUED, S.DIALING, S.SENDING) else None,
                queued_since=queued_since if state in (S.ROUTING, S.QUEUED) else None,
                dials=2 if state == S.FAILED else 0,
                tries=1 if state == S.FAILED else 0,
                pages_confirmed=1 if state in (S.FAILED, S.OUTCOME_UNCERTAIN) else 0,
                cause=Cause.TOO_MANY_DIALS if state == S.FAILED else None,
                next_try_at=now() + timedelta(minutes=5)
                if state in (S.SCHEDULED, S.RETRY_SCHEDULED)
                else None,
            )
        )
    return FaxStatus(
        id="fx_alter",
        tenant="acme",
        state=states.summarise(list(rstates)),
        priority=priority,
        resolution=Resolution.FINE,
        home_site="paris",
        created_at=created,
        send_after=send_after,
        kill_at=start + timedelta(hours=3),
        documents=[DocumentInfo(name="a.pdf", content_type="application/pdf", size=10)],
        pages=pages,
        recipients=recipients,
        cover=CoverFields(recipient_numbers=[OLD]) if cover else None,
    )


def notes(fax: Fax) -> list[str]:
    return [t.detail or "" for t in fax.log if t.recipient is None]


def withdrawn(taken_back: bool, *, attempt: int = 1, site: str | None = None) -> Withdrawn:
    return Withdrawn(
        job_id="fx_alter",
        recipient=0,
        attempt=attempt,
        taken_back=taken_back,
        site=site,
        detail=f"site {site} had already started it" if not taken_back else "taken back",
        at=now(),
    )


# -- priority ---------------------------------------------------------------------------


def test_a_new_priority_reorders_a_waiting_fax_through_its_route_order(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.ROUTING, priority=5))
    since = fax.r().queued_since
    effects = fax.step(lambda d: lc.alter(d, Alteration(priority=9, note="CEO waiting"), BOB))
    assert fax.status.priority == 9 and fax.status.revision == 1
    [route] = of_type(effects, Route)
    # The same attempt, its new priority and a higher revision: routing re-scores it in
    # place, keeping the time it has waited.
    assert (route.order.attempt, route.order.priority, route.order.revision) == (1, 9, 1)
    assert route.order.queued_since == since
    assert fax.r().state == S.ROUTING and fax.r().pending is None
    assert notes(fax) == [f"altered by {BOB}: priority 5 -> 9; note: CEO waiting"]


def test_each_change_of_priority_has_a_higher_revision(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.ROUTING, priority=5))
    fax.step(lambda d: lc.alter(d, Alteration(priority=9), BOB))
    [route] = of_type(fax.step(lambda d: lc.alter(d, Alteration(priority=1), BOB)), Route)
    assert (route.order.priority, route.order.revision) == (1, 2)


def test_a_priority_change_of_a_fax_handed_to_a_site_applies_to_its_later_orders(
    lc: Lifecycle,
) -> None:
    fax = Fax(fax_in(S.QUEUED, priority=5))
    assert of_type(fax.step(lambda d: lc.alter(d, Alteration(priority=8), BOB)), Route) == []
    assert fax.status.priority == 8
    # The site gives it back without starting it: its current order follows, so routing
    # has the new priority (the given-back copy carries the old one).
    back = Requeued(
        job_id="fx_alter", recipient=0, attempt=1, site="paris", detail="gone", at=now()
    )
    [route] = of_type(fax.step(lambda d: lc.on_requeued(d, back)), Route)
    assert (route.order.priority, route.order.revision) == (8, 1)


def test_an_unaltered_fax_given_back_sends_no_order_again(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.QUEUED))
    back = Requeued(
        job_id="fx_alter", recipient=0, attempt=1, site="paris", detail="gone", at=now()
    )
    assert of_type(fax.step(lambda d: lc.on_requeued(d, back)), Route) == []


def test_the_same_priority_changes_nothing(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.ROUTING, priority=5))
    assert fax.step(lambda d: lc.alter(d, Alteration(priority=5), BOB)) == []
    assert fax.status.revision == 0 and fax.log == []


# -- send_after and kill time -------------------------------------------------------------


def test_a_scheduled_fax_moves_its_timer_and_keeps_its_kill_time_length(lc: Lifecycle) -> None:
    later = now() + timedelta(hours=2)
    fax = Fax(fax_in(S.SCHEDULED, send_after=later))
    length = fax.status.kill_at - later
    new = now() + timedelta(hours=5)
    fax.step(lambda d: lc.alter(d, Alteration(send_after=new, send_after_set=True), BOB))
    assert fax.status.send_after == new
    assert fax.r().next_try_at == new
    assert fax.last.timers == {route_timer("fx_alter", 0): new.timestamp()}
    assert fax.status.kill_at == new + length
    [note] = notes(fax)
    assert note.startswith(f"altered by {BOB}: send_after ")
    assert "; kill time " in note


def test_send_after_null_sends_a_scheduled_fax_now(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.SCHEDULED, send_after=now() + timedelta(days=1)))
    before = now()
    fax.step(lambda d: lc.alter(d, Alteration(send_after=None, send_after_set=True), BOB))
    assert fax.status.send_after is None
    due = fax.last.timers[route_timer("fx_alter", 0)]
    assert before.timestamp() <= due <= now().timestamp()
    # ... and the timer routes it, with hours left to try
    [route] = of_type(fax.step(lambda d: lc.on_route_timer(d, 0)), Route)
    assert route.order.attempt == 1
    assert fax.status.kill_at > now() + timedelta(hours=2)


def test_send_after_moves_the_next_try_of_a_retry_scheduled_fax(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.RETRY_SCHEDULED))
    soon = now() + timedelta(seconds=30)
    fax.step(lambda d: lc.alter(d, Alteration(send_after=soon, send_after_set=True), BOB))
    assert fax.r().state == S.RETRY_SCHEDULED and fax.r().next_try_at == soon
    assert fax.last.timers == {route_timer("fx_alter", 0): soon.timestamp()}


def test_a_fax_not_rendered_yet_takes_its_new_send_after_once_rendered(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.RENDERING, pages=None))
    later = now() + timedelta(hours=1)
    effects = fax.step(
        lambda d: lc.alter(d, Alteration(send_after=later, send_after_set=True), BOB)
    )
    assert effects == [] and fax.r().state == S.RENDERING
    fax.step(lambda d: lc.on_render_done(d, RenderDone(job_id="fx_alter", pages=2, at=now())))
    assert fax.r().state == S.SCHEDULED
    assert fax.last.timers == {route_timer("fx_alter", 0): later.timestamp()}


def test_the_kill_time_counts_from_the_fax_start(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.RETRY_SCHEDULED, created_ago=timedelta(hours=1)))
    created = fax.status.created_at
    fax.step(lambda d: lc.alter(d, Alteration(kill_after_seconds=6 * 3600), ADMIN))
    assert fax.status.kill_at == created + timedelta(hours=6)
    assert notes(fax)[0].startswith(f"altered by {ADMIN}: kill time ")


def test_a_kill_time_already_past_is_refused(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.RETRY_SCHEDULED, created_ago=timedelta(hours=2)))
    with pytest.raises(BadAlteration, match="already past"):
        fax.step(lambda d: lc.alter(d, Alteration(kill_after_seconds=3600), BOB))


def test_a_kill_time_after_the_documents_expire_is_refused(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.SCHEDULED, send_after=now() + timedelta(days=1)))
    far = now() + timedelta(days=6, hours=22)
    with pytest.raises(BadAlteration, match="after its documents expire"):
        fax.step(lambda d: lc.alter(d, Alteration(send_after=far, send_after_set=True), BOB))
    with pytest.raises(BadAlteration, match="after its documents expire"):
        fax.step(lambda d: lc.alter(d, Alteration(kill_after_seconds=8 * 86400), BOB))


# -- numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize("state", [S.SUBMITTED, S.RENDERING, S.SCHEDULED, S.RETRY_SCHEDULED])
def test_a_number_changes_at_once_before_the_fax_waits_for_a_line(
    lc: Lifecycle, state: JobState
) -> None:
    fax = Fax(fax_in(state, pages=None if state in (S.SUBMITTED, S.RENDERING) else 4))
    effects = fax.step(lambda d: lc.alter(d, Alteration(numbers={OLD: NEW}), BOB))
    assert effects == [] and fax.r().number == NEW and fax.r().state == state
    assert notes(fax) == [f"altered by {BOB}: recipient 0: number {OLD} -> {NEW}"]
    if state == S.RETRY_SCHEDULED:
        [route] = of_type(fax.step(lambda d: lc.on_route_timer(d, 0)), Route)
        assert route.order.number == NEW


def test_a_waiting_fax_keeps_its_number_until_routing_has_taken_it_back(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.ROUTING))
    since = fax.r().queued_since
    effects = fax.step(lambda d: lc.alter(d, Alteration(numbers={OLD: NEW}), BOB))
    [withdraw] = of_type(effects, Withdraw)
    assert (withdraw.order.attempt, withdraw.order.home_site) == (1, "paris")
    assert fax.r().number == OLD and fax.r().state == S.ROUTING
    assert fax.r().pending == PendingChange(attempt=1, number=NEW, by=BOB, at=fax.r().pending.at)
    assert watch_member("fx_alter", 0) in fax.last.watches  # asked again if lost
    assert "once routing has taken it back (attempt 1)" in notes(fax)[0]

    effects = fax.step(lambda d: lc.on_withdrawn(d, withdrawn(True)))
    [route] = of_type(effects, Route)
    # A new attempt (routing keeps the old one withdrawn) to the new number, in the place
    # the fax had.
    assert (route.order.attempt, route.order.number) == (2, NEW)
    assert route.order.queued_since == since
    assert fax.r().number == NEW and fax.r().pending is None and fax.r().attempt == 2
    assert any(f"number {OLD} -> {NEW} as asked by {BOB}" in n for n in notes(fax))

    # The answer again (a redelivered event) changes nothing.
    assert fax.step(lambda d: lc.on_withdrawn(d, withdrawn(True))) == []
    assert fax.r().attempt == 2


def test_a_fax_handed_to_a_site_and_taken_back_waits_again_as_a_new_attempt(
    lc: Lifecycle,
) -> None:
    fax = Fax(fax_in(S.QUEUED))
    fax.step(lambda d: lc.alter(d, Alteration(numbers={OLD: NEW}), BOB))
    effects = fax.step(lambda d: lc.on_withdrawn(d, withdrawn(True, site="paris")))
    [route] = of_type(effects, Route)
    assert (route.order.attempt, route.order.number) == (2, NEW)
    [move] = [t for t in fax.log if t.recipient == 0]
    assert (move.from_state, move.to_state) == (S.QUEUED, S.ROUTING)
    assert "taken back from site paris" in (move.detail or "")


def test_a_change_too_late_for_a_started_call_is_not_applied(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.QUEUED))
    fax.step(lambda d: lc.alter(d, Alteration(numbers={OLD: NEW}), BOB))
    assert fax.step(lambda d: lc.on_withdrawn(d, withdrawn(False, site="paris"))) == []
    assert fax.r().number == OLD and fax.r().pending is None
    assert notes(fax)[-1] == (
        f"recipient 0: number -> {NEW} asked by {BOB} not applied: "
        "site paris had already started it"
    )


def test_a_pending_change_lapses_when_the_call_starts(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.QUEUED))
    fax.step(lambda d: lc.alter(d, Alteration(numbers={OLD: NEW}), BOB))
    dialing = AttemptProgress(
        job_id="fx_alter",
        recipient=0,
        attempt=1,
        seq=1,
        site="paris",
        line="paris-1",
        phase="dialing",
        at=now(),
    )
    fax.step(lambda d: lc.on_progress(d, dialing))
    assert fax.r().state == S.DIALING and fax.r().pending is None and fax.r().number == OLD
    assert notes(fax)[-1].endswith("not applied: it went to dialing first")
    # routing's late answer finds nothing to do
    assert fax.step(lambda d: lc.on_withdrawn(d, withdrawn(False, site="paris"))) == []


def test_a_lost_withdrawal_is_asked_again_by_the_watchdog(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.ROUTING))
    fax.step(lambda d: lc.alter(d, Alteration(numbers={OLD: NEW}), BOB))
    [withdraw] = fax.step(lambda d: lc.on_watch_expired(d, 0))
    assert isinstance(withdraw, Withdraw) and withdraw.order.attempt == 1
    assert fax.r().pending is not None


def test_a_second_change_while_one_is_pending_merges_with_it(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.ROUTING))
    fax.step(lambda d: lc.alter(d, Alteration(numbers={OLD: NEW}), BOB))
    later = now() + timedelta(hours=1)
    fax.step(lambda d: lc.alter(d, Alteration(send_after=later, send_after_set=True), ADMIN))
    pending = fax.r().pending
    assert (pending.number, pending.send_after, pending.by) == (NEW, later, ADMIN)


def test_a_waiting_fax_postponed_waits_in_scheduled_once_taken_back(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.ROUTING))
    later = now() + timedelta(hours=1)
    fax.step(lambda d: lc.alter(d, Alteration(send_after=later, send_after_set=True), BOB))
    assert fax.r().state == S.ROUTING and fax.r().pending.send_after == later
    effects = fax.step(lambda d: lc.on_withdrawn(d, withdrawn(True)))
    assert of_type(effects, Route) == [] and of_type(effects, Changed)
    assert fax.r().state == S.SCHEDULED and fax.r().next_try_at == later
    assert fax.last.timers == {route_timer("fx_alter", 0): later.timestamp()}
    assert fax.last.watches == {watch_member("fx_alter", 0): None}


def test_send_after_now_leaves_a_waiting_fax_where_it_is(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.ROUTING))
    effects = fax.step(lambda d: lc.alter(d, Alteration(send_after_set=True), BOB))
    assert of_type(effects, Withdraw) == [] and fax.r().pending is None


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state", [S.DIALING, S.SENDING, S.DONE, S.FAILED, S.CANCELLED, S.OUTCOME_UNCERTAIN]
)
def test_a_fax_on_a_line_or_settled_cannot_be_altered(lc: Lifecycle, state: JobState) -> None:
    fax = Fax(fax_in(state))
    with pytest.raises(NotAlterable, match=f"fax fx_alter is {state.value}: only a fax not yet"):
        fax.step(lambda d: lc.alter(d, Alteration(priority=9), BOB))
    with pytest.raises(NotAlterable):
        fax.step(lambda d: lc.alter(d, Alteration(numbers={OLD: NEW}), BOB))


def test_only_a_recipient_not_on_a_line_changes_its_number(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.SENDING, S.RETRY_SCHEDULED))
    with pytest.raises(NotAlterable, match="recipient 0 of fax fx_alter is sending"):
        fax.step(lambda d: lc.alter(d, Alteration(numbers={OLD: NEW}), BOB))
    # the fax itself can still be altered for its waiting recipient
    fax.step(lambda d: lc.alter(d, Alteration(numbers={"+33142685301": NEW}, priority=7), BOB))
    assert fax.status.recipients[1].number == NEW and fax.status.priority == 7
    assert fax.r().number == OLD


def test_a_fax_with_a_cover_page_keeps_its_numbers(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.SCHEDULED, cover=True))
    with pytest.raises(NotAlterable, match="has a cover page"):
        fax.step(lambda d: lc.alter(d, Alteration(numbers={OLD: NEW}), BOB))
    fax.step(lambda d: lc.alter(d, Alteration(priority=2), BOB))  # anything else goes


def test_a_number_the_fax_does_not_have_is_refused(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.SCHEDULED))
    with pytest.raises(BadAlteration, match="has no recipient \\+33100000000"):
        fax.step(lambda d: lc.alter(d, Alteration(numbers={"+33100000000": NEW}), BOB))


# -- requeue ------------------------------------------------------------------------------


def test_a_failed_fax_is_requeued_from_its_first_unconfirmed_page(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.FAILED, created_ago=timedelta(hours=4)))
    assert fax.status.kill_at < now()
    effects = fax.step(lambda d: lc.requeue(d, None, ADMIN, "line fixed"))
    [route] = of_type(effects, Route)
    r = fax.r()
    assert (route.order.attempt, route.order.first_page) == (2, 2)
    assert r.state == S.ROUTING and (r.dials, r.tries, r.cause) == (0, 0, None)
    assert fax.last.reopened == {S.FAILED}
    # at least the fax's own 3 hours to go again
    assert fax.status.kill_at >= now() + timedelta(hours=2, minutes=59)
    [move] = [t for t in fax.log if t.recipient == 0]
    assert (move.from_state, move.to_state) == (S.FAILED, S.ROUTING)
    assert move.detail == (
        f"requeued by {ADMIN} after too_many_dials, from page 2 (the far end confirmed 1 of "
        "4 pages); note: line fixed"
    )


def test_a_requeue_from_the_start_and_with_its_own_kill_time(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.FAILED))
    [route] = of_type(
        fax.step(lambda d: lc.requeue(d, 0, BOB, from_start=True, kill_after_seconds=86400)),
        Route,
    )
    assert route.order.first_page == 1
    assert fax.status.kill_at >= now() + timedelta(hours=23, minutes=59)


def test_an_uncertain_fax_is_requeued_as_a_resend(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.OUTCOME_UNCERTAIN))
    [route] = of_type(fax.step(lambda d: lc.requeue(d, None, BOB)), Route)
    assert (route.order.attempt, route.order.first_page) == (2, 2)
    [move] = [t for t in fax.log if t.recipient == 0]
    assert move.detail.startswith(f"resend ordered by {BOB}, from page 2")
    assert fax.last.reopened == set()


def test_only_the_failed_and_uncertain_recipients_are_requeued(lc: Lifecycle) -> None:
    fax = Fax(fax_in(S.DONE, S.FAILED, S.OUTCOME_UNCERTAIN))
    routes = of_type(fax.step(lambda d: lc.requeue(d, None, BOB)), Route)
    assert sorted(r.order.recipient for r in routes) == [1, 2]
    assert [r.state for r in fax.status.recipients] == [S.DONE, S.ROUTING, S.ROUTING]


@pytest.mark.parametrize("state", [S.DONE, S.CANCELLED, S.SENDING, S.ROUTING, S.SCHEDULED])
def test_nothing_else_is_requeued(lc: Lifecycle, state: JobState) -> None:
    fax = Fax(fax_in(state))
    with pytest.raises(NotRequeueable, match="no recipient failed or has an uncertain"):
        fax.step(lambda d: lc.requeue(d, None, BOB))
    with pytest.raises(NotRequeueable, match=f"recipient 0 of fax fx_alter is {state.value}"):
        fax.step(lambda d: lc.requeue(d, 0, BOB))


@pytest.mark.parametrize("cause", [Cause.RENDER_ERROR, Cause.QUOTA_EXCEEDED])
def test_a_fax_that_failed_before_any_call_is_not_requeued(lc: Lifecycle, cause: Cause) -> None:
    status = fax_in(S.FAILED)
    status = status.model_copy(
        update={"recipients": [status.recipients[0].model_copy(update={"cause": cause})]}
    )
    with pytest.raises(NotRequeueable, match=f"failed before any call \\({cause.value}\\)"):
        Fax(status).step(lambda d: lc.requeue(d, None, BOB))


def test_failed_leaves_its_final_state_only_by_a_requeue() -> None:
    draft = Draft(fax_in(S.FAILED))
    with pytest.raises(states.IllegalTransition):
        draft.move(0, S.ROUTING)
    draft.move(0, S.ROUTING, requeue=True)
    assert states.is_final(S.FAILED)
    for final in (S.DONE, S.CANCELLED):
        with pytest.raises(states.IllegalTransition):
            Draft(fax_in(final)).move(0, S.ROUTING, requeue=True)
