"""The durable job store in Redis: fax records, their transition logs and timers.

Every change goes through :meth:`JobStore.update`, which reads a fax, lets the caller
change a :class:`Draft` of it, and writes it back in one MULTI/EXEC guarded by WATCH, so
concurrent writers (the API cancelling, the event worker applying a result, the timer
loop) never lose each other's changes. Each state change is checked against the
transition table and appended to the fax's log with time, site, line and cause.

Keys (private to the scheduler):

* ``ff:job:{id}``: the fax (JSON of :class:`FaxStatus` without history)
* ``ff:job:{id}:log``: its transitions (list of JSON)
* ``ff:tenant:{t}:jobs``: a tenant's faxes by creation time (sorted set)
* ``ff:idem:{t}:{key}``: idempotency key -> fax id
* ``ff:timers``: due work (sorted set by time): ``route:{id}:{n}`` (send-after, retries)
* ``ff:watch``: deadlines of recipients on a site (sorted set): ``{id}:{n}``
* ``ff:notified:{id}:{state}``: the notifications of a fax settled in that state were
  queued (``SET NX``); ``ff:notified:{id}:{state}:{channel}``: one was delivered

Shared with the metrics (``faxfleet/keys.py``), written in the transaction that changes a
fax's state so they never disagree with it: ``ff:stats:state:{state}`` (the faxes in each
state, by when they entered it) and ``ff:stats:entered`` (how often each state was
entered, fleet-wide).
"""

from __future__ import annotations

import contextlib
import heapq
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

import redis

from faxfleet import keys, metrics
from faxfleet.accounting import CallRecord
from faxfleet.messages import (
    FaxStatus,
    JobState,
    RecipientStatus,
    Transition,
    now,
)
from faxfleet.redis_conn import NotReplicated, wait_for_replicas
from faxfleet.settings import get_settings
from scheduler import outbox, states

T = TypeVar("T")

TIMERS = "ff:timers"
WATCH = "ff:watch"


def job_key(job_id: str) -> str:
    return f"ff:job:{job_id}"


def log_key(job_id: str) -> str:
    return f"ff:job:{job_id}:log"


def tenant_key(tenant: str) -> str:
    return f"ff:tenant:{tenant}:jobs"


TENANT_KEY_PATTERN = "ff:tenant:*:jobs"


def idem_key(tenant: str, key: str) -> str:
    return f"ff:idem:{tenant}:{key}"


def route_timer(job_id: str, recipient: int) -> str:
    return f"route:{job_id}:{recipient}"


def watch_member(job_id: str, recipient: int) -> str:
    return f"{job_id}:{recipient}"


NOTIFY_CHANNELS = ("email", "webhook")


def notified_key(job_id: str, settled: JobState) -> str:
    """Set (NX) when the notifications of a fax settled in ``settled`` are queued: once per
    fax and settled state, however often the event that settled it is applied."""
    return f"ff:notified:{job_id}:{settled.value}"


def delivered_key(job_id: str, settled: JobState, channel: str) -> str:
    """``sending`` while a notification of ``settled`` is on its way on ``channel`` (with a
    short expiry), ``sent`` once delivered: a redelivered or concurrent task sends no copy."""
    return f"ff:notified:{job_id}:{settled.value}:{channel}"


class UnknownJob(KeyError):
    pass


class NotAllowed(Exception):
    """A change the job's current state does not permit (e.g. done with 0 pages)."""


