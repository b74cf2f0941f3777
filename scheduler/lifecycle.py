"""How a fax moves: events and timers in, state changes and follow-up work out.

Every function here changes a :class:`~scheduler.store.Draft` (inside a store
transaction) and returns the work to do once the change is stored (:data:`Effect`).
Nothing here sends a message or touches Redis, so the lifecycle is tested as plain code;
``scheduler.tasks`` performs the effects.

Ordering: events of one attempt carry ``seq``; an event of an older attempt, or with a
``seq`` not above the last one applied, is stale and changes nothing. All events of a fax
go to its home site's event queue; several event workers may apply them, so every
handler also checks the state it moves from (a "routed" after the site's "dialing", a
"requeued" before its "routed", a lease notice after the result all change nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from faxfleet.messages import (
    SETTLED_STATES,
    AttemptProgress,
    AttemptResult,
    Cause,
    HolderDead,
    JobState,
    LeaseLost,
    RenderDone,
    RenderFailed,
    RenderOrder,
    Requeued,
    Routed,
    RouteOrder,
    Unroutable,
    now,
)
from faxfleet.settings import Settings
from scheduler import retry, states
from scheduler.store import Draft, NotAllowed, route_timer, watch_member

S = JobState


@dataclass(frozen=True)
class Route:
    order: RouteOrder


@dataclass(frozen=True)
class Render:
    order: RenderOrder


@dataclass(frozen=True)
class Notify:
    """The fax settled in ``state``: tell the user (once per fax and settled state)."""

    job_id: str
    state: JobState


@dataclass(frozen=True)
class Changed:
    """A recipient changed state (published as a monitoring event)."""

    job_id: str
    recipient: int
    state: JobState
    site: str | None
    line: str | None


Effect = Route | Render | Notify | Changed

MAX_RENDERS = 3
"""Times the watchdog finds a fax not rendered in time before it gives up on it (it
starts rendering again the times before)."""

ResolveOutcome = Literal["sent", "resend"]
"""An operator's decision on a recipient whose outcome is uncertain (:meth:`Lifecycle.resolve`)."""


class NotResolvable(Exception):
    """Only a recipient in ``outcome_uncertain`` can be resolved; ``state`` is where the
    recipient (or, with no recipient named, the fax) stands."""

    def __init__(self, message: str, state: JobState) -> None:
        super().__init__(message)
        self.state = state


