"""Resolving an uncertain outcome, as plain code: an operator confirms a fax as sent or
orders it sent again; every distinct settled outcome is notified."""

from __future__ import annotations

from datetime import timedelta

import pytest

from faxfleet.messages import (
    AttemptResult,
    Cause,
    DocumentInfo,
    FaxStatus,
    JobState,
    RecipientStatus,
    Resolution,
    Transition,
    now,
)
from faxfleet.settings import Settings
from scheduler import states
from scheduler.lifecycle import Changed, Effect, Lifecycle, Notify, NotResolvable, Route
from scheduler.notify import render_email
from scheduler.store import Draft, route_timer, watch_member

S = JobState
ADMIN = "admin (key 1a2b3c4d)"
BOB = "tenant acme (user bob, key 5e6f7a8b)"


@pytest.fixture
def lc() -> Lifecycle:
    return Lifecycle(Settings(time_scale=0.01, routing_stuck_after_seconds=60))


def uncertain_fax(*rstates: JobState, pages: int = 3, confirmed: int = 1) -> FaxStatus:
    """A fax whose recipients stand in ``rstates`` (default: one, outcome uncertain after
    ``confirmed`` of ``pages`` pages of attempt 1 at lyon)."""
    rstates = rstates or (S.OUTCOME_UNCERTAIN,)
    created = now()
    recipients = [
        RecipientStatus(
            index=i,
            number=f"+3314268530{i}",
            state=state,
            site="lyon",
            attempt=1,
            dials=1,
            pages_confirmed=pages if state == S.DONE else confirmed,
            cause=Cause.WORKER_LOST if state == S.OUTCOME_UNCERTAIN else None,
            detail="site lyon went silent during the call"
            if state == S.OUTCOME_UNCERTAIN
            else None,
            event_seq=4,
        )
        for i, state in enumerate(rstates)
    ]
    return FaxStatus(
        id="fx_test",
        tenant="acme",
        state=states.summarise(list(rstates)),
        priority=7,
        resolution=Resolution.FINE,
        home_site="paris",
        created_at=created,
        kill_at=created + timedelta(days=1),
        documents=[DocumentInfo(name="a.pdf", content_type="application/pdf", size=10)],
        pages=pages,
        recipients=recipients,
    )


class Fax:
    """Changes applied the way JobStore.update applies them, without Redis."""

    def __init__(self, status: FaxStatus) -> None:
        self.status = status
        self.last = Draft(status)
        self.log: list[Transition] = []

    def step(self, change) -> list[Effect]:
        draft = Draft(self.status)
        effects = change(draft)
        summary = states.summarise([r.state for r in draft.status.recipients])
        if summary != draft.status.state:
            draft.set(state=summary)
        self.status, self.last = draft.status, draft
        self.log += draft.transitions
        return effects

    def r(self, index: int = 0) -> RecipientStatus:
        return self.status.recipients[index]


def of_type(effects: list[Effect], kind: type) -> list:
    return [e for e in effects if isinstance(e, kind)]


def late_result(ok: bool, confirmed: int, *, attempt: int = 1, seq: int = 9) -> AttemptResult:
    return AttemptResult(
        job_id="fx_test",
        recipient=0,
        attempt=attempt,
        seq=seq,
        site="lyon",
        line="lyon-1",
        ok=ok,
        pages_confirmed=confirmed,
        connected=True,
        cause=None if ok else Cause.NOT_A_FAX,
        at=now(),
    )


# -- sent ---------------------------------------------------------------------------------


def test_sent_is_done_with_every_page_confirmed_by_the_operator(lc: Lifecycle) -> None:
    fax = Fax(uncertain_fax(confirmed=1))
    effects = fax.step(lambda d: lc.resolve(d, 0, "sent", BOB, "they have all 3 pages"))
    assert fax.r().state == S.DONE
    assert fax.status.state == S.DONE
    assert fax.r().pages_confirmed == 3  # done only ever with every page
    assert fax.r().cause is None
    [move] = fax.last.transitions
    assert (move.from_state, move.to_state, move.recipient) == (S.OUTCOME_UNCERTAIN, S.DONE, 0)
    assert move.detail == (
        "resolved as sent by tenant acme (user bob, key 5e6f7a8b): delivery confirmed by the "
        "operator, not by the far end (the far end confirmed 1 of 3 pages); "
        "note: they have all 3 pages"
    )
    assert fax.r().detail == move.detail
    assert of_type(effects, Changed) == [Changed("fx_test", 0, S.DONE, "lyon", None)]
    assert of_type(effects, Notify) == [Notify("fx_test", S.DONE)]
    assert not of_type(effects, Route)
    assert fax.last.watches == {watch_member("fx_test", 0): None}


