"""The dispatcher: applies the placement policy to the live fleet, one line at a time.

Faxes wait centrally in priority order (``ff:rt:waiting``); a site is handed a fax only
when it has a free line, so no site holds a private backlog and a new urgent fax never
waits behind one. Run ``python -m routing.dispatcher``; several may run at once:

* **Claims are atomic.** Taking a fax off the waiting set and counting it against a
  site's lines is one Lua script: two dispatchers can never place the same fax twice,
  nor give a site more faxes than it has lines.
* **Sites that go down give their faxes back.** A fax handed to a site that stops
  publishing its state, and that its worker has not started (no attempt claim), goes
  back to the waiting set within ``load_ttl`` plus one pass. One the worker had started
  is left to the scheduler's watchdog (``outcome_uncertain``): it may be on the wire.
* **Caches survive Redis blips.** Site configuration and cost tables are cached and
  reloaded when the configuration version changes or every ``refresh_seconds``; if
  Redis cannot be read, the last good copy is kept and the pass is retried.
"""

from __future__ import annotations

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
from faxfleet import keys
from faxfleet.messages import Cause as C
from faxfleet.messages import Requeued, Routed, RouteOrder, SendOrder, SiteStatus, Unroutable, now
from faxfleet.runtime import Runtime, runtime
from faxfleet.settings import Settings
from routing.dialing import dial_string
from routing.policy import Action, Decision, Knobs, SiteState, WaitingFax, plan
from routing.sites import CONFIG_VERSION, Registry, SiteConfig, group_of

WAITING = "ff:rt:waiting"  # sorted set: attempt id, by urgency
ORDERS = "ff:rt:orders"  # hash: attempt id -> {"order": RouteOrder, "enqueued_at": ts}

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

# KEYS: inflight(site), waiting, orders, placed(attempt); ARGV: attempt, score, record
_GIVE_BACK = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('DEL', KEYS[4])
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


def placed_key(attempt_id: str) -> str:
    """Which site an attempt was handed to (so a repeated routing order is ignored)."""
    return f"ff:rt:placed:{attempt_id}"


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


def urgency_score(priority: int, enqueued_at: float) -> float:
    """Lower is first: priority band, then arrival (milliseconds)."""
    return (9 - priority) * 1e13 + enqueued_at * 1000


def enqueue(r: redis.Redis, order: RouteOrder) -> bool:
    """Put a routing order in the central waiting set (idempotent per attempt)."""
    attempt = order.attempt_id
    if r.exists(keys.attempt_claim(attempt), placed_key(attempt)):
        return False  # already handed to a site: a late duplicate of the order
    enqueued = time.time()
    record = json.dumps({"order": order.model_dump(mode="json"), "enqueued_at": enqueued})
    with r.pipeline() as pipe:
        pipe.hsetnx(ORDERS, attempt, record)
        pipe.zadd(WAITING, {attempt: urgency_score(order.priority, enqueued)}, nx=True)
        pipe.lpush(keys.DISPATCH_WAKE, "order")
        pipe.ltrim(keys.DISPATCH_WAKE, 0, 99)
        added = pipe.execute()[1]
    return bool(added)


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
        self.claim = self.r.register_script(_CLAIM)
        self.give_back = self.r.register_script(_GIVE_BACK)

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
        handed out; an overdue call is expected to end any moment."""
        scale = self.knobs.time_scale
        per_page = status.seconds_per_page or self.knobs.seconds_per_page * scale
        pages = max(1, order.pages - order.first_page + 1)
        length = pages * per_page + self.knobs.call_setup_seconds * scale
        return max(0.0, length - (at - order.routed_at).total_seconds())

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
        self.give_back_from_dead_sites(set(live))
        sites = self.site_states(live)
        waiting = self.waiting()
        if not waiting:
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
        for decision in decisions:
            order = orders[decision.key]
            if decision.action == Action.DISPATCH and decision.site:
                sent += self._hand_to(order, decision, sites[decision.site])
            elif decision.action in (Action.NO_SITE, Action.NO_ROUTE):
                self._refuse(order, decision.action, decision.reason)
        return sent

    def _hand_to(self, order: RouteOrder, decision: Decision, state: SiteState) -> int:
        site = state.name
        config = self.cache.configs.get(site)
        dial = dial_string(order.number, config.dialing) if config else None
        send = SendOrder(**order.model_dump(), site=site, routed_at=now(), dial_string=dial)
        record = json.dumps({"order": send.model_dump(mode="json"), "at": time.time()})
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
            cost=None if decision.cost is None else str(decision.cost),
            currency=getattr(state.costs, "currency", None),
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

    # -- sites that went away ---------------------------------------------------------

    def give_back_from_dead_sites(self, live: set[str]) -> int:
        """Faxes handed to sites that stopped publishing go back to the waiting set."""
        returned = 0
        for key in self.r.scan_iter(match=keys.site_inflight("*"), count=1000):
            site = key.decode().rsplit(":", 1)[1]
            if site in live:
                continue
            for attempt, raw in self.r.hgetall(key).items():
                if self.r.exists(keys.attempt_claim(attempt.decode())):
                    self.r.hdel(key, attempt)  # started: the watchdog judges it
                    continue
                send = SendOrder.model_validate(json.loads(raw)["order"])
                order = RouteOrder.model_validate(
                    send.model_dump(include=set(RouteOrder.model_fields))
                )
                record = json.dumps(
                    {"order": order.model_dump(mode="json"), "enqueued_at": time.time()}
                )
                score = urgency_score(order.priority, send.routed_at.timestamp())
                placed = placed_key(attempt.decode())
                if self.give_back(
                    keys=[key, WAITING, ORDERS, placed], args=[attempt, score, record]
                ):
                    returned += 1
                    self._event(
                        order,
                        Requeued,
                        site=site,
                        detail=f"site {site} went down before starting it",
                    )
                    self.rt.log.warning("given back", job=order.job_id, site=site)
        return returned

    # -- loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event, idle_wait: float = 0.5) -> None:
        self.rt.log.info("dispatcher started")
        while not stop.is_set():
            try:
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
    Dispatcher(runtime("dispatcher")).run(stop)


if __name__ == "__main__":
    main()