class Lifecycle:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.rules = retry.RetryRules.from_settings(settings)

    # -- helpers ------------------------------------------------------------------------

    def _changed(self, draft: Draft, index: int) -> Changed:
        r = draft.recipient(index)
        return Changed(draft.status.id, index, r.state, r.site, r.line)

    def _route(
        self,
        draft: Draft,
        index: int,
        *,
        new_attempt: bool,
        at: datetime,
        keep_place: bool = False,
        detail: str | None = None,
    ) -> Route:
        """Put recipient ``index`` into routing and return the order for the router.

        ``keep_place``: the fax goes on waiting where it waited before (given back by a
        site, or its call lost with its worker): same place in the queue, same promise."""
        r = draft.recipient(index)
        attempt = r.attempt + 1 if new_attempt else r.attempt
        queued_since = (r.queued_since or at) if keep_place else at
        if r.state != S.ROUTING:
            draft.move(
                index,
                S.ROUTING,
                attempt=attempt,
                next_try_at=None,
                event_seq=0,
                at=at,
                queued_since=queued_since,
                detail=detail,
            )
        else:
            draft.set_recipient(index, queued_since=queued_since)
        draft.set_timer(route_timer(draft.status.id, index), None)
        deadline = at + timedelta(seconds=self.s.scaled(self.s.routing_stuck_after_seconds))
        draft.set_watch(watch_member(draft.status.id, index), deadline)
        return self._order(draft, index)

    @staticmethod
    def _order(draft: Draft, index: int) -> Route:
        """The route order for recipient ``index``'s current attempt."""
        fax = draft.status
        r = draft.recipient(index)
        return Route(
            RouteOrder(
                job_id=fax.id,
                recipient=index,
                attempt=r.attempt,
                number=r.number,
                pages=fax.pages or 0,
                first_page=r.pages_confirmed + 1,
                priority=fax.priority,
                home_site=fax.home_site,
                tenant=fax.tenant,
                sender=fax.sender,
                header=fax.header,
                queued_since=r.queued_since,
            )
        )

    def _settled(self, before: JobState, draft: Draft) -> list[Effect]:
        """Notify when the fax settles, and again when it settles differently: a fax whose
        outcome was uncertain is notified once more with its final outcome (a late result
        from the site, an operator's resolve or cancel)."""
        after = states.summarise([r.state for r in draft.status.recipients])
        if after in SETTLED_STATES and after != before:
            return [Notify(draft.status.id, after)]
        return []

    def _fail_or_retry(
        self,
        draft: Draft,
        index: int,
        cause: Cause,
        detail: str | None,
        *,
        connected: bool,
        at: datetime,
        site: str | None = None,
        line: str | None = None,
        count: bool = True,
    ) -> None:
        r = draft.recipient(index)
        dials, tries = r.dials, r.tries
        not_a_fax = r.not_a_fax + (1 if cause == Cause.NOT_A_FAX else 0)
        if count:
            if retry.counts_as_dial(cause, connected):
                dials += 1
            else:
                tries += 1
        decision = retry.decide(
            cause, retry.Counters(dials, tries, not_a_fax), at, draft.status.kill_at, self.rules
        )
        draft.set_watch(watch_member(draft.status.id, index), None)
        if decision.retry_at is None:
            draft.move(
                index,
                S.FAILED,
                cause=decision.final_cause,
                at=at,
                site=site,
                line=line,
                detail=decision.detail or detail,
                dials=dials,
                tries=tries,
                not_a_fax=not_a_fax,
                page=None,
            )
            return
        draft.move(
            index,
            S.RETRY_SCHEDULED,
            cause=cause,
            detail=detail,
            at=at,
            site=site,
            line=line,
            dials=dials,
            tries=tries,
            next_try_at=decision.retry_at,
            not_a_fax=not_a_fax,
            page=None,
        )
        draft.set_timer(route_timer(draft.status.id, index), decision.retry_at)

    def _watch_render(self, draft: Draft) -> None:
        """A fax not rendered in time is started again (its render order was lost, or the
        renderer died): the watch sits on recipient 0 while the fax renders."""
        deadline = now() + timedelta(seconds=self.s.render_watch_seconds)
        draft.set_watch(watch_member(draft.status.id, 0), deadline)

    def _watch_queue(self, draft: Draft, index: int, at: datetime) -> None:
        deadline = at + timedelta(seconds=self.s.scaled(self.s.routing_stuck_after_seconds))
        draft.set_watch(watch_member(draft.status.id, index), max(deadline, now()))

    # -- submission -------------------------------------------------------------------

    def start(self, draft: Draft) -> list[Effect]:
        """A stored submission goes to rendering."""
        fax = draft.status
        for r in fax.recipients:
            if r.state == S.SUBMITTED:
                draft.move(r.index, S.RENDERING)
        self._watch_render(draft)
        return [
            Render(
                RenderOrder(
                    job_id=fax.id,
                    home_site=fax.home_site,
                    documents=len(fax.documents),
                    resolution=fax.resolution,
                    priority=fax.priority,
                    tenant=fax.tenant,
                    cover=fax.cover,
                )
            )
        ]

    # -- events -----------------------------------------------------------------------

    def on_render_done(
        self, draft: Draft, ev: RenderDone, over_quota: str | None = None
    ) -> list[Effect]:
        """Rendered: route (or schedule) each recipient. ``over_quota``: why the fax's true
        size does not fit its tenant's daily page quota (``scheduler.allowance``); then
        it fails before any call."""
        rendering = any(r.state == S.RENDERING for r in draft.status.recipients)
        if over_quota is not None and rendering:
            return self._fail_rendering(draft, Cause.QUOTA_EXCEEDED, over_quota, ev.at, ev.pages)
        effects: list[Effect] = []
        draft.set(pages=ev.pages)
        at = ev.at
        for r in draft.status.recipients:
            if r.state != S.RENDERING:
                continue
            send_after = draft.status.send_after
            if send_after and send_after > now():
                draft.move(r.index, S.SCHEDULED, next_try_at=send_after, at=at)
                draft.set_timer(route_timer(draft.status.id, r.index), send_after)
            else:
                effects.append(self._route(draft, r.index, new_attempt=True, at=at))
            effects.append(self._changed(draft, r.index))
        return effects

    def on_render_failed(self, draft: Draft, ev: RenderFailed) -> list[Effect]:
        return self._fail_rendering(draft, Cause.RENDER_ERROR, ev.detail, ev.at)

    def _fail_rendering(
        self, draft: Draft, cause: Cause, detail: str, at: datetime, pages: int | None = None
    ) -> list[Effect]:
        before = draft.status.state
        effects: list[Effect] = []
        if pages is not None:
            draft.set(pages=pages)
        for r in draft.status.recipients:
            if r.state == S.RENDERING:
                draft.move(r.index, S.FAILED, cause=cause, detail=detail, at=at)
                effects.append(self._changed(draft, r.index))
        draft.set(cause=cause, detail=detail)
        return effects + self._settled(before, draft)

    def on_routed(self, draft: Draft, ev: Routed) -> list[Effect]:
        r = draft.recipient(ev.recipient)
        if r.attempt != ev.attempt:
            return []
        if r.state == S.QUEUED and r.site != ev.site:
            # Handed out again (given back by another site, events applied out of order).
            draft.set_recipient(ev.recipient, site=ev.site)
            draft.note(f"handed to {ev.site}", site=ev.site)
            return []
        if r.state != S.ROUTING:
            return []
        draft.move(
            ev.recipient,
            S.QUEUED,
            site=ev.site,
            at=ev.at,
            detail=ev.reason,
            cost_estimate=ev.cost,
            currency=ev.currency,
        )
        # A site that never starts it gives it back (dispatcher); should that word be
        # lost, the watch re-sends the route order, which is ignored while it is placed.
        self._watch_queue(draft, ev.recipient, ev.at)
        return [self._changed(draft, ev.recipient)]

    def on_requeued(self, draft: Draft, ev: Requeued) -> list[Effect]:
        r = draft.recipient(ev.recipient)
        if r.attempt != ev.attempt:
            return []
        if r.state == S.ROUTING:  # applied before its "routed": note it, nothing moves
            draft.note(ev.detail, site=ev.site)
            return []
        if r.state != S.QUEUED:
            return []
        draft.move(ev.recipient, S.ROUTING, detail=ev.detail, at=ev.at)
        self._watch_queue(draft, ev.recipient, ev.at)
        return [self._changed(draft, ev.recipient)]

    def on_lease_lost(self, draft: Draft, ev: LeaseLost) -> list[Effect]:
        """The worker that started this attempt stopped renewing its lease: dead, hung,
        paused or cut off, nobody can tell yet. Nothing is sent again on that alone (a
        cut-off site may still be on the call): the history says so and the watchdog is
        set, so the attempt ends in its own result, in :meth:`on_holder_dead`, or, after
        ``stuck_after_seconds``, in ``outcome_uncertain``."""
        r = draft.recipient(ev.recipient)
        if r.attempt != ev.attempt or r.state not in (S.QUEUED, S.DIALING, S.SENDING):
            return []
        draft.note(f"{ev.detail}; waiting for its result or proof it is gone", site=ev.site)
        deadline = ev.at + timedelta(seconds=self.s.scaled(self.s.stuck_after_seconds))
        draft.set_watch(watch_member(draft.status.id, ev.recipient), max(deadline, now()))
        return []

    def on_holder_dead(self, draft: Draft, ev: HolderDead) -> list[Effect]:
        """The worker that held this attempt is proven gone, and its call with it.

        Not yet on a page (queued, dialing): nothing reached the far end, so the fax is
        routed again at once, keeping its place. On a page before the last: sent again
        from the first unconfirmed page (the far end may get that one page twice),
        counted as a try. On the last page: the far end may hold the whole fax, so the
        outcome is uncertain and never redialled automatically."""
        r = draft.recipient(ev.recipient)
        active = (S.QUEUED, S.DIALING, S.SENDING, S.OUTCOME_UNCERTAIN)
        if r.attempt != ev.attempt or r.state not in active:
            return []
        if r.state == S.OUTCOME_UNCERTAIN and r.cause != Cause.WORKER_LOST:
            return []
        before = draft.status.state
        idx = ev.recipient
        pages = draft.status.pages or 0
        on_a_page = r.page is not None and r.state in (S.SENDING, S.OUTCOME_UNCERTAIN)
        gone = f"the worker on site {ev.site} that held the call is gone ({ev.worker})"
        if on_a_page and (r.page or 0) >= pages:
            if r.state != S.OUTCOME_UNCERTAIN:
                draft.set_watch(watch_member(draft.status.id, idx), None)
                draft.move(
                    idx,
                    S.OUTCOME_UNCERTAIN,
                    cause=Cause.WORKER_LOST,
                    at=ev.at,
                    site=ev.site,
                    detail=(
                        f"{gone} on the last page ({r.pages_confirmed} of {pages} pages "
                        "confirmed); not redialled automatically"
                    ),
                )
                return [self._changed(draft, idx), *self._settled(before, draft)]
            return []
        tries = r.tries + (1 if on_a_page else 0)
        if on_a_page and tries >= self.s.max_tries:
            draft.set_watch(watch_member(draft.status.id, idx), None)
            draft.move(
                idx,
                S.FAILED,
                cause=Cause.WORKER_LOST,
                at=ev.at,
                site=ev.site,
                tries=tries,
                detail=f"{gone}; {tries} tries used",
            )
            return [self._changed(draft, idx), *self._settled(before, draft)]
        draft.set_recipient(idx, tries=tries)
        where = f"from page {r.pages_confirmed + 1}" if r.pages_confirmed else "from the start"
        route = self._route(
            draft,
            idx,
            new_attempt=True,
            at=ev.at,
            keep_place=True,
            detail=f"{gone}; sending again {where}, keeping its place",
        )
        return [route, self._changed(draft, idx)]

    def on_unroutable(self, draft: Draft, ev: Unroutable) -> list[Effect]:
        r = draft.recipient(ev.recipient)
        if r.attempt != ev.attempt or r.state != S.ROUTING:
            return []
        before = draft.status.state
        final = ev.cause in retry.FINAL_CAUSES
        if final:
            draft.set_watch(watch_member(draft.status.id, ev.recipient), None)
            draft.move(ev.recipient, S.FAILED, cause=ev.cause, detail=ev.detail, at=ev.at)
        else:
            # No site could take it: wait and route again, without spending a dial.
            self._fail_or_retry(
                draft, ev.recipient, ev.cause, ev.detail, connected=False, at=ev.at, count=False
            )
        return [self._changed(draft, ev.recipient), *self._settled(before, draft)]

    def _current(self, draft: Draft, ev: AttemptProgress | AttemptResult) -> bool:
        r = draft.recipient(ev.recipient)
        if r.attempt != ev.attempt or ev.seq <= r.event_seq:
            return False
        return not states.is_final(r.state)

    def on_progress(self, draft: Draft, ev: AttemptProgress) -> list[Effect]:
        if not self._current(draft, ev):
            return []
        r = draft.recipient(ev.recipient)
        if r.state == S.OUTCOME_UNCERTAIN:
            return []  # only a result settles an uncertain attempt
        idx = ev.recipient
        common = {"site": ev.site, "line": ev.line, "event_seq": ev.seq, "at": ev.at}
        if ev.phase == "dialing":
            if r.state == S.ROUTING:
                # The site started before the router's "routed" event arrived.
                draft.move(idx, S.QUEUED, site=ev.site, at=ev.at)
            elif r.state != S.QUEUED:
                return []
            draft.move(idx, S.DIALING, **common)
        else:
            draft.move(
                idx,
                S.SENDING,
                page=ev.page,
                pages_confirmed=ev.pages_confirmed,
                detail=f"page {ev.page}/{draft.status.pages}",
                **common,
            )
        deadline = ev.at + timedelta(seconds=self.s.scaled(self.s.stuck_after_seconds))
        draft.set_watch(watch_member(draft.status.id, idx), max(deadline, now()))
        return [self._changed(draft, idx)]

    def on_result(self, draft: Draft, ev: AttemptResult) -> list[Effect]:
        if not self._current(draft, ev):
            return []
        before = draft.status.state
        idx = ev.recipient
        draft.set_recipient(
            idx,
            event_seq=ev.seq,
            pages_confirmed=max(ev.pages_confirmed, 0),
            remote_id=ev.remote_id or draft.recipient(idx).remote_id,
        )
        draft.set_watch(watch_member(draft.status.id, idx), None)
        if ev.ok:
            try:
                draft.move(idx, S.DONE, site=ev.site, line=ev.line, at=ev.at, page=None)
            except (NotAllowed, states.IllegalTransition) as exc:
                self._fail_or_retry(
                    draft,
                    idx,
                    Cause.PROTOCOL_ERROR,
                    f"site reported success but {exc}",
                    connected=True,
                    at=ev.at,
                    site=ev.site,
                    line=ev.line,
                )
        elif ev.cause == Cause.CANCELLED:
            draft.move(idx, S.CANCELLED, cause=Cause.CANCELLED, site=ev.site, at=ev.at, page=None)
        else:
            self._fail_or_retry(
                draft,
                idx,
                ev.cause or Cause.PROTOCOL_ERROR,
                ev.detail,
                connected=ev.connected,
                at=ev.at,
                site=ev.site,
                line=ev.line,
            )
        return [self._changed(draft, idx), *self._settled(before, draft)]

    # -- timers -----------------------------------------------------------------------

    def on_route_timer(self, draft: Draft, index: int) -> list[Effect]:
        """``send_after`` or a retry is due: place the recipient again."""
        r = draft.recipient(index)
        if r.state not in (S.SCHEDULED, S.RETRY_SCHEDULED):
            return []
        at = now()
        if at >= draft.status.kill_at:
            before = draft.status.state
            draft.move(index, S.FAILED, cause=Cause.KILL_TIME, detail="kill time reached", at=at)
            return [self._changed(draft, index), *self._settled(before, draft)]
        return [self._route(draft, index, new_attempt=True, at=at), self._changed(draft, index)]

    def on_watch_expired(self, draft: Draft, index: int) -> list[Effect]:
        """A recipient made no progress in time."""
        r = draft.recipient(index)
        at = now()
        if r.state == S.ROUTING:
            # Routing orders are idempotent per attempt: send the same one again.
            return [self._route(draft, index, new_attempt=False, at=at, keep_place=True)]
        if r.state == S.QUEUED:
            # Placed at a site that has not started it: the same order again is ignored
            # while the placement stands and re-queues it if the placement was lost.
            self._watch_queue(draft, index, at)
            return [self._order(draft, index)]
        if r.state in (S.SUBMITTED, S.RENDERING):
            return self._render_again(draft)
        if r.state in (S.DIALING, S.SENDING):
            before = draft.status.state
            draft.move(
                index,
                S.OUTCOME_UNCERTAIN,
                cause=Cause.WORKER_LOST,
                at=at,
                detail=(
                    f"site {r.site} went silent during the call "
                    f"({r.pages_confirmed} pages confirmed); not redialled automatically"
                ),
            )
            return [self._changed(draft, index), *self._settled(before, draft)]
        return []

    def _render_again(self, draft: Draft) -> list[Effect]:
        """Start rendering again, at most ``MAX_RENDERS`` times in all."""
        fax = draft.status
        renders = fax.renders + 1
        if renders >= MAX_RENDERS:
            before = fax.state
            detail = f"rendering did not finish after {MAX_RENDERS} tries"
            for r in fax.recipients:
                if r.state in (S.SUBMITTED, S.RENDERING):
                    draft.move(r.index, S.FAILED, cause=Cause.RENDER_ERROR, detail=detail)
            draft.set(cause=Cause.RENDER_ERROR, detail=detail)
            return [
                *(self._changed(draft, r.index) for r in fax.recipients),
                *self._settled(before, draft),
            ]
        draft.set(renders=renders)
        draft.note(f"not rendered in time: rendering again (try {renders})")
        return self.start(draft)

    # -- operator actions ---------------------------------------------------------------

    def cancel(self, draft: Draft) -> list[Effect]:
        before = draft.status.state
        effects: list[Effect] = []
        for r in draft.status.recipients:
            if r.state in states.CANCELLABLE_AT_ONCE:
                draft.move(r.index, S.CANCELLED, cause=Cause.CANCELLED, detail="cancelled by user")
                draft.set_timer(route_timer(draft.status.id, r.index), None)
                draft.set_watch(watch_member(draft.status.id, r.index), None)
                effects.append(self._changed(draft, r.index))
        return effects + self._settled(before, draft)

    def resolve(
        self,
        draft: Draft,
        index: int | None,
        outcome: ResolveOutcome,
        by: str,
        note: str | None = None,
        *,
        from_start: bool = False,
    ) -> list[Effect]:
        """An operator settles what the fleet could not: recipient ``index`` (``None``: every
        recipient in ``outcome_uncertain``) was ``sent`` (the far end got the whole fax) or
        must be sent again (``resend``). ``by`` names who decided (it goes into the
        history with ``note``).

        ``sent`` moves the recipient to ``done`` with every page counted as confirmed (a
        fax is only ever done with all its pages); the history says the operator confirmed
        it and how many pages the far end itself had confirmed. ``resend`` routes a new
        attempt that resumes at the first page the far end did not confirm (page 1 with
        ``from_start``). Raises :class:`NotResolvable` unless the recipients are
        ``outcome_uncertain``."""
        if outcome == "sent" and from_start:
            raise ValueError("from_start applies to a resend only")
        fax = draft.status
        if index is None:
            indexes = [r.index for r in fax.recipients if r.state == S.OUTCOME_UNCERTAIN]
            if not indexes:
                raise NotResolvable(
                    f"fax {fax.id} is {fax.state.value}: no recipient's outcome is uncertain",
                    fax.state,
                )
        else:
            state = draft.recipient(index).state
            if state != S.OUTCOME_UNCERTAIN:
                raise NotResolvable(
                    f"recipient {index} of fax {fax.id} is {state.value}, not outcome_uncertain",
                    state,
                )
            indexes = [index]
        before = fax.state
        at = now()
        pages = fax.pages or 0
        suffix = f"; note: {note}" if note else ""
        effects: list[Effect] = []
        for idx in indexes:
            confirmed = draft.recipient(idx).pages_confirmed
            far_end = f"the far end confirmed {confirmed} of {pages} pages"
            if outcome == "sent":
                draft.move(
                    idx,
                    S.DONE,
                    at=at,
                    page=None,
                    pages_confirmed=pages,
                    detail=(
                        f"resolved as sent by {by}: delivery confirmed by the operator, "
                        f"not by the far end ({far_end}){suffix}"
                    ),
                )
                draft.set_timer(route_timer(fax.id, idx), None)
                draft.set_watch(watch_member(fax.id, idx), None)
            else:
                if from_start:
                    draft.set_recipient(idx, pages_confirmed=0)
                route = self._route(draft, idx, new_attempt=True, at=at)
                detail = (
                    f"resend ordered by {by}, from page {route.order.first_page} "
                    f"({far_end}){suffix}"
                )
                draft.set_recipient(idx, detail=detail)
                self._explain_last_move(draft, idx, S.ROUTING, detail)
                effects.append(route)
            effects.append(self._changed(draft, idx))
        return effects + self._settled(before, draft)

    @staticmethod
    def _explain_last_move(draft: Draft, index: int, to: JobState, detail: str) -> None:
        """Give the move just logged for recipient ``index`` (to ``to``) its reason."""
        for i in range(len(draft.transitions) - 1, -1, -1):
            t = draft.transitions[i]
            if t.recipient == index and t.to_state == to:
                why = f"{t.detail}; {detail}" if t.detail else detail
                draft.transitions[i] = t.model_copy(update={"detail": why})
                return
