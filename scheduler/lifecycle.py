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

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from faxfleet import accounting
from faxfleet.messages import (
    SETTLED_STATES,
    AttemptProgress,
    AttemptResult,
    Cause,
    FaxStatus,
    HolderDead,
    JobState,
    LeaseLost,
    PendingChange,
    RenderDone,
    RenderFailed,
    RenderOrder,
    Requeued,
    Routed,
    RouteOrder,
    Unroutable,
    Withdrawn,
    WithdrawOrder,
    now,
)
from faxfleet.settings import Settings
from scheduler import retry, states
from scheduler.store import Draft, NotAllowed, describe_pending, route_timer, watch_member

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


@dataclass(frozen=True)
class Withdraw:
    """Ask routing to take an attempt back (answered by a ``Withdrawn`` event)."""

    order: WithdrawOrder


Effect = Route | Render | Notify | Changed | Withdraw

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


class NotRequeueable(NotResolvable):
    """Only a ``failed`` recipient that reached the calling stage, or an
    ``outcome_uncertain`` one, can be requeued."""


class NotAlterable(Exception):
    """The fax (or the recipient whose number is to change) is on a line or settled, or
    the change cannot apply to it (HTTP 409); ``state`` is where it stands."""

    def __init__(self, message: str, state: JobState) -> None:
        super().__init__(message)
        self.state = state


class BadAlteration(ValueError):
    """A change whose values cannot be taken (HTTP 422)."""


@dataclass(frozen=True)
class Alteration:
    """What an operator changes on a fax not yet on a line (``PATCH /v1/faxes/{id}``).

    ``send_after`` applies when ``send_after_set`` (None: send now); ``numbers`` maps a
    recipient's current number to its new one (both E.164, checked by the caller)."""

    priority: int | None = None
    send_after: datetime | None = None
    send_after_set: bool = False
    kill_after_seconds: float | None = None
    numbers: Mapping[str, str] = field(default_factory=dict)
    note: str | None = None


