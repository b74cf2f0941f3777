"""Redis high availability through Sentinel: one URL, clients that follow the master,
submissions that are durable before they are accepted, and a whole fleet riding out a
master crash.

Every Redis and sentinel here is a private process on a free loopback port
(faxfleet/redis_sentinel.py); the machine's own Redis is never touched.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from kombu.transport import resolve_transport

from faxfleet import keys
from faxfleet.celery_app import make_celery
from faxfleet.fleet import Fleet, SiteSpec
from faxfleet.kombu_sentinel import SentinelTransport
from faxfleet.redis_conn import (
    NotReplicated,
    SentinelTarget,
    connect,
    connect_url,
    parse_sentinel_url,
    wait_for_replicas,
)
from faxfleet.redis_sentinel import DOWN_AFTER_MS, SentinelGroup
from faxfleet.redis_server import free_port
from faxfleet.settings import Settings
from scheduler.store import JobStore, UnknownJob, idem_key, tenant_key
from tests.conftest import FAST_FLEET_ENV, paged_text
from tests.test_store import make_fax

URL = "sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380;sentinel://127.0.0.1:26381/0?master=faxfleet"


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    with SentinelGroup(tmp_path / "sentinel") as group:
        yield group


# -- one setting ---------------------------------------------------------------------------


def test_sentinel_url_is_parsed_into_the_group() -> None:
    assert parse_sentinel_url(URL) == SentinelTarget(
        sentinels=(("127.0.0.1", 26379), ("127.0.0.1", 26380), ("127.0.0.1", 26381)),
        master="faxfleet",
        db=0,
    )
    target = parse_sentinel_url("sentinel://:s3cret@h1:1;sentinel://h2:2/3?master=m")
    assert (target.db, target.password, target.master) == (3, "s3cret", "m")
    for bad in (
        "sentinel://h1:1;sentinel://h2:2/0",  # no master
        "sentinel://h1:1/0?master=m&colour=red",
        "sentinel://h1:1/0;redis://h2:2/0?master=m",
        "sentinel://h1:1/0;sentinel://h2:2/1?master=m",
    ):
        with pytest.raises(ValueError):
            parse_sentinel_url(bad)


def test_celery_broker_is_kombus_sentinel_transport_with_the_usual_options() -> None:
    app = make_celery("t", Settings(redis_url=URL))
    assert app.conf.broker_url == (
        "sentinel://127.0.0.1:26379/0;sentinel://127.0.0.1:26380/0;sentinel://127.0.0.1:26381/0"
    )
    options = app.conf.broker_transport_options
    assert options["master_name"] == "faxfleet"
    assert options["priority_steps"] == list(range(10))
    assert options["queue_order_strategy"] == "priority"
    assert options["visibility_timeout"] == Settings().visibility_timeout
    # Queueing a task rides out a failover (kombu's default gives up after ~0.6 s).
    policy = app.conf.task_publish_retry_policy
    assert policy["max_retries"] * policy["interval_max"] >= 30
    assert app.conf.result_backend is None
    # Ours, also for the alternates kombu switches to when a connection fails.
    assert app.connection_for_write().transport_cls == "sentinel"
    assert resolve_transport("sentinel") is SentinelTransport
    assert options["failover_seconds"] == 30
    plain = make_celery("t", Settings(redis_url="redis://127.0.0.1:6390/0"))
    assert "master_name" not in plain.conf.broker_transport_options


def test_replica_acknowledgements_default_by_mode() -> None:
    assert Settings(redis_url=URL).min_replicas_ack == 1
    assert Settings(redis_url="redis://127.0.0.1:6390/0").min_replicas_ack == 0
    assert Settings(redis_url=URL, redis_min_replicas_ack=0).min_replicas_ack == 0


# -- (a) a client follows the master -----------------------------------------------------------


def test_client_keeps_working_through_a_master_crash(group: SentinelGroup) -> None:
    client = connect(Settings(redis_url=group.url))
    client.set("before", b"\x00binary\xff")
    wait_for_replicas(client, 1, 1000)  # on the replica before the crash
    assert client.get("before") == b"\x00binary\xff"  # bytes: decode_responses stays off

    old = group.master_address()
    killed_at = time.monotonic()
    group.kill_master()
    # The same client object, at once: the command retries until a replica is promoted.
    client.set("during", b"1")
    back_after = time.monotonic() - killed_at
    new = group.wait_for_promotion(old)
    assert new != old
    assert client.get("before") == b"\x00binary\xff"
    assert client.get("during") == b"1"
    # Written on the new master (not on a demoted node).
    assert group.node(new).client().get("during") == b"1"
    # Sentinel needs down-after-milliseconds to suspect the master, then a vote.
    assert DOWN_AFTER_MS / 1000 <= back_after < 20
    print(f"\nclient back {back_after:.2f} s after the master was killed")


def test_old_master_rejoins_as_a_replica_with_the_new_writes(group: SentinelGroup) -> None:
    client = connect_url(group.url)
    client.set("k", b"old")
    wait_for_replicas(client, 1, 1000)
    # A blocking command under way when the master dies (the dispatcher waits so) is
    # retried on the new master, not on the old address once it is back as a replica.
    woken: list[object] = []
    waiter = threading.Thread(
        target=lambda: woken.append(client.blpop(["wake"], timeout=20)), daemon=True
    )
    waiter.start()
    time.sleep(0.2)
    old = group.master_address()
    node = group.kill_master()
    group.wait_for_promotion(old)
    client.set("k", b"new")
    group.rejoin(node)
    time.sleep(0.5)
    client.rpush("wake", b"go")
    waiter.join(10)
    assert woken == [(b"wake", b"go")]
    assert node.client().info("replication")["role"] == "slave"
    wait_for_replicas(client, 1, 2000)
    assert node.client().get("k") == b"new"
    assert group.master_address() != old


# -- (b) WAIT: accepted means on a replica -------------------------------------------------------


def test_create_waits_for_a_replica_and_refuses_without_one(group: SentinelGroup) -> None:
    client = connect(Settings(redis_url=group.url))
    store = JobStore(client, retention_seconds=3600)
    fax, created = store.create(make_fax("fx_one"), "key-1", min_replicas=1)
    assert created
    replica = group.replica_nodes()[0]
    assert replica.client().exists("ff:job:fx_one")  # on the replica when create returned

    replica.stop()
    started = time.monotonic()
    with pytest.raises(NotReplicated) as refused:
        store.create(make_fax("fx_two"), "key-2", min_replicas=1, replica_timeout_ms=300)
    assert 0.3 <= time.monotonic() - started < 5
    assert "fax not stored" in refused.value.reason
    assert "0 of 1 Redis replica(s)" in refused.value.reason
    # Taken back: not readable, not listed, the key free for a new submission.
    with pytest.raises(UnknownJob):
        store.get("fx_two")
    assert client.zscore(tenant_key("acme"), "fx_two") is None
    assert not client.exists(idem_key("acme", "key-2"))
    assert not client.exists(keys.document("fx_two", 0))
    # A replay of a stored fax is not confirmed either while no replica is there.
    with pytest.raises(NotReplicated, match="fx_one is stored but not yet confirmed"):
        store.create(make_fax("fx_again"), "key-1", min_replicas=1, replica_timeout_ms=200)
    # A single-Redis deployment (0 replicas) is not held up.
    assert store.create(make_fax("fx_three"), None, min_replicas=0)[1]

    group.rejoin(replica)
    fax, created = store.create(make_fax("fx_two"), "key-2", min_replicas=1)
    assert created and fax.id == "fx_two"
    assert store.create(make_fax("fx_x"), "key-1", min_replicas=1)[0].id == "fx_one"


# -- (c) a whole fleet on Sentinel ---------------------------------------------------------------

ACME = {"X-API-Key": "acme-key"}


@contextlib.contextmanager
def sentinel_fleet(tmp: Path, sites: list[SiteSpec]) -> Iterator[tuple[Fleet, SentinelGroup]]:
    """A time-scaled fleet whose one Redis setting is a Sentinel group's URL."""
    group = SentinelGroup(tmp / "sentinel").start()
    api_port = free_port()
    env = {
        **FAST_FLEET_ENV,
        "FAXFLEET_REDIS_URL": group.url,
        "FAXFLEET_API_URLS": f"http://127.0.0.1:{api_port}",
        # A send silent for this long is declared outcome_uncertain: it must outlast a
        # failover (progress events wait for the new master), as the 600 s default does.
        # 15 s at this time scale (the fast fleets' 3 s is shorter than a failover).
        "FAXFLEET_STUCK_AFTER_SECONDS": "7500",
        # A site whose status key expires is taken for dead: the key must outlive the
        # failover too (the fast fleets' 1.5 s does not).
        "FAXFLEET_LOAD_TTL": "8",
        # The default dial budget: right after a failover a site may be handed a fax
        # while its lines are still taken (refused "line unavailable", retried at once);
        # the fast fleets' 4 dials, 60 ms apart, can run out on that alone.
        "FAXFLEET_MAX_DIALS": "12",
    }
    fleet = Fleet(sites, env, tmp / "logs", api_port=api_port)
    try:
        fleet.start()
        fleet.wait_ready()
        yield fleet, group
    finally:
        fleet.stop()
        group.stop()


