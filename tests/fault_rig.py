"""The fault rig: a cluster fleet under a stream of faxes while processes are killed,
Redis restarts, workers freeze past their lease and sites drop out; then an independent
count of what happened.

The far ends' own records are the independent record: each page the emulated receiver
confirms (``ff:sim:confirmed:<number>``, written as it sends MCF, so it survives a sender
killed mid-call) and each call it completes (``ff:sim:received:<number>``). Every fax
goes to a number of its own, so each record belongs to exactly one fax. The store is
checked against them:

* **lost**: a fax answered 201 that the store no longer knows;
* **stuck**: a fax not final (done, failed, cancelled or outcome_uncertain) at the end;
* **sent twice**: the far end received a fax's last page in more than one call;
* **done, not received**: the store says done but the far end lacks a page;
* **leaked slots**: in-flight records or leases left once everything is final;
* **notifications**: a settled state notified more than once, or a final state never.

Run by ``tests/test_faults.py`` (marker ``faults``): a short run in ``make test``,
``make faults`` for the long one (``FAXFLEET_FAULT_SECONDS``).
"""

from __future__ import annotations

import json
import random
import re
import signal
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from faxfleet import keys
from faxfleet.client import FaxClient, FaxError
from faxfleet.fleet import Fleet, SiteSpec
from faxfleet.redis_conn import connect_url
from faxfleet.redis_sentinel import SentinelGroup
from faxfleet.redis_server import RedisServer, free_port
from tests.conftest import FAST_FLEET_ENV, _Inbox, paged_text

FINAL = {"done", "failed", "cancelled", "outcome_uncertain"}

NOTIFY_WAIT_SECONDS = 60.0
"""How long a final state's mail may take after the fax settled: the outbox queues a lost
notification again 5 s after it was queued, then 10 s after that, and so on."""

SLOT_DRAIN_SECONDS = 20.0
"""How long slots may outlive the last fax becoming final: a worker killed between
reporting and freeing leaves its slot to the lease (1.5 s here) and the next reaper pass."""

_PROCESS_AND_SITE_FAULTS = (
    "kill:api",
    "kill:dispatcher",
    "kill:timers",
    "kill:routing",
    "kill:render",
    "kill:events",
    "kill:notify",
    "kill:site",
    "pause:site",
    "cut:site",
    "modem:stop",
)

FAULT_KINDS = (*_PROCESS_AND_SITE_FAULTS, "redis:restart", "redis:kill")
"""On one Redis: restarted by SIGTERM, and killed (SIGKILL), each time back on its AOF."""

SENTINEL_FAULT_KINDS = (*_PROCESS_AND_SITE_FAULTS, "redis:failover")
"""On a Sentinel group: the Redis faults are a master SIGKILLed and failed over (the old
master rejoins as a replica once the new one is up)."""


@dataclass
class Fault:
    kind: str
    target: str
    at: float
    detail: str = ""


@dataclass
class Accepted:
    id: str
    number: str
    pages: int
    priority: int
    at: float


@dataclass
class Report:
    seconds: float
    faxes: int
    refused: int
    faults: Counter[str]
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    sent_twice: list[str] = field(default_factory=list)
    done_not_received: list[str] = field(default_factory=list)
    stuck_detail: list[str] = field(default_factory=list)
    leaked_slots: int = 0
    leases_left: int = 0
    states: Counter[str] = field(default_factory=Counter)
    notified_twice: list[str] = field(default_factory=list)
    not_notified: list[str] = field(default_factory=list)
    restarts: Counter[str] = field(default_factory=Counter)
    inversions: int = 0
    """Hand-outs of a fax while a more urgent one had been waiting (faxes placed once)."""
    placements: int = 0
    recovery: dict[str, float] = field(default_factory=dict)
    """Per fault kind, the longest time from the fault to the next fax submitted after it
    reaching ``done``."""

    def lines(self) -> list[str]:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items()))
        rec = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(self.recovery.items()))
        return [
            f"run: {self.seconds:.0f} s, faxes accepted {self.faxes}, refused at submission "
            f"{self.refused}",
            f"faults ({sum(self.faults.values())}): {kinds}",
            "final states: " + ", ".join(f"{k} {n}" for k, n in sorted(self.states.items())),
            f"lost {len(self.lost)}, stuck {len(self.stuck)}, sent twice "
            f"{len(self.sent_twice)}, done but not received {len(self.done_not_received)}, "
            f"uncertain {self.states.get('outcome_uncertain', 0)}",
            f"leaked slots {self.leaked_slots}, leases left {self.leases_left}",
            f"priority inversions {self.inversions} among {self.placements} faxes placed once",
            f"notifications: a state notified twice {len(self.notified_twice)}, a final "
            f"state never notified {len(self.not_notified)}",
            "restarts by the supervisor: "
            + (", ".join(f"{k} {n}" for k, n in sorted(self.restarts.items())) or "none"),
            f"longest recovery by fault: {rec or '-'}",
            *self.stuck_detail,
        ]