def _utc(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S} UTC"


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
        requeue: bool = False,
    ) -> Route:
        """Put recipient ``index`` into routing and return the order for the router.

        ``keep_place``: the fax goes on waiting where it waited before (given back by a
        site, or its call lost with its worker): same place in the queue, same promise.
        ``requeue``: an operator's requeue of a failed recipient."""
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
                confirmed_before=r.pages_confirmed,
                detail=detail,
                requeue=requeue,
                routed_at=None,
                route_choice=None,
                route_reason=None,
                call_started_at=None,
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
                revision=fax.revision,
            )
        )

    @staticmethod
    def _withdraw(draft: Draft, index: int) -> Withdraw:
        """Ask routing to take back the attempt recipient ``index``'s pending change is for."""
        fax = draft.status
        pending = draft.recipient(index).pending
        assert pending is not None
        return Withdraw(
            WithdrawOrder(
                job_id=fax.id, recipient=index, attempt=pending.attempt, home_site=fax.home_site
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
        placed = {"routed_at": ev.at, "route_choice": ev.choice, "route_reason": ev.reason}
        if ev.tariff is not None:
            # Kept whatever the state (the site may have started first): prices the call
            # if its result carries no tariff of its own (the result's wins).
            draft.set_recipient(ev.recipient, tariff=ev.tariff, tariff_attempt=ev.attempt)
        if r.state == S.QUEUED and r.site != ev.site:
            # Handed out again (given back by another site, events applied out of order).
            draft.set_recipient(ev.recipient, site=ev.site, **placed)
            draft.note(f"handed to {ev.site}", site=ev.site)
            return []
        if r.state != S.ROUTING:
            if r.site == ev.site and r.routed_at is None and not states.is_final(r.state):
                # The site started before this event arrived: keep why it was placed there.
                draft.set_recipient(
                    ev.recipient, cost_estimate=ev.cost, currency=ev.currency, **placed
                )
            return []
        draft.move(
            ev.recipient,
            S.QUEUED,
            site=ev.site,
            at=ev.at,
            detail=f"{ev.choice.value}: {ev.reason}" if ev.choice and ev.reason else ev.reason,
            cost_estimate=ev.cost,
            currency=ev.currency,
            **placed,
        )
        # A site that never starts it gives it back (dispatcher); should that word be
        # lost, the watch re-sends the route order, which is ignored while it is placed.
        self._watch_queue(draft, ev.recipient, ev.at)
        return [self._changed(draft, ev.recipient)]

    def on_requeued(self, draft: Draft, ev: Requeued) -> list[Effect]:
        r = draft.recipient(ev.recipient)
        if r.attempt != ev.attempt:
            return []
        # The site gave back the order it was handed: an altered fax's current order
        # follows it, so routing has the latest priority (it keeps the higher revision).
        latest: list[Effect] = [self._order(draft, ev.recipient)] if draft.status.revision else []
        if r.state == S.ROUTING:  # applied before its "routed": note it, nothing moves
            draft.note(ev.detail, site=ev.site)
            return latest
        if r.state != S.QUEUED:
            return []
        draft.move(ev.recipient, S.ROUTING, detail=ev.detail, at=ev.at)
        self._watch_queue(draft, ev.recipient, ev.at)
        return [self._changed(draft, ev.recipient), *latest]

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
            draft.move(idx, S.DIALING, call_started_at=r.call_started_at or ev.at, **common)
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
        self._account(draft, ev)
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

    @staticmethod
    def _account(draft: Draft, ev: AttemptResult) -> None:
        """The call's record, stored with the result (see :class:`~scheduler.store.Draft`)."""
        fax = draft.status
        record = accounting.build(
            ev=ev,
            before=draft.recipient(ev.recipient),
            tenant=fax.tenant,
            user=fax.user,
            priority=fax.priority,
            home_site=fax.home_site,
            pages_total=fax.pages,
            recorded_at=now(),
        )
        if record is not None:
            draft.calls.append(record)

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
        if r.pending is not None and r.state in (S.ROUTING, S.QUEUED):
            # A change waits for routing to take the fax back: ask again (idempotent).
            self._watch_queue(draft, index, at)
            return [self._withdraw(draft, index)]
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

    def alter(self, draft: Draft, change: Alteration, by: str) -> list[Effect]:
        """An operator changes a fax not yet on a line (``by`` names who, for the history).

        * **priority** (the fax's): stored with a new revision; each recipient waiting in
          the central set gets its order again, which routing re-scores in place (same
          place among faxes of its new priority); later attempts carry it.
        * **send_after** (None: now) and the **kill time** (``kill_after_seconds`` from
          the fax's start, as at submission; moving ``send_after`` keeps the kill time's
          distance from the start): recipients waiting for a timer (``scheduled``,
          ``retry_scheduled``) move their timer to it; one not yet rendered takes it once
          rendered; one waiting for a line and postponed is taken back first (below).
        * **numbers** (current -> new): at once for a recipient not yet routed or waiting
          for a timer; for one waiting for a line (``routing``, ``queued``) the change is
          held (:class:`~faxfleet.messages.PendingChange`) and routing asked to take the
          attempt back (:class:`Withdraw`): it applies when routing answers that it did
          (:meth:`on_withdrawn`), or lapses if a site started the call first.

        Raises :class:`NotAlterable` when no recipient waits (on a line or settled), when a
        number is to change on a recipient on a line or settled, or on a fax with a cover
        page (it names the numbers, rendered at submission); :class:`BadAlteration` for a
        number the fax does not have or a kill time past, or beyond the documents'
        retention."""
        fax = draft.status
        at = now()
        if not any(r.state in states.WAITING for r in fax.recipients):
            raise NotAlterable(
                f"fax {fax.id} is {fax.state.value}: only a fax not yet on a line can be altered",
                fax.state,
            )
        renumber: dict[int, str] = {}
        for old, new in change.numbers.items():
            matching = [r for r in fax.recipients if r.number == old]
            if not matching:
                raise BadAlteration(f"numbers: fax {fax.id} has no recipient {old}")
            for r in matching:
                if r.state not in states.WAITING:
                    raise NotAlterable(
                        f"recipient {r.index} of fax {fax.id} is {r.state.value}: its number "
                        "can only change before it is on a line",
                        r.state,
                    )
                if new != old:
                    renumber[r.index] = new
        if renumber and fax.cover is not None:
            raise NotAlterable(
                f"fax {fax.id} has a cover page, rendered at submission, that names its "
                "numbers: cancel it and send it again to the new number",
                fax.state,
            )
        kill_at = self._kill_time(fax, change, at)
        changes: list[str] = []
        reprioritised = change.priority is not None and change.priority != fax.priority
        if reprioritised:
            changes.append(f"priority {fax.priority} -> {change.priority}")
            draft.set(priority=change.priority, revision=fax.revision + 1)
        if change.send_after_set and change.send_after != fax.send_after:
            before = _utc(fax.send_after) if fax.send_after else "none"
            after = _utc(change.send_after) if change.send_after else "now"
            changes.append(f"send_after {before} -> {after}")
            draft.set(send_after=change.send_after)
        if kill_at != fax.kill_at:
            changes.append(f"kill time {_utc(fax.kill_at)} -> {_utc(kill_at)}")
            draft.set(kill_at=kill_at)
        due = max(change.send_after or at, at)
        postpone = change.send_after_set and due > at
        effects: list[Effect] = []
        for r in draft.status.recipients:
            idx = r.index
            if r.state not in states.WAITING:
                continue
            new = renumber.get(idx)
            if r.state in (S.ROUTING, S.QUEUED):
                if new is not None or change.send_after_set:
                    held = r.pending
                    pending = PendingChange(
                        attempt=r.attempt,
                        number=new if new is not None else (held.number if held else None),
                        send_after=(due if postpone else None)
                        if change.send_after_set
                        else (held.send_after if held else None),
                        by=by,
                        at=at,
                    )
                    if pending.number is not None or pending.send_after or held is not None:
                        draft.set_recipient(idx, pending=pending)
                        self._watch_queue(draft, idx, at)
                        effects.append(self._withdraw(draft, idx))
                        what = describe_pending(pending.number, pending.send_after)
                        changes.append(
                            f"recipient {idx}: {what} once routing has taken it back "
                            f"(attempt {r.attempt})"
                        )
                if reprioritised and r.state == S.ROUTING:
                    effects.append(self._order(draft, idx))
                continue
            if new is not None:
                changes.append(f"recipient {idx}: number {r.number} -> {new}")
                draft.set_recipient(idx, number=new)
            if r.state in states.ON_TIMER and change.send_after_set:
                draft.set_recipient(idx, next_try_at=due)
                draft.set_timer(route_timer(fax.id, idx), due)
        if changes:
            suffix = f"; note: {change.note}" if change.note else ""
            draft.note(f"altered by {by}: {'; '.join(changes)}{suffix}")
        return effects

    def _kill_time(self, fax: FaxStatus, change: Alteration, at: datetime) -> datetime:
        """The fax's kill time after ``change`` (checked against the retention)."""
        if change.kill_after_seconds is None and not change.send_after_set:
            return fax.kill_at
        old_start = max(fax.created_at, fax.send_after or fax.created_at)
        start = max(change.send_after or at, at) if change.send_after_set else old_start
        if change.kill_after_seconds is not None:
            kill_at = start + timedelta(seconds=change.kill_after_seconds)
        else:
            kill_at = start + (fax.kill_at - old_start)
        if kill_at <= at:
            raise BadAlteration(
                f"kill_after_seconds: the kill time would be {_utc(kill_at)}, already past "
                f"(the fax started at {_utc(start)})"
            )
        kept = fax.created_at + timedelta(seconds=self.s.retention_seconds)
        if kill_at > kept:
            raise BadAlteration(
                f"the fax would keep trying until {_utc(kill_at)}, after its documents "
                f"expire ({_utc(kept)}): choose an earlier send_after or a shorter "
                "kill_after_seconds"
            )
        return kill_at

    def on_withdrawn(self, draft: Draft, ev: Withdrawn) -> list[Effect]:
        """Routing answered a :class:`Withdraw`. Taken back: the attempt is never sent, so
        the held change applies (new number) and the recipient waits again, keeping its
        place, as a new attempt, or in ``scheduled`` if postponed. Not taken back: a site
        started the call; the change lapses and the history says so."""
        idx = ev.recipient
        r = draft.recipient(idx)
        held = r.pending
        if held is None or held.attempt != ev.attempt or r.attempt != ev.attempt:
            return []  # a repeated answer, or the change lapsed already
        if r.state not in (S.ROUTING, S.QUEUED):  # (the store lapses it on such a move)
            draft.set_recipient(idx, pending=None)
            return []
        if not ev.taken_back:
            draft.lapse(idx, ev.detail)
            draft.set_recipient(idx, pending=None)
            return []
        draft.set_recipient(idx, pending=None)
        at = now()
        applied = []
        if held.number is not None and held.number != r.number:
            applied.append(f"number {r.number} -> {held.number}")
            draft.set_recipient(idx, number=held.number)
        where = f"taken back from site {ev.site}" if ev.site else "taken out of the waiting set"
        send_after = draft.status.send_after
        if send_after is not None and send_after > at:
            applied.append(f"postponed to {_utc(send_after)}")
            detail = f"{', '.join(applied)} as asked by {held.by} ({where})"
            draft.move(idx, S.SCHEDULED, next_try_at=send_after, at=at, detail=detail)
            draft.set_timer(route_timer(draft.status.id, idx), send_after)
            draft.set_watch(watch_member(draft.status.id, idx), None)
            return [self._changed(draft, idx)]
        detail = (
            f"{', '.join(applied) or 'no change left'} as asked by {held.by} ({where}): "
            f"waiting for a line again as attempt {r.attempt + 1}, keeping its place"
        )
        if r.state == S.QUEUED:
            route = self._route(draft, idx, new_attempt=True, at=at, keep_place=True, detail=detail)
        else:  # routing keeps the old attempt withdrawn: the fax waits as a new one
            draft.set_recipient(idx, attempt=r.attempt + 1, event_seq=0)
            draft.note(f"recipient {idx}: {detail}")
            route = self._route(draft, idx, new_attempt=False, at=at, keep_place=True)
        return [route, self._changed(draft, idx)]

    def requeue(
        self,
        draft: Draft,
        index: int | None,
        by: str,
        note: str | None = None,
        *,
        from_start: bool = False,
        kill_after_seconds: float | None = None,
    ) -> list[Effect]:
        """An operator sends again recipient ``index`` (``None``: every failed or
        ``outcome_uncertain`` one): a new attempt, routed like any other.

        * ``outcome_uncertain``: exactly :meth:`resolve` with ``resend``.
        * ``failed``: back to ``routing`` (the one move out of a final state,
          :data:`~scheduler.states.REQUEUE`) with fresh dial and try counters, from the
          first page the far end did not confirm (``from_start``: page 1). The fax may be
          notified of its new outcome, even if it fails again.

        Either way the kill time is at least ``kill_after_seconds`` (default: the fax's own
        kill time's length) from now, and the history names who. Raises
        :class:`NotRequeueable` for any other state, and for a recipient that failed
        before any call (not rendered, over its quota)."""
        fax = draft.status
        allowed = (S.FAILED, S.OUTCOME_UNCERTAIN)
        if index is None:
            indexes = [r.index for r in fax.recipients if r.state in allowed]
            if not indexes:
                raise NotRequeueable(
                    f"fax {fax.id} is {fax.state.value}: no recipient failed or has an "
                    "uncertain outcome",
                    fax.state,
                )
        else:
            state = draft.recipient(index).state
            if state not in allowed:
                raise NotRequeueable(
                    f"recipient {index} of fax {fax.id} is {state.value}, not failed or "
                    "outcome_uncertain",
                    state,
                )
            indexes = [index]
        for idx in indexes:
            r = draft.recipient(idx)
            if r.state == S.FAILED and (
                not fax.pages or r.cause in (Cause.RENDER_ERROR, Cause.QUOTA_EXCEEDED)
            ):
                why = r.cause.value if r.cause else "not rendered"
                raise NotRequeueable(
                    f"recipient {idx} of fax {fax.id} failed before any call ({why}): "
                    "send it again",
                    r.state,
                )
        at = now()
        start = max(fax.created_at, fax.send_after or fax.created_at)
        length = (
            timedelta(seconds=kill_after_seconds)
            if kill_after_seconds is not None
            else fax.kill_at - start
        )
        if length > timedelta(seconds=self.s.retention_seconds):
            raise BadAlteration(
                f"kill_after_seconds: longer than the {self.s.retention_seconds} s a requeued "
                "fax's pages are kept"
            )
        kill_at = max(fax.kill_at, at + length)
        if kill_at != fax.kill_at:
            draft.set(kill_at=kill_at)
            draft.note(f"kill time {_utc(fax.kill_at)} -> {_utc(kill_at)} for the requeue by {by}")
        suffix = f"; note: {note}" if note else ""
        effects: list[Effect] = []
        for idx in indexes:
            r = draft.recipient(idx)
            if r.state == S.OUTCOME_UNCERTAIN:
                effects += self.resolve(draft, idx, "resend", by, note, from_start=from_start)
                continue
            pages = fax.pages or 0
            confirmed = r.pages_confirmed
            if from_start or confirmed >= pages:
                draft.set_recipient(idx, pages_confirmed=0)
            draft.set_recipient(idx, dials=0, tries=0, not_a_fax=0, cause=None)
            first = draft.recipient(idx).pages_confirmed + 1
            detail = (
                f"requeued by {by} after {r.cause.value if r.cause else 'failure'}, from page "
                f"{first} (the far end confirmed {confirmed} of {pages} pages){suffix}"
            )
            draft.reopened.add(S.FAILED)
            effects.append(
                self._route(draft, idx, new_attempt=True, at=at, detail=detail, requeue=True)
            )
            effects.append(self._changed(draft, idx))
        return effects

    @staticmethod
    def _explain_last_move(draft: Draft, index: int, to: JobState, detail: str) -> None:
        """Give the move just logged for recipient ``index`` (to ``to``) its reason."""
        for i in range(len(draft.transitions) - 1, -1, -1):
            t = draft.transitions[i]
            if t.recipient == index and t.to_state == to:
                why = f"{t.detail}; {detail}" if t.detail else detail
                draft.transitions[i] = t.model_copy(update={"detail": why})
                return
