"""The dispatcher: applies the placement policy to the live fleet, one line at a time.

Faxes wait centrally in priority order (``ff:rt:waiting``); a site is handed a fax only
when it has a free line, so no site holds a private backlog and a new urgent fax never
waits behind one. Run ``python -m routing.dispatcher``; several may run at once:

* **Claims are atomic.** Taking a fax off the waiting set and counting it against a
  site's lines is one Lua script: two dispatchers can never place the same fax twice,
  nor give a site more faxes than it has lines.
* **No slot is held by nobody** (``routing/reaper.py``, ``faxfleet/inflight.py``). A
  fax handed to a site that stops publishing its state, or that a live site has not
  started within ``dispatch_claim_seconds``, goes back to the waiting set keeping its
  place; a started one whose worker stopped renewing its lease frees its slot and the
  scheduler is told (``LeaseLost``).
* **Caches survive Redis blips.** Site configuration and cost tables are cached and
  reloaded when the configuration version changes or every ``refresh_seconds``; if
  Redis cannot be read, the last good copy is kept and the pass is retried.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from faxfleet import celery_app as names
from faxfleet import heartbeat, inflight, keys, metrics
from faxfleet.messages import Cause as C
from faxfleet.messages import (
    DispatchSummary,
    RouteChoice,
    Routed,
    RouteOrder,
    SendOrder,
    SiteStatus,
    Unroutable,
    now,
)
from faxfleet.runtime import Runtime, runtime
from faxfleet.settings import Settings
from routing.dialing import dial_string
from routing.policy import Action, Decision, Knobs, SiteState, WaitingFax, plan
from routing.reaper import Reaper
from routing.sites import CONFIG_VERSION, Registry, SiteConfig, group_of
from routing.waiting import ORDERS, WAITING, placed_key, since, urgency_score, waiting_record

__all__ = [
    "ADDED",
    "ORDERS",
    "REVISED",
    "WAITING",
    "Dispatcher",
    "enqueue",
    "place",
    "placed_key",
    "urgency_score",
]

# KEYS: waiting, orders, inflight(site), placed(attempt); ARGV: attempt, lines, record, site
_CLAIM = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then return 0 end
if redis.call('HLEN', KEYS[3]) >= tonumber(ARGV[2]) then return -1 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('SET', KEYS[4], ARGV[4], 'EX', 86400)
return 1
"""


@dataclass(frozen=True)
class Held:
    """What placement needs of a fax a site holds (read on every pass for every line in
    use, so parsed straight from the stored record rather than validated as a model)."""

    number: str
    pages: int
    first_page: int
    routed_at: datetime

    @classmethod
    def from_record(cls, raw: bytes | str) -> Held:
        order = json.loads(raw)["order"]
        return cls(
            order["number"],
            int(order["pages"]),
            int(order.get("first_page", 1)),
            datetime.fromisoformat(order["routed_at"]),
        )


def dispatch_reason(
    decision: Decision, home_site: str, home: SiteState | None, held_for_band: bool
) -> str:
    """Why a fax went to the site it was handed to, in one word (the metrics' label):

    * ``band``: it was held for a cheaper tariff band and that band has come;
    * ``exchanged``: it took another fax's place, which cost the fleet less in total;
    * ``earliest``: no site could start it within its priority's promise;
    * ``overflow``: another site than its home, whose lines were all taken;
    * ``cheapest``: the cheapest site able to start it in time (its home or not)."""
    if held_for_band:
        return "band"
    if decision.reason.startswith("cheapest for the fleet"):
        return "exchanged"
    if decision.reason.startswith("earliest start"):
        return "earliest"
    if decision.site != home_site and home is not None and home.lines_up > 0 and home.free <= 0:
        return "overflow"
    return "cheapest"