@dataclass
class Watchdog:
    """Notes every fleet process that exits; restarts it if nothing else does within a
    second (the fleet may supervise its processes itself)."""

    fleet: Fleet
    exits: list[dict] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        seen: dict[str, int] = {}
        while not self.stop.wait(0.25):
            for name, proc in list(self.fleet.processes.items()):
                if proc.poll() is None or seen.get(name) == proc.pid:
                    continue
                seen[name] = proc.pid
                log = (self.fleet.log_dir / f"{name}.log").read_text(errors="replace")
                crash = [ln for ln in log.splitlines() if "Error" in ln][-3:]
                entry = {"service": name, "code": proc.returncode, "at": time.time()}
                entry["last_errors"] = crash
                if self.stop.wait(1.0):
                    return
                if self.fleet.processes.get(name) is proc:  # not restarted by the fleet
                    self.fleet.start_service(self.fleet.spec(name))
                    entry["restarted_by"] = "test"
                else:
                    entry["restarted_by"] = "fleet"
                self.exits.append(entry)


@dataclass
class Submission:
    number: str
    key: str
    fax_id: str | None = None
    status: int | None = None
    accepted_at: float | None = None
    refusals: list[str] = field(default_factory=list)


def _submit_until_accepted(api: httpx.Client, sub: Submission, give_up: float) -> None:
    """What the Python client does: a 503 or a dropped connection is tried again with the
    same idempotency key."""
    while time.monotonic() < give_up:
        try:
            resp = api.post(
                "/v1/faxes",
                headers=ACME,
                data={"to": [sub.number], "idempotency_key": sub.key},
                files=[("documents", ("doc.txt", paged_text(2), "text/plain"))],
            )
        except httpx.HTTPError as exc:
            sub.refusals.append(f"{type(exc).__name__}")
            time.sleep(0.2)
            continue
        if resp.status_code in (200, 201):
            sub.fax_id, sub.status, sub.accepted_at = (
                resp.json()["id"],
                resp.status_code,
                time.time(),
            )
            return
        sub.refusals.append(f"{resp.status_code} {resp.json().get('detail', '')}")
        assert resp.status_code in (500, 502, 503, 504), resp.text
        time.sleep(0.2)