def test_sent_without_a_recipient_resolves_every_uncertain_one(lc: Lifecycle) -> None:
    fax = Fax(uncertain_fax(S.OUTCOME_UNCERTAIN, S.DONE, S.OUTCOME_UNCERTAIN))
    effects = fax.step(lambda d: lc.resolve(d, None, "sent", ADMIN, None))
    assert [r.state for r in fax.status.recipients] == [S.DONE] * 3
    assert sorted(c.recipient for c in of_type(effects, Changed)) == [0, 2]
    assert [t.recipient for t in fax.last.transitions] == [0, 2]
    assert all(t.detail.startswith(f"resolved as sent by {ADMIN}:") for t in fax.last.transitions)
    assert of_type(effects, Notify) == [Notify("fx_test", S.DONE)]  # one for the fax


def test_one_of_two_uncertain_recipients_leaves_the_fax_uncertain(lc: Lifecycle) -> None:
    fax = Fax(uncertain_fax(S.OUTCOME_UNCERTAIN, S.OUTCOME_UNCERTAIN))
    effects = fax.step(lambda d: lc.resolve(d, 1, "sent", ADMIN, None))
    assert [r.state for r in fax.status.recipients] == [S.OUTCOME_UNCERTAIN, S.DONE]
    assert fax.status.state == S.OUTCOME_UNCERTAIN
    assert not of_type(effects, Notify)  # nothing new to tell: still uncertain
    effects = fax.step(lambda d: lc.resolve(d, 0, "sent", ADMIN, None))
    assert of_type(effects, Notify) == [Notify("fx_test", S.DONE)]


# -- resend -------------------------------------------------------------------------------


def test_resend_routes_a_new_attempt_from_the_first_unconfirmed_page(lc: Lifecycle) -> None:
    fax = Fax(uncertain_fax(pages=5, confirmed=2))
    effects = fax.step(lambda d: lc.resolve(d, 0, "resend", BOB, None))
    [route] = of_type(effects, Route)
    assert route.order.attempt == 2
    assert route.order.first_page == 3
    assert route.order.pages == 5
    assert fax.r().state == S.ROUTING
    assert fax.r().attempt == 2
    assert fax.r().event_seq == 0
    assert fax.r().pages_confirmed == 2
    [move] = fax.last.transitions
    assert (move.from_state, move.to_state) == (S.OUTCOME_UNCERTAIN, S.ROUTING)
    assert move.detail == (
        "resend ordered by tenant acme (user bob, key 5e6f7a8b), from page 3 "
        "(the far end confirmed 2 of 5 pages)"
    )
    assert fax.r().detail == move.detail
    assert not of_type(effects, Notify)  # not settled any more
    assert fax.last.watches[watch_member("fx_test", 0)] is not None
    assert fax.last.timers == {route_timer("fx_test", 0): None}


def test_resend_from_start_begins_at_page_one(lc: Lifecycle) -> None:
    fax = Fax(uncertain_fax(pages=5, confirmed=2))
    effects = fax.step(lambda d: lc.resolve(d, 0, "resend", ADMIN, "garbled", from_start=True))
    [route] = of_type(effects, Route)
    assert route.order.first_page == 1
    assert fax.r().pages_confirmed == 0
    assert fax.last.transitions[0].detail == (
        f"resend ordered by {ADMIN}, from page 1 (the far end confirmed 2 of 5 pages); "
        "note: garbled"
    )


def test_after_a_resend_the_lost_attempt_result_is_stale(lc: Lifecycle) -> None:
    fax = Fax(uncertain_fax(pages=3, confirmed=1))
    fax.step(lambda d: lc.resolve(d, 0, "resend", ADMIN, None))
    assert fax.step(lambda d: lc.on_result(d, late_result(True, 3, attempt=1))) == []
    assert fax.r().state == S.ROUTING