class FaultRun:
    """Parameters: ``seconds`` of faults (one every ``every`` seconds, cycling through
    :data:`FAULT_KINDS` from a random start); ``rate``, faxes submitted per second;
    ``replicas`` of every process kind."""

    def __init__(
        self,
        tmp: Path,
        *,
        seconds: float,
        every: float = 8.0,
        rate: float = 1.5,
        replicas: int = 2,
        seed: int | None = None,
        sentinel: bool = False,
    ) -> None:
        self.sentinel = sentinel
        self.kinds = SENTINEL_FAULT_KINDS if sentinel else FAULT_KINDS
        self.tmp = tmp
        self.seconds = seconds
        self.every = every
        self.rate = rate
        self.replicas = replicas
        self.rng = random.Random(seed)
        self.accepted: list[Accepted] = []
        self.refused = 0
        self.faults: list[Fault] = []
        self._stop = threading.Event()
        self._n = 0

    # -- set-up ------------------------------------------------------------------------

    def __enter__(self) -> FaultRun:
        # One Redis with appendfsync always: a SIGKILL loses no acknowledged write (with
        # the product's default, everysec, it may lose the last second). On Sentinel, a
        # fax is answered 201 once a replica holds it (docs/reliability.md).
        if self.sentinel:
            self.group = SentinelGroup(self.tmp / "sentinel").start()
            url = self.group.url
        else:
            self.redis = RedisServer(self.tmp / "redis", appendfsync="always").start()
            url = self.redis.url
        self.inbox = _Inbox()
        self.smtp_port = free_port()
        self.smtp = Controller(self.inbox, hostname="127.0.0.1", port=self.smtp_port)
        self.smtp.start()
        env = {
            **FAST_FLEET_ENV,
            "FAXFLEET_REDIS_URL": url,
            "FAXFLEET_SMTP_PORT": str(self.smtp_port),
            "FAXFLEET_KILL_AFTER_SECONDS": "7200",
            "FAXFLEET_MAX_TRIES": "5",
            "FAXFLEET_SPOOL_DIR": str(self.tmp / "spool"),
        }
        if self.sentinel:  # outlast a failover (about 2.3 s), as tests/test_sentinel.py
            env |= {
                "FAXFLEET_STUCK_AFTER_SECONDS": "7500",
                "FAXFLEET_LOAD_TTL": "8",
                "FAXFLEET_MAX_DIALS": "12",
            }
        self.fleet = Fleet(
            [SiteSpec("paris", 3), SiteSpec("newyork", 2)],
            env,
            self.tmp / "logs",
            api_port=free_port(),
            replicas=self.replicas,
        )
        self.fleet.env["FAXFLEET_API_URLS"] = ",".join(self.fleet.api_urls)
        self.fleet.start()
        self.fleet.wait_ready(timeout=180)
        self.r = connect_url(url, socket_timeout=5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        try:
            self.fleet.stop()
        finally:
            if self.sentinel:
                self.group.stop()
            else:
                self.redis.stop()
            self.smtp.stop()

    # -- the stream of faxes -------------------------------------------------------------

    def _number(self, n: int) -> str:
        if n % 3 == 2:
            return f"+1212555{n % 10000:04d}"
        return f"+331426{n % 100000:05d}"

    def _submitter(self) -> None:
        client = FaxClient(self.fleet.api_urls, "acme-key", timeout=10)
        while not self._stop.is_set():
            self._n += 1
            n = self._n
            pages = 1 + n % 4
            priority = (1, 5, 9)[n % 3]
            number = self._number(n)
            key = f"fault-{n}"
            for _ in range(30):  # retried with the same key: still one fax
                try:
                    fax = client.send(
                        [("doc.txt", paged_text(pages))],
                        to=number,
                        priority=priority,
                        idempotency_key=key,
                        notify_email=f"f{n}@example.com",
                    )
                    self.accepted.append(Accepted(fax.id, number, pages, priority, time.time()))
                    break
                except FaxError as exc:
                    if exc.status < 500:
                        raise
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            else:
                self.refused += 1
            self._stop.wait(1 / self.rate)
        client.close()

    # -- faults ----------------------------------------------------------------------------

    def _services(self, kind: str) -> list[str]:
        return [s.name for s in self.fleet.topology() if s.kind == kind]

    def inject(self, kind: str) -> Fault:
        at = time.time()
        what, _, target = kind.partition(":")
        if what == "kill":
            name = self.rng.choice(self._services(target))
            self.fleet.kill(name)
            return Fault(kind, name, at)
        if what == "modem":
            # The modem of whichever paris line dials the next paris fax dies as it dials
            # (it stays dead until its site worker is restarted).
            n = self._n + 1
            while n % 3 == 2:
                n += 1
            number = self._number(n)
            self.r.rpush(keys.sim_script(number), "silent")
            return Fault(kind, number, at)
        if what == "redis" and target == "failover":
            old = self.group.kill_master()
            new = self.group.wait_for_promotion(old.address)
            self.group.rejoin(old)
            return Fault(kind, f"{old.address[1]} -> {new[1]}", at)
        if what == "redis":
            self.redis.restart(kill=target == "kill", down=1.0)
            return Fault(kind, "redis", at)
        site = self.rng.choice(self._services("site"))
        if what == "pause":
            pid = self.fleet.processes[site].pid
            lease = float(self.fleet.env.get("FAXFLEET_LEASE_SECONDS", "10"))
            threading.Thread(target=self._pause, args=(pid, lease * 2.5), daemon=True).start()
            return Fault(kind, site, at, f"SIGSTOP {lease * 2.5:.1f} s")
        # cut: the site's worker stops (its lines with it) and comes back later
        self.fleet.stop_service(site, grace=30)
        threading.Timer(self.every * 0.6, self._restore, args=(site,)).start()
        return Fault(kind, site, at)

    @staticmethod
    def _pause(pid: int, seconds: float) -> None:
        import os

        os.kill(pid, signal.SIGSTOP)
        time.sleep(seconds)
        os.kill(pid, signal.SIGCONT)

    def _restore(self, name: str) -> None:
        if name not in self.fleet.processes or self.fleet.processes[name].poll() is not None:
            self.fleet.start_service(self.fleet.spec(name))

    def _injector(self) -> None:
        kinds = list(self.kinds)
        start = self.rng.randrange(len(kinds))
        i = 0
        while not self._stop.wait(self.every):
            kind = kinds[(start + i) % len(kinds)]
            i += 1
            try:
                self.faults.append(self.inject(kind))
            except Exception as exc:  # a fault that could not be made is reported, not fatal
                self.faults.append(Fault(kind, "-", time.time(), f"not injected: {exc}"))

    # -- the run --------------------------------------------------------------------------

    def run(self, settle: float = 240.0) -> Report:
        started = time.time()
        submitter = threading.Thread(target=self._submitter, daemon=True)
        injector = threading.Thread(target=self._injector, daemon=True)
        submitter.start()
        time.sleep(2)
        injector.start()
        time.sleep(self.seconds)
        self._stop.set()
        injector.join(30)
        submitter.join(60)
        for name in self._services("site"):  # a cut site comes back for the end
            self._restore(name)
        self.fleet.wait_ready(timeout=120)
        faxes = self._settle(settle)
        return self._report(time.time() - started, faxes)

    def _settle(self, timeout: float) -> dict[str, dict[str, Any]]:
        client = FaxClient(self.fleet.api_urls, "acme-key", timeout=10)
        deadline = time.monotonic() + timeout
        faxes: dict[str, dict[str, Any]] = {}
        while True:
            for a in self.accepted:
                if faxes.get(a.id, {}).get("state") in FINAL:
                    continue
                try:
                    faxes[a.id] = client.get(a.id).model_dump(mode="json")
                except FaxError as exc:
                    faxes[a.id] = {"state": "lost" if exc.status == 404 else "unknown"}
            open_ = [i for i, f in faxes.items() if f.get("state") not in FINAL]
            if not open_ or time.monotonic() > deadline:
                client.close()
                return faxes
            time.sleep(1.0)

    def _far_end(self, number: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.r.lrange(keys.sim_received(number), 0, -1)]

    def _confirmed(self, number: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.r.lrange(keys.sim_confirmed(number), 0, -1)]

    def _report(self, seconds: float, faxes: dict[str, dict[str, Any]]) -> Report:
        rep = Report(
            seconds=seconds,
            faxes=len(self.accepted),
            refused=self.refused,
            faults=Counter(f.kind for f in self.faults if not f.detail.startswith("not")),
            restarts=Counter(self.fleet.restarts),
        )
        done_at: dict[str, float] = {}
        for a in self.accepted:
            fax = faxes.get(a.id, {})
            state = fax.get("state", "unknown")
            rep.states[state] += 1
            if state in ("lost", "unknown"):
                rep.lost.append(a.id)
                continue
            if state not in FINAL:
                rep.stuck.append(a.id)
                if len(rep.stuck_detail) < 5:
                    rep.stuck_detail.append("stuck: " + _describe(fax))
            calls = self._far_end(a.number)
            confirmed = self._confirmed(a.number)
            # The last page confirmed by the far end in two different calls: sent twice.
            last = {c["attempt"] for c in confirmed if c["page"] == a.pages}
            last |= {c["attempt"] for c in calls if a.pages in c.get("pages", [])}
            if len(last) > 1:
                rep.sent_twice.append(a.id)
            received = {p for c in calls for p in c.get("pages", [])}
            received |= {c["page"] for c in confirmed}
            if state == "done":
                if not set(range(1, a.pages + 1)) <= received:
                    rep.done_not_received.append(a.id)
                    rep.stuck_detail.append(
                        f"done, far end has pages {sorted(received)} of {a.pages}; "
                        f"confirmed {confirmed}; calls "
                        f"{[(c['attempt'], c['pages'], c['outcome']) for c in calls]}; "
                        + _describe(fax)
                    )
                done_at[a.id] = _done_time(fax)
        self._check_slots(rep, faxes)
        self._check_notifications(rep, faxes)
        self._check_priority(rep, faxes)
        for fault in self.faults:
            after = [
                done_at[a.id] - fault.at
                for a in self.accepted
                if a.at > fault.at and a.id in done_at
            ]
            if after:
                rep.recovery[fault.kind] = max(rep.recovery.get(fault.kind, 0.0), min(after))
        return rep

    def _check_slots(self, rep: Report, faxes: dict[str, dict[str, Any]]) -> None:
        """In-flight records and leases left once every fax is final. A worker reports a
        result before it frees the slot, and a slot whose worker died after reporting is
        freed when its lease lapses; so records get ``SLOT_DRAIN_SECONDS`` to go before
        they count as leaked, and each leaked one is described."""
        deadline = time.monotonic() + SLOT_DRAIN_SECONDS
        while True:
            left = {
                key.decode(): self.r.hgetall(key)
                for key in self.r.scan_iter(match=keys.site_inflight("*"))
            }
            leases = list(self.r.scan_iter(match=keys.lease("*")))
            if (not any(left.values()) and not leases) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for key, records in left.items():
            for attempt, raw in records.items():
                rep.leaked_slots += 1
                rec = json.loads(raw)
                fax_id = rec.get("order", {}).get("job_id", "?")
                fax = faxes.get(fax_id, {})
                rep.stuck_detail.append(
                    f"leaked slot {key} {attempt.decode()} claim "
                    f"{self.r.get(keys.attempt_claim(attempt.decode()))!r}: "
                    + (_describe(fax) if fax else fax_id)
                )
        rep.leases_left = len(leases)

    @staticmethod
    def _check_priority(rep: Report, faxes: dict[str, dict[str, Any]]) -> None:
        """Count hand-outs (``queued``) of a fax while a more urgent fax had been waiting
        for a line (``routing``) for more than a dispatch pass, among faxes waited for and
        placed exactly once (a fax routed again after a fault is left out: its wait
        restarted)."""
        placed = []
        for fax in faxes.values():
            history = fax.get("history", [])
            waits = [_at(h) for h in history if h["to_state"] == "routing"]
            hands = [_at(h) for h in history if h["to_state"] == "queued"]
            if len(waits) == 1 and len(hands) == 1:
                placed.append((fax["priority"], waits[0], hands[0]))
        rep.placements = len(placed)
        slack = 0.25  # a dispatch pass and the route order's trip to the waiting set
        for prio, _waited, handed in placed:
            rep.inversions += sum(
                1
                for other, other_waited, other_handed in placed
                if other > prio and other_waited + slack < handed < other_handed
            )

    def _mails(self) -> dict[str, Counter[str]]:
        """Settled states each fax was notified of, and how often."""
        by_fax: dict[str, Counter[str]] = defaultdict(Counter)
        with self.inbox.cond:
            messages: list[Message] = [m for _, _, m in self.inbox.messages]
        for msg in messages:
            subject = " ".join(str(msg.get("Subject", "")).split())  # unfold
            m = re.match(r"Fax (fx_\w+) to [^:]+: ([a-z ]+)", subject)
            if m:
                by_fax[m.group(1)][m.group(2).strip()] += 1
        return by_fax

    def _check_notifications(self, rep: Report, faxes: dict[str, dict[str, Any]]) -> None:
        """Each final state notified exactly once. The last faxes' mails may still be on
        their way, and one whose message was lost with a killed worker is queued again by
        the outbox: missing ones get ``NOTIFY_WAIT_SECONDS``."""
        deadline = time.monotonic() + NOTIFY_WAIT_SECONDS
        while True:
            by_fax = self._mails()
            missing = [
                i
                for i, f in faxes.items()
                if f.get("state") in FINAL
                and not any(_subject_state(k) == f.get("state") for k in by_fax.get(i, {}))
            ]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        time.sleep(2.0)  # a copy sent twice would be on its way now
        by_fax = self._mails()
        for fax_id, fax in faxes.items():
            state = fax.get("state")
            if state not in FINAL:
                continue
            seen = by_fax.get(fax_id, Counter())
            if any(n > 1 for n in seen.values()):
                rep.notified_twice.append(fax_id)
            if not any(_subject_state(k) == state for k in seen):
                rep.not_notified.append(fax_id)
                rep.stuck_detail.append(f"not notified ({dict(seen)}): " + _describe(fax))


def _describe(fax: dict[str, Any]) -> str:
    """One line on a fax that did not settle: its recipients and its last transitions."""
    rcpts = "; ".join(
        f"{r['number']} {r['state']} attempt {r['attempt']} site {r.get('site')} "
        f"page {r.get('page')} confirmed {r.get('pages_confirmed')} ({r.get('detail')})"
        for r in fax.get("recipients", [])
    )
    history = " | ".join(
        f"{h['from_state']}->{h['to_state']} {h.get('site')} {h.get('detail')}"
        for h in fax.get("history", [])[-8:]
    )
    return f"{fax.get('id')}: {rcpts} -- {history}"


def _at(transition: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(transition["at"]).timestamp()


def _subject_state(words: str) -> str:
    return {"outcome uncertain": "outcome_uncertain", "delivered": "done"}.get(words, words)


def _done_time(fax: dict[str, Any]) -> float:
    from datetime import datetime

    stamps = [r.get("updated_at") for r in fax.get("recipients", []) if r.get("updated_at")]
    return max(datetime.fromisoformat(s).timestamp() for s in stamps) if stamps else 0.0