class Draft:
    """A fax being changed inside one store transaction."""

    def __init__(self, status: FaxStatus) -> None:
        self.status = status
        self.transitions: list[Transition] = []
        self.timers: dict[str, float | None] = {}
        self.watches: dict[str, float | None] = {}
        self.outbox: dict[str, float] = {}
        """Notifications to watch (``scheduler/outbox.py``), written with the change itself:
        a process dying between storing a settled fax and queueing its notifications
        leaves them in the outbox."""
        self.calls: list[CallRecord] = []
        """Call records to add to the
        call journal with the change itself: a result is never stored without its record,
        and a result applied again (stale by then) adds none."""
        self.reopened: set[JobState] = set()
        """Settled states the fax leaves for good (an operator's requeue): their
        notification marks are cleared, so settling there again is notified again."""

    def recipient(self, index: int) -> RecipientStatus:
        return self.status.recipients[index]

    def set(self, **fields: Any) -> None:
        self.status = self.status.model_copy(update=fields)

    def set_recipient(self, index: int, **fields: Any) -> None:
        recipients = list(self.status.recipients)
        recipients[index] = recipients[index].model_copy(update=fields)
        self.status = self.status.model_copy(update={"recipients": recipients})

    def move(
        self,
        index: int,
        to: JobState,
        *,
        site: str | None = None,
        line: str | None = None,
        cause: Any = None,
        detail: str | None = None,
        at: datetime | None = None,
        requeue: bool = False,
        **fields: Any,
    ) -> None:
        """Move recipient ``index`` to ``to`` (checked against the table; with ``requeue``,
        an operator's requeue out of ``failed``) and log it.

        A change held for the recipient (:class:`~faxfleet.messages.PendingChange`) lapses
        when it leaves ``routing``/``queued`` or its attempt changes: that attempt is no
        longer the one routing was asked to take back. The history says so."""
        current = self.recipient(index)
        states.check(current.state, to, requeue=requeue)
        attempt = fields.get("attempt", current.attempt)
        pending = current.pending
        if pending is not None and to not in (JobState.ROUTING, JobState.QUEUED):
            fields["pending"] = None
            self.lapse(index, f"it went to {to.value} first")
        elif pending is not None and attempt != current.attempt:
            fields["pending"] = None
            self.lapse(index, f"its attempt {current.attempt} ended first")
        pages_confirmed = fields.get("pages_confirmed", current.pages_confirmed)
        if to == JobState.DONE and (not self.status.pages or pages_confirmed < self.status.pages):
            raise NotAllowed(
                f"done needs every page confirmed ({pages_confirmed}/{self.status.pages})"
            )
        when = at or now()
        update = dict(fields, state=to, updated_at=when)
        if site is not None:
            update["site"] = site
        if line is not None or to not in (JobState.DIALING, JobState.SENDING):
            update["line"] = line
        if cause is not None or to in (JobState.DONE,):
            update["cause"] = cause
        if detail is not None or to in (JobState.DONE,):
            update["detail"] = detail
        self.set_recipient(index, **update)
        self.transitions.append(
            Transition(
                at=when,
                recipient=index,
                from_state=current.state,
                to_state=to,
                site=site or current.site,
                line=line,
                cause=cause,
                detail=detail,
            )
        )

    def lapse(self, index: int, why: str) -> None:
        """Log that recipient ``index``'s pending change was not applied, and why."""
        pending = self.recipient(index).pending
        if pending is None:
            return
        self.note(
            f"recipient {index}: {describe_pending(pending.number, pending.send_after)} "
            f"asked by {pending.by} not applied: {why}"
        )

    def note(self, detail: str, *, site: str | None = None) -> None:
        """Log an event that is not a state change (e.g. a notification delivered)."""
        self.transitions.append(
            Transition(
                at=now(),
                recipient=None,
                from_state=self.status.state,
                to_state=self.status.state,
                site=site,
                detail=detail,
            )
        )

    def set_timer(self, member: str, due: datetime | None) -> None:
        self.timers[member] = due.timestamp() if due else None

    def set_watch(self, member: str, deadline: datetime | None) -> None:
        self.watches[member] = deadline.timestamp() if deadline else None


def describe_pending(number: str | None, send_after: datetime | None) -> str:
    """``number -> +33142685301, postponed to 2030-01-01 09:00:00 UTC``."""
    parts = []
    if number is not None:
        parts.append(f"number -> {number}")
    if send_after is not None:
        parts.append(f"postponed to {send_after:%Y-%m-%d %H:%M:%S} UTC")
    return ", ".join(parts) or "taking the fax back"