def route_choice(decision: Decision, held_for_band: bool, waited_at: str | None) -> RouteChoice:
    """Why a fax went to the site it was handed to, for its home site's record (the
    fax's status and history; :class:`~faxfleet.messages.RouteChoice` says each)."""
    if decision.reason.startswith("cheapest for the fleet"):
        return RouteChoice.EXCHANGED
    if held_for_band:
        return RouteChoice.BAND
    if decision.choices == 1:
        return RouteChoice.ONLY
    if waited_at is not None and waited_at == decision.site:
        return RouteChoice.WAITED
    if decision.cheaper_busy is not None:
        return RouteChoice.OVERFLOW
    if decision.reason.startswith("earliest start"):
        return RouteChoice.EARLIEST
    return RouteChoice.CHEAPEST


def knobs_from(s: Settings) -> Knobs:
    """The policy's knobs from settings (FAXFLEET_ROUTING_*)."""
    return Knobs(
        seconds_per_page=s.routing_seconds_per_page,
        call_setup_seconds=s.routing_call_setup_seconds,
        promise_seconds=s.promise_list,
        min_success=s.routing_min_success,
        max_calls_per_number=s.routing_max_calls_per_number,
        patience_seconds=s.routing_patience_seconds,
        band_wait_seconds=s.routing_band_wait_seconds,
        cost_tolerance=s.routing_cost_tolerance,
        time_scale=s.time_scale,
    )


# KEYS: claim(attempt), placed(attempt), orders, waiting, wake
# ARGV: attempt, record, score, revision, order JSON, priority
_ENQUEUE = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
local result = 0
local current = redis.call('HGET', KEYS[3], ARGV[1])
if not current then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
  result = redis.call('ZADD', KEYS[4], 'NX', ARGV[3], ARGV[1])
else
  local stored = cjson.decode(current)
  local revision = tonumber(stored['order']['revision']) or 0
  if tonumber(ARGV[4]) <= revision then return 0 end
  local at = tonumber(stored['enqueued_at'])
  redis.call('HSET', KEYS[3], ARGV[1],
    '{"order": ' .. ARGV[5] .. ', "enqueued_at": ' .. string.format('%.6f', at) .. '}')
  redis.call('ZADD', KEYS[4], 'XX', (9 - tonumber(ARGV[6])) * 1e13 + at * 1000, ARGV[1])
  result = 2