def _when(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


@pytest.mark.fleet
def test_fleet_rides_out_a_master_crash(tmp_path: Path) -> None:
    faxes = 36
    with (
        sentinel_fleet(tmp_path, [SiteSpec("paris", 3)]) as (fleet, group),
        httpx.Client(base_url=fleet.api_url, timeout=60) as api,
    ):
        watchdog = Watchdog(fleet)
        watcher = threading.Thread(target=watchdog.run, daemon=True)
        watcher.start()
        subs = [Submission(f"+3314268{5600 + i}", f"ha-{i}") for i in range(faxes)]
        failover: dict[str, float] = {}

        def crash_after(accepted: int) -> None:
            while sum(s.fax_id is not None for s in subs) < accepted:
                time.sleep(0.02)
            old = group.master_address()
            failover["killed"] = time.time()
            node = group.kill_master()
            group.wait_for_promotion(old, timeout=60)
            failover["promoted"] = time.time()
            group.rejoin(node)
            failover["rejoined"] = time.time()

        crasher = threading.Thread(target=crash_after, args=(faxes // 3,), daemon=True)
        crasher.start()
        give_up = time.monotonic() + 120
        for sub in subs:
            _submit_until_accepted(api, sub, give_up)
            time.sleep(0.1)
        crasher.join(90)
        assert "rejoined" in failover, failover

        # Every fax accepted (201, or 200 for a replay of one) is sent, none lost.
        deadline = time.monotonic() + 120
        final: dict[str, dict] = {}
        for sub in subs:
            assert sub.fax_id, (sub.number, sub.refusals)
            while True:
                fax = api.get(f"/v1/faxes/{sub.fax_id}", headers=ACME).json()
                if fax["state"] in ("done", "failed", "cancelled", "outcome_uncertain"):
                    final[sub.fax_id] = fax
                    break
                assert time.monotonic() < deadline, json.dumps(fax, indent=1)[:3000]
                time.sleep(0.1)

        # (b) through the API: with no replica, a submission is refused with the reason.
        replica = group.replica_nodes()[0]
        replica.stop()
        resp = api.post(
            "/v1/faxes",
            headers=ACME,
            data={"to": ["+33142685699"], "idempotency_key": "ha-no-replica"},
            files=[("documents", ("doc.txt", paged_text(1), "text/plain"))],
        )
        assert resp.status_code == 503, resp.text
        assert "fax not stored" in resp.json()["detail"], resp.text
        assert resp.headers["retry-after"] == "1"
        group.rejoin(replica)
        watchdog.stop.set()
        watcher.join(5)

        r = connect_url(group.url)
        states = {f["state"] for f in final.values()}
        calls = {
            s.number: [json.loads(c) for c in r.lrange(keys.sim_received(s.number), 0, -1)]
            for s in subs
        }
        histories = {
            s.fax_id: api.get(f"/v1/faxes/{s.fax_id}", headers=ACME).json()["history"] for s in subs
        }

    killed = failover["killed"]

    def first_after_kill(state: str) -> float | None:
        stamps = [
            _when(h["at"])
            for hist in histories.values()
            for h in hist
            if h["to_state"] == state and _when(h["at"]) > killed
        ]
        return round(min(stamps) - killed, 2) if stamps else None

    accepted_after = sorted(s.accepted_at for s in subs if s.accepted_at and s.accepted_at > killed)
    extra_calls = sum(max(0, len(c) - 1) for c in calls.values())
    pages_twice = sum(
        len(pages) - len(set(pages))
        for c in calls.values()
        for pages in [[p for call in c for p in call.get("pages", [])]]
    )
    report = {
        "faxes": faxes,
        "failover_s": round(failover["promoted"] - killed, 2),
        "rejoined_s": round(failover["rejoined"] - killed, 2),
        # Calls under way go on without Redis; a new call needs the whole chain again.
        "first_dial_after_kill_s": first_after_kill("dialing"),
        "first_done_after_kill_s": first_after_kill("done"),
        "first_201_after_kill_s": round(accepted_after[0] - killed, 2) if accepted_after else None,
        "refused_submissions": sum(len(s.refusals) for s in subs),
        "refusals": sorted({x[:120] for s in subs for x in s.refusals}),
        "replays_200": sum(s.status == 200 for s in subs),
        "final_states": sorted(states),
        "lost": sum(1 for s in subs if final.get(s.fax_id or "", {}).get("state") != "done"),
        "far_end_extra_calls": extra_calls,
        "pages_received_twice": pages_twice,
        "resent_attempts": sum(
            max(0, (rc.get("attempt") or 1) - 1) for f in final.values() for rc in f["recipients"]
        ),
        "process_exits": watchdog.exits,
        "log_counts": {
            what: sum(
                log.read_text(errors="replace").count(what)
                for log in (tmp_path / "logs").glob("*.log")
            )
            for what in ("lease lost", "send order refused", "cause=line_unavailable")
        },
    }
    print("\nsentinel failover:", json.dumps(report, indent=1))
    (tmp_path / "report.json").write_text(json.dumps(report, indent=1))
    assert states == {"done"}, report
    assert report["lost"] == 0
    assert report["first_dial_after_kill_s"], "no call was started after the master was killed"