class JobStore:
    def __init__(self, client: redis.Redis, retention_seconds: int = 7 * 86400) -> None:
        self.r = client
        self.retention = retention_seconds

    # -- creation ---------------------------------------------------------------------

    def create(
        self,
        status: FaxStatus,
        idempotency_key: str | None,
        *,
        watch_after: float | None = None,
        min_replicas: int | None = None,
        replica_timeout_ms: int | None = None,
        note: str | None = None,
    ) -> tuple[FaxStatus, bool]:
        """Store a new fax; with an idempotency key already used, return the original.

        ``watch_after``: seconds after which the fax's watchdog looks at it (a node that
        dies between storing a fax and starting it leaves it ``submitted``: the watch
        starts it). Written in the same transaction as the fax.

        ``note``: the detail of the fax's first history entry (who overrode a policy).

        Returns ``(fax, created)``. The key check and the write are one transaction, so two
        concurrent submissions with the same key yield one fax.

        Durability: the fax is returned only once ``min_replicas`` Redis replicas hold it
        (``WAIT``, at most ``replica_timeout_ms``; defaults from the settings: 1 with
        Sentinel, 0 with one Redis). Otherwise :class:`~faxfleet.redis_conn.NotReplicated`
        is raised, and a new fax is taken back first, so a refusal means "not stored".
        """
        settings = get_settings()
        wanted = settings.min_replicas_ack if min_replicas is None else min_replicas
        wait_ms = replica_timeout_ms or settings.redis_replica_ack_timeout_ms
        jkey = job_key(status.id)
        ikey = idem_key(status.tenant, idempotency_key) if idempotency_key else None
        created_transition = Transition(
            at=status.created_at,
            recipient=None,
            from_state=None,
            to_state=status.state,
            detail=note,
        )
        with self.r.pipeline() as pipe:
            while True:
                try:
                    if ikey:
                        pipe.watch(ikey)
                        existing = pipe.get(ikey)
                        if existing:
                            pipe.reset()
                            original = self.get(existing.decode())
                            try:
                                wait_for_replicas(self.r, wanted, wait_ms)
                            except NotReplicated as exc:
                                raise NotReplicated(
                                    f"fax {original.id} is stored but not yet confirmed: "
                                    f"{exc.reason}; submit again with the same key",
                                    wanted=exc.wanted,
                                    acked=exc.acked,
                                ) from exc
                            return original, False
                    pipe.multi()
                    if ikey:
                        pipe.set(ikey, status.id, ex=self.retention)
                    pipe.set(jkey, status.model_dump_json(exclude={"history"}))
                    pipe.rpush(log_key(status.id), created_transition.model_dump_json())
                    pipe.zadd(tenant_key(status.tenant), {status.id: status.created_at.timestamp()})
                    self._count_state(pipe, status.id, None, status.state)
                    if watch_after is not None:
                        due = status.created_at.timestamp() + watch_after
                        pipe.zadd(WATCH, {watch_member(status.id, 0): due})
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        try:
            wait_for_replicas(self.r, wanted, wait_ms)
        except NotReplicated as exc:
            # Take the fax back: the caller hears "not stored" and may submit it again.
            with contextlib.suppress(redis.RedisError), self.r.pipeline() as undo:
                if ikey:
                    undo.delete(ikey)
                undo.delete(jkey, log_key(status.id))
                if status.documents:
                    undo.delete(
                        *(keys.document(status.id, i) for i in range(len(status.documents)))
                    )
                undo.zrem(tenant_key(status.tenant), status.id)
                undo.zrem(keys.fax_state(status.state), status.id)
                undo.hincrby(keys.FAX_STATES_ENTERED, status.state.value, -1)
                undo.zrem(WATCH, *(watch_member(status.id, r.index) for r in status.recipients))
                undo.execute()
            raise NotReplicated(
                f"fax not stored: {exc.reason}; submit it again",
                wanted=exc.wanted,
                acked=exc.acked,
            ) from exc
        return status, True

    # -- reading ----------------------------------------------------------------------

    def get(self, job_id: str, *, history: bool = False) -> FaxStatus:
        """The fax; with ``history``, the fax and its log read in one transaction so the
        two always agree."""
        with self.r.pipeline(transaction=True) as pipe:
            pipe.get(job_key(job_id))
            if history:
                pipe.lrange(log_key(job_id), 0, -1)
            raw, *rest = pipe.execute()
        if raw is None:
            raise UnknownJob(job_id)
        status = FaxStatus.model_validate_json(raw)
        if history:
            log = [Transition.model_validate_json(x) for x in rest[0]]
            status = status.model_copy(update={"history": log})
        return status

    def list(
        self,
        tenant: str,
        *,
        state: JobState | None = None,
        site: str | None = None,
        user: str | None = None,
        limit: int = 100,
    ) -> list[FaxStatus]:
        """A tenant's faxes, newest first, filtered by fax state, recipient site and user."""
        found: list[FaxStatus] = []
        start = 0
        batch = 200
        while len(found) < limit:
            ids = self.r.zrevrange(tenant_key(tenant), start, start + batch - 1)
            if not ids:
                break
            start += batch
            found += self._matching([i.decode() for i in ids], state, site, user)
        return found[:limit]

    def list_all(
        self,
        *,
        state: JobState | None = None,
        site: str | None = None,
        user: str | None = None,
        limit: int = 100,
    ) -> list[FaxStatus]:
        """Every tenant's faxes, newest first, with the filters of :meth:`list` (for admin
        keys). Each tenant's listing is read in batches and merged by creation time."""
        tenant_keys = sorted(k.decode() for k in self.r.scan_iter(TENANT_KEY_PATTERN, 1000))
        merged = heapq.merge(*(self._newest(k) for k in tenant_keys), reverse=True)
        found: list[FaxStatus] = []
        batch: list[str] = []
        for _, job_id in merged:
            batch.append(job_id)
            if len(batch) < 100:
                continue
            found += self._matching(batch, state, site, user)
            batch = []
            if len(found) >= limit:
                break
        if batch and len(found) < limit:
            found += self._matching(batch, state, site, user)
        return found[:limit]

    def in_state(
        self, state: JobState, *, entered_before: float | None = None, limit: int = 50
    ) -> list[tuple[FaxStatus, float]]:
        """Faxes whose (summary) state is ``state``, oldest in it first, each with when it
        entered it (epoch seconds); with ``entered_before``, only those in it since
        before then. Reads the state's index (``keys.fax_state``), never the whole store."""
        high = "+inf" if entered_before is None else entered_before
        entries = self.r.zrangebyscore(
            keys.fax_state(state), "-inf", high, start=0, num=limit, withscores=True
        )
        if not entries:
            return []
        found = []
        for (_, score), raw in zip(
            entries, self.r.mget([job_key(m.decode()) for m, _ in entries]), strict=True
        ):
            if raw is not None:
                found.append((FaxStatus.model_validate_json(raw), score))
        return found

    def _newest(self, key: str, batch: int = 200) -> Iterator[tuple[float, str]]:
        start = 0
        while True:
            page = self.r.zrevrange(key, start, start + batch - 1, withscores=True)
            if not page:
                return
            for member, score in page:
                yield score, member.decode()
            start += batch

    def _matching(
        self,
        ids: list[str],
        state: JobState | None,
        site: str | None,
        user: str | None,
    ) -> list[FaxStatus]:
        found = []
        for raw in self.r.mget([job_key(i) for i in ids]):
            if raw is None:
                continue
            fax = FaxStatus.model_validate_json(raw)
            if state and fax.state != state and all(r.state != state for r in fax.recipients):
                continue
            if site and all(r.site != site for r in fax.recipients):
                continue
            if user and fax.user != user:
                continue
            found.append(fax)
        return found

    # -- changing ---------------------------------------------------------------------

    def update(self, job_id: str, change: Callable[[Draft], T]) -> tuple[FaxStatus, T]:
        """Apply ``change`` to a draft of the fax and write it atomically.

        ``change`` may run more than once (when another writer got in first); it must
        only touch the draft. Returns the stored fax and what ``change`` returned.
        """
        key = job_key(job_id)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        raise UnknownJob(job_id)
                    draft = Draft(FaxStatus.model_validate_json(raw))
                    before = draft.status.state
                    result = change(draft)
                    self._finish(draft)
                    pipe.multi()
                    pipe.set(key, draft.status.model_dump_json(exclude={"history"}))
                    if draft.transitions:
                        logged = [t.model_dump_json() for t in draft.transitions]
                        pipe.rpush(log_key(job_id), *logged)
                    self._write_zsets(pipe, TIMERS, draft.timers)
                    self._write_zsets(pipe, WATCH, draft.watches)
                    if draft.outbox:
                        pipe.zadd(outbox.OUTBOX, draft.outbox, nx=True)
                    for record in draft.calls:
                        pipe.xadd(keys.ACCT_CALLS, {"r": record.model_dump_json()})
                    if draft.status.state != before:
                        self._count_state(pipe, job_id, before, draft.status.state)
                    if draft.status.state in states.TRANSITIONS and states.is_final(
                        draft.status.state
                    ):
                        self._expire(pipe, job_id)
                    elif draft.reopened:
                        self._reopen(pipe, job_id, draft.reopened)
                    pipe.execute()
                    for record in draft.calls:
                        metrics.count_call(record)
                    return draft.status, result
                except redis.WatchError:
                    continue

    @staticmethod
    def _finish(draft: Draft) -> None:
        summary = states.summarise([r.state for r in draft.status.recipients])
        if summary != draft.status.state:
            draft.set(state=summary)

    @staticmethod
    def _write_zsets(pipe: Any, key: str, entries: dict[str, float | None]) -> None:
        for member, score in entries.items():
            if score is None:
                pipe.zrem(key, member)
            else:
                pipe.zadd(key, {member: score})

    def _count_state(
        self, pipe: Any, job_id: str, before: JobState | None, after: JobState
    ) -> None:
        """Move the fax between the per-state sets the metrics count (a settled state's
        set forgets faxes past the retention, as the store does)."""
        at = time.time()
        if before is not None:
            pipe.zrem(keys.fax_state(before), job_id)
        pipe.zadd(keys.fax_state(after), {job_id: at})
        pipe.hincrby(keys.FAX_STATES_ENTERED, after.value, 1)
        if after in states.TRANSITIONS and states.is_final(after):
            pipe.zremrangebyscore(keys.fax_state(after), "-inf", at - self.retention)

    def _expire(self, pipe: Any, job_id: str) -> None:
        for k in (job_key(job_id), log_key(job_id), keys.pages(job_id)):
            pipe.expire(k, self.retention)

    def _reopen(self, pipe: Any, job_id: str, settled: set[JobState]) -> None:
        """A settled fax is open again (requeued): it is kept until it settles anew, its
        rendered pages another retention period, and each state it left may be notified
        again (its once-only marks and outbox entries go)."""
        pipe.persist(job_key(job_id))
        pipe.persist(log_key(job_id))
        pipe.expire(keys.pages(job_id), self.retention)
        for state in settled:
            pipe.delete(
                notified_key(job_id, state),
                *(delivered_key(job_id, state, c) for c in NOTIFY_CHANNELS),
            )
            entries = [outbox.entry(job_id, state, c) for c in NOTIFY_CHANNELS]
            pipe.zrem(outbox.OUTBOX, *entries)
            pipe.hdel(outbox.REQUEUES, *entries)

    def confirm(self) -> None:
        """Raise :class:`~faxfleet.redis_conn.NotReplicated` unless the replicas the
        settings ask for (``min_replicas_ack``: 1 with Sentinel, 0 with one Redis) hold
        every change made so far. A change a failover would lose is then made again by
        whoever made it (the event worker retries the event) instead of vanishing."""
        settings = get_settings()
        wait_for_replicas(self.r, settings.min_replicas_ack, settings.redis_replica_ack_timeout_ms)

    # -- timers -------------------------------------------------------------------------

    def due(self, key: str, until: float, limit: int = 100) -> list[str]:
        return [m.decode() for m in self.r.zrangebyscore(key, "-inf", until, start=0, num=limit)]

    def claim(self, key: str, member: str) -> bool:
        """Take a due entry; only one of several timer loops gets it."""
        return bool(self.r.zrem(key, member))

    def delete_documents(self, job_id: str, count: int) -> None:
        self.r.delete(*(keys.document(job_id, i) for i in range(count)))