end
redis.call('LPUSH', KEYS[5], 'order')
redis.call('LTRIM', KEYS[5], 0, 99)
return result
"""

ADDED, REVISED = 1, 2
"""What :func:`enqueue` did: the attempt joined the waiting set, or a later revision of
its order (an altered priority) replaced the one waiting, in place."""


def enqueue(r: redis.Redis, order: RouteOrder) -> bool:
    """Put a routing order in the central waiting set (idempotent per attempt); whether
    the waiting set changed (see :func:`place`)."""
    return place(r, order) != 0


def place(r: redis.Redis, order: RouteOrder) -> int:
    """Put a routing order in the central waiting set (idempotent per attempt), in one
    script: an attempt handed to a site or taken back (``placed``) is never added again.

    An order for an attempt already waiting replaces it only with a higher
    :attr:`~faxfleet.messages.RouteOrder.revision` (the fax's priority was altered): its
    new priority re-scores it, keeping the time it has waited since (``enqueued_at``).
    Returns 0 (nothing done), :data:`ADDED` or :data:`REVISED`."""
    attempt = order.attempt_id
    enqueued = since(order)
    payload = order.model_dump(mode="json")
    done = r.eval(
        _ENQUEUE,
        5,
        keys.attempt_claim(attempt),
        placed_key(attempt),
        ORDERS,
        WAITING,
        keys.DISPATCH_WAKE,
        attempt,
        waiting_record(order, enqueued),
        urgency_score(order.priority, enqueued),
        order.revision,
        json.dumps(payload),
        order.priority,
    )
    return int(done)


@dataclass
class Fleet:
    """The cached view of the fleet one pass works from."""

    configs: dict[str, SiteConfig] = field(default_factory=dict)
    costs: dict[str, Any] = field(default_factory=dict)
    version: int = -1
    loaded_at: float = 0.0


class Dispatcher:
    def __init__(self, rt: Runtime, knobs: Knobs | None = None) -> None:
        self.rt = rt
        self.r = rt.redis
        self.knobs = knobs or knobs_from(rt.settings)
        self.refresh_seconds = rt.settings.routing_refresh_seconds
        self.cache = Fleet()
        self._summarised = 0.0
        self._held_for_band: set[str] = set()
        """Waiting faxes some pass held for a cheaper band (for the metrics' reason)."""
        self._waited_for_line: dict[str, str] = {}
        """Waiting faxes some pass kept waiting for a busy site's line, and that site."""
        self.claim = self.r.register_script(_CLAIM)
        self.reaper = Reaper(
            self.r,
            lambda order, kind, fields: self._event(order, kind, **fields),
            rt.log,
            claim_seconds=rt.settings.dispatch_claim_seconds,
        )

    def _event(self, order: RouteOrder, kind: type, **fields: Any) -> None:
        """Tell the fax's home site about this attempt."""
        event = kind(
            job_id=order.job_id,
            recipient=order.recipient,
            attempt=order.attempt,
            at=now(),
            **fields,
        )
        names.emit(self.rt.app, event, order.home_site)

    # -- shared state ---------------------------------------------------------------

    def _reload(self) -> None:
        """Site configuration and cost tables, kept when Redis cannot be read. Each
        table's bands are evaluated in its site's time zone as this configuration gives
        it, so a changed zone applies from the reload its version bump causes."""
        try:
            version = int(self.r.get(CONFIG_VERSION) or 0)
            stale = time.monotonic() - self.cache.loaded_at > self.refresh_seconds
            if version == self.cache.version and not stale:
                return
            from routing.cost_store import CostStore

            configs = Registry(self.r).sites()
            store = CostStore(self.r)
            costs = {name: store.current(name, config.timezone) for name, config in configs.items()}
            self.cache = Fleet(configs, costs, version, time.monotonic())
        except redis.RedisError as exc:
            self.rt.log.warning("keeping last good site configuration", error=str(exc))

    def _live(self) -> dict[str, tuple[SiteStatus, list[Held]]]:
        """Sites publishing their state, each with the faxes handed to it and not yet
        ended; two round trips whatever the fleet's size."""
        status_keys = list(self.r.scan_iter(match=keys.SITE_STATUS_PATTERN, count=1000))
        statuses = (
            [SiteStatus.model_validate_json(raw) for raw in self.r.mget(status_keys) if raw]
            if status_keys
            else []
        )
        with self.r.pipeline(transaction=False) as pipe:
            for status in statuses:
                pipe.hvals(keys.site_inflight(status.name))
            held = pipe.execute()
        return {
            status.name: (status, [Held.from_record(record) for record in raw])
            for status, raw in zip(statuses, held, strict=True)
        }

    @staticmethod
    def calls_in_progress(live: dict[str, tuple[SiteStatus, list[Held]]]) -> Counter[str]:
        """Destination numbers of the faxes held by live sites (what dead ones held goes
        back to the waiting set in the same pass)."""
        return Counter(order.number for _, held in live.values() for order in held)

    def site_states(self, live: dict[str, tuple[SiteStatus, list[Held]]]) -> dict[str, SiteState]:
        states = {}
        at = now()
        for name, (status, held) in live.items():
            config = self.cache.configs.get(name)
            states[name] = SiteState(
                name=name,
                group=group_of(name, self.cache.configs),
                lines_up=status.lines_up,
                busy=len(held),
                costs=self.cache.costs.get(name) if config else None,
                seconds_per_page=status.seconds_per_page,
                mean_call_seconds=status.mean_call_seconds,
                success=status.success,
                busy_until=tuple(self._expected_end(order, status, at) for order in held),
            )
        return states

    def _expected_end(self, order: Held, status: SiteStatus, at: datetime) -> float:
        """Seconds from ``at`` until the call for ``order`` should be over: its pages at
        the site's measured speed (or the knob) after the call set-up, from when it was
        handed out. A call running past its estimate is still on the line: it is expected
        to need one more page's time, not to end this instant (a site whose calls all
        overran would otherwise look free "in 0 s" and draw urgent faxes to wait for it)."""
        scale = self.knobs.time_scale
        per_page = status.seconds_per_page or self.knobs.seconds_per_page * scale
        pages = max(1, order.pages - order.first_page + 1)
        length = pages * per_page + self.knobs.call_setup_seconds * scale
        return max(per_page, length - (at - order.routed_at).total_seconds())

    def waiting(self, limit: int = 5000) -> list[tuple[WaitingFax, RouteOrder]]:
        ids = self.r.zrange(WAITING, 0, limit - 1)
        if not ids:
            return []
        records = self.r.hmget(ORDERS, ids)
        found = []
        for attempt, raw in zip(ids, records, strict=True):
            if raw is None:
                self.r.zrem(WAITING, attempt)  # an order without its record cannot be sent
                continue
            record = json.loads(raw)
            order = RouteOrder.model_validate(record["order"])
            if order.queued_since is None:
                order = order.model_copy(
                    update={"queued_since": datetime.fromtimestamp(record["enqueued_at"], UTC)}
                )
            fax = WaitingFax(
                key=attempt.decode(),
                number=order.number,
                pages=order.pages,
                priority=order.priority,
                enqueued_at=datetime.fromtimestamp(record["enqueued_at"], UTC),
                home_site=order.home_site,
            )
            found.append((fax, order))
        return found

    # -- one pass ---------------------------------------------------------------------

    def step(self) -> int:
        """Place what can be placed now; returns how many faxes were handed to sites."""
        self._reload()
        live = self._live()
        reaped = self.reaper.maybe_reap({name: st.worker for name, (st, _) in live.items()})
        if reaped.given_back or reaped.leases_lost:
            live = self._live()
        sites = self.site_states(live)
        waiting = self.waiting()
        if not waiting:
            self._summarise([], sites, set(), 0)
            return 0
        orders = {fax.key: order for fax, order in waiting}
        decisions = plan(
            [fax for fax, _ in waiting],
            sites,
            now(),
            self.knobs,
            lambda site: group_of(site, self.cache.configs),
            self.calls_in_progress(live),
        )
        sent = 0
        gone: set[str] = set()
        taken: Counter[str] = Counter()
        for decision in decisions:
            order = orders[decision.key]
            if decision.action == Action.DISPATCH and decision.site:
                if self._hand_to(order, decision, sites[decision.site]):
                    sent += 1
                    gone.add(decision.key)
                    self._count(order, decision, sites, taken)
                    taken[decision.site] += 1
            elif decision.action in (Action.NO_SITE, Action.NO_ROUTE):
                self._refuse(order, decision.action, decision.reason)
                gone.add(decision.key)
                metrics.DISPATCH_DECISIONS.labels("none", decision.action.value).inc()
        self._held_for_band = {
            d.key for d in decisions if d.action == Action.WAIT and d.deferred
        } | (self._held_for_band & set(orders).difference(gone))
        left = set(orders).difference(gone)
        self._waited_for_line = {
            key: site for key, site in self._waited_for_line.items() if key in left
        } | {
            d.key: d.site
            for d in decisions
            if d.action == Action.WAIT and not d.deferred and d.site and d.key in left
        }
        self._summarise([fax for fax, _ in waiting], sites, gone, sent)
        return sent

    def _count(
        self,
        order: RouteOrder,
        decision: Decision,
        sites: dict[str, SiteState],
        taken: Counter[str],
    ) -> None:
        """Count a fax handed to a site: why that site, and its price there."""
        site = sites[decision.site or ""]
        home = sites.get(order.home_site)
        if home is not None:  # the home site's lines as this pass left them
            home = dataclasses.replace(home, busy=home.busy + taken[home.name])
        held = decision.key in self._held_for_band
        reason = dispatch_reason(decision, order.home_site, home, held)
        metrics.DISPATCH_DECISIONS.labels(site.name, reason).inc()
        if site.costs is None:
            return
        pages = max(1, order.pages - order.first_page + 1)
        airtime = pages * self.knobs.seconds_per_page + self.knobs.call_setup_seconds
        price = site.costs.call_cost(order.number, now(), airtime)
        currency = getattr(site.costs, "currency", None)
        if price is not None and currency:
            metrics.DISPATCH_COST.labels(site.name, currency).inc(float(price))

    def _summarise(
        self, waiting: list[WaitingFax], sites: dict[str, SiteState], gone: set[str], sent: int
    ) -> None:
        """Publish what still waits, what is overdue and how many lines are free (at most
        once a second; health checks read it)."""
        if time.monotonic() - self._summarised < 1.0:
            return
        self._summarised = time.monotonic()
        at = now()
        left = [fax for fax in waiting if fax.key not in gone]
        by_priority = Counter(fax.priority for fax in left)
        overdue = sum(
            1
            for fax in left
            if (at - fax.enqueued_at).total_seconds() > self.knobs.promise(fax.priority)
        )
        free = sum(max(0, s.lines_up - s.busy) for s in sites.values()) - sent
        summary = DispatchSummary(
            at=at,
            waiting=dict(sorted(by_priority.items())),
            overdue=overdue,
            free_lines=max(0, free),
            oldest_wait_seconds=max(
                ((at - fax.enqueued_at).total_seconds() for fax in left), default=0.0
            ),
        )
        self.r.set(keys.DISPATCH_SUMMARY, summary.model_dump_json(), px=10_000)

    def _hand_to(self, order: RouteOrder, decision: Decision, state: SiteState) -> int:
        site = state.name
        config = self.cache.configs.get(site)
        dial = dial_string(order.number, config.dialing) if config else None
        placed_at = now()
        tariff = state.costs.lookup(order.number, placed_at) if state.costs else None
        terms = tariff.terms() if tariff is not None else None
        send = SendOrder(
            **order.model_dump(exclude={"queued_since"}),
            queued_since=order.queued_since,
            site=site,
            routed_at=placed_at,
            dial_string=dial,
            token=inflight.new_token(),
            tariff=terms,
        )
        record = inflight.record(send)
        claimed = self.claim(
            keys=[WAITING, ORDERS, keys.site_inflight(site), placed_key(order.attempt_id)],
            args=[order.attempt_id, state.lines_up, record, site],
        )
        if claimed != 1:
            return 0  # another dispatcher took it, or the site filled up meanwhile
        # The event first: the home site learns "queued" before the site can report.
        self._event(
            order,
            Routed,
            site=site,
            reason=decision.reason,
            choice=route_choice(
                decision,
                decision.key in self._held_for_band,
                self._waited_for_line.get(decision.key),
            ),
            cost=None if decision.cost is None else str(decision.cost),
            currency=getattr(state.costs, "currency", None),
            tariff=terms,
        )
        names.send(
            self.rt.app,
            names.SEND_TASK,
            "order",
            send,
            names.site_queue(site),
            names.celery_priority(order.priority),
        )
        self.rt.log.info(
            "dispatched",
            job=order.job_id,
            recipient=order.recipient,
            attempt=order.attempt,
            site=site,
            priority=order.priority,
        )
        return 1

    def _refuse(self, order: RouteOrder, action: Action, reason: str) -> None:
        if not self.r.zrem(WAITING, order.attempt_id):
            return
        self.r.hdel(ORDERS, order.attempt_id)
        cause = C.NO_SITE if action == Action.NO_SITE else C.NO_ROUTE
        self._event(order, Unroutable, cause=cause, detail=reason)
        self.rt.log.warning(
            "unroutable",
            job=order.job_id,
            recipient=order.recipient,
            cause=cause.value,
            reason=reason,
        )

    # -- loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event, idle_wait: float = 0.5) -> None:
        self.rt.log.info("dispatcher started")
        me = heartbeat.ident()
        while not stop.is_set():
            try:
                # Beats from the loop itself: a dispatcher stuck in a pass stops beating.
                heartbeat.beat(self.r, "dispatcher", me)
                self.r.blpop([keys.DISPATCH_WAKE], timeout=idle_wait)
                self.r.delete(keys.DISPATCH_WAKE)  # one pass serves every wake-up so far
                self.step()
            except redis.RedisError as exc:
                self.rt.log.warning("dispatch pass failed", error=str(exc))
                stop.wait(1.0)


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    rt = runtime("dispatcher")
    metrics.serve("dispatcher", rt.settings.metrics_port, rt.settings.metrics_address)
    Dispatcher(rt).run(stop)


if __name__ == "__main__":
    main()