def test_from_start_goes_with_resend_only(lc: Lifecycle) -> None:
    fax = Fax(uncertain_fax())
    with pytest.raises(ValueError):
        fax.step(lambda d: lc.resolve(d, 0, "sent", ADMIN, None, from_start=True))
    assert fax.r().state == S.OUTCOME_UNCERTAIN


# -- only an uncertain outcome is resolved ------------------------------------------------


@pytest.mark.parametrize("state", [S.DONE, S.SENDING, S.FAILED, S.ROUTING, S.CANCELLED])
@pytest.mark.parametrize("outcome", ["sent", "resend"])
def test_a_recipient_not_uncertain_is_refused_with_its_state(
    lc: Lifecycle, state: JobState, outcome: str
) -> None:
    fax = Fax(uncertain_fax(state))
    before = fax.status
    with pytest.raises(NotResolvable) as refused:
        fax.step(lambda d: lc.resolve(d, 0, outcome, ADMIN, None))  # type: ignore[arg-type]
    assert refused.value.state == state
    assert f"recipient 0 of fax fx_test is {state.value}, not outcome_uncertain" == str(
        refused.value
    )
    assert fax.status == before


def test_a_fax_with_no_uncertain_recipient_is_refused_with_its_state(lc: Lifecycle) -> None:
    fax = Fax(uncertain_fax(S.DONE, S.FAILED))
    with pytest.raises(NotResolvable) as refused:
        fax.step(lambda d: lc.resolve(d, None, "sent", ADMIN, None))
    assert refused.value.state == S.FAILED
    assert "no recipient's outcome is uncertain" in str(refused.value)


def test_resolved_twice_is_refused(lc: Lifecycle) -> None:
    fax = Fax(uncertain_fax())
    fax.step(lambda d: lc.resolve(d, 0, "sent", ADMIN, None))
    with pytest.raises(NotResolvable):
        fax.step(lambda d: lc.resolve(d, 0, "sent", ADMIN, None))


# -- every distinct settled outcome is notified ---------------------------------------------


def test_late_result_after_uncertain_notifies_the_final_outcome(lc: Lifecycle) -> None:
    fax = Fax(uncertain_fax(pages=3, confirmed=1))
    effects = fax.step(lambda d: lc.on_result(d, late_result(True, 3)))
    assert fax.status.state == S.DONE
    assert of_type(effects, Notify) == [Notify("fx_test", S.DONE)]
    # The same result again (a redelivered event) is stale: no second notification.
    assert fax.step(lambda d: lc.on_result(d, late_result(True, 3))) == []


def test_late_final_failure_after_uncertain_notifies_failed(lc: Lifecycle) -> None:
    fax = Fax(uncertain_fax(pages=3, confirmed=1))
    fax.step(lambda d: d.set_recipient(0, not_a_fax=1))  # the second answer by a voice is final
    effects = fax.step(lambda d: lc.on_result(d, late_result(False, 1)))
    assert fax.status.state == S.FAILED
    assert of_type(effects, Notify) == [Notify("fx_test", S.FAILED)]


def test_cancel_of_an_uncertain_fax_notifies_cancelled(lc: Lifecycle) -> None:
    fax = Fax(uncertain_fax())
    effects = fax.step(lc.cancel)
    assert fax.status.state == S.CANCELLED
    assert of_type(effects, Notify) == [Notify("fx_test", S.CANCELLED)]


def test_mail_of_a_resolved_fax_states_the_final_outcome(lc: Lifecycle) -> None:
    fax = Fax(uncertain_fax(pages=3, confirmed=1))
    first = render_email(fax.status, "paris").get_content()
    assert "outcome uncertain" in first and "faxfleet resolve" in first
    fax.step(lambda d: lc.resolve(d, 0, "sent", BOB, None))
    mail = render_email(fax.status.model_copy(update={"history": fax.log}), "paris")
    assert mail["Subject"] == "Fax fx_test to +33142685300: delivered (3 pages)"
    body = mail.get_content()
    assert body.startswith("Fax fx_test: delivered\n")
    assert "reported as uncertain earlier; this is its final outcome" in body
    assert "resolved as sent by tenant acme (user bob" in body
