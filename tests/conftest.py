"""Shared fixtures: private redis-server processes, a real SMTP server, a real HTTP
receiver, and whole local fleets of real Celery workers.

Nothing here touches the machine's own Redis on 6379: every Redis is started on a free
loopback port in the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from aiosmtpd.controller import Controller

from faxfleet import signing
from faxfleet.fleet import Fleet, SiteSpec
from faxfleet.redis_server import RedisServer, free_port
from tests.pg_cluster import PgCluster

WEBHOOK_SECRET = "test-webhook-secret"

# Every service a test starts runs in demo mode (plain, short test keys accepted) unless
# the test says otherwise; tests/test_credentials.py and tests/test_flower.py check the
# refusals outside it.
os.environ.setdefault("FAXFLEET_DEMO", "1")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgCluster]:
    """A private PostgreSQL cluster for the session (tests/pg_cluster.py): its own
    ``initdb`` on a free port, run as an unprivileged user, never the machine's own."""
    cluster = PgCluster().start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def r(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A clean database on the session's private Redis (not used by any fleet)."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


# -- SMTP ---------------------------------------------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []
        self.cond = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content)
        with self.cond:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
            self.cond.notify_all()
        return "250 OK"

    def wait_for(self, predicate, timeout: float = 30.0) -> list[Message]:
        with self.cond:
            self.cond.wait_for(
                lambda: any(predicate(m) for _, _, m in self.messages), timeout=timeout
            )
            return [m for _, _, m in self.messages if predicate(m)]


@dataclass
class SmtpServer:
    port: int
    inbox: _Inbox


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SmtpServer]:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield SmtpServer(port, inbox)
    controller.stop()


# -- webhook receiver -----------------------------------------------------------------------


@dataclass
class Receiver:
    port: int
    calls: list[dict] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    fail_next: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fax-result"

    def wait_for(self, predicate, timeout: float = 30.0) -> list[dict]:
        with self.cond:
            self.cond.wait_for(lambda: any(predicate(c) for c in self.calls), timeout=timeout)
            return [c for c in self.calls if predicate(c)]


@pytest.fixture(scope="module")
def webhook_receiver() -> Iterator[Receiver]:
    """A real HTTP server that verifies each callback's signature and records it."""
    receiver = Receiver(port=free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with receiver.cond:
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    receiver.calls.append({"failed_on_purpose": True})
                    self.send_response(503)
                    self.end_headers()
                    return
                try:
                    signing.verify(WEBHOOK_SECRET, dict(self.headers), body)
                    verified = True
                except signing.InvalidSignature:
                    verified = False
                receiver.calls.append({"verified": verified, "body": json.loads(body)})
                receiver.cond.notify_all()
            self.send_response(204 if verified else 401)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()


# -- fleets -----------------------------------------------------------------------------------

FAST_FLEET_ENV = {
    "FAXFLEET_TIME_SCALE": "0.002",
    # Real fax calls on emulated modem pairs (docs/lines.md), 100 times faster than a line.
    "FAXFLEET_LINE_KIND": "emulated",
    "FAXFLEET_EMULATOR_TIME_SCALE": "100",
    "FAXFLEET_SIM_DIAL_SECONDS": "0.05",
    "FAXFLEET_SIM_PAGE_SECONDS": "0.15",
    "FAXFLEET_STUCK_AFTER_SECONDS": "1500",  # 3 s at this time scale
    "FAXFLEET_ROUTING_STUCK_AFTER_SECONDS": "2500",
    # Leases in real seconds: a dead worker's call is picked up again within ~2 s.
    "FAXFLEET_LEASE_SECONDS": "1.5",
    "FAXFLEET_DISPATCH_CLAIM_SECONDS": "5",
    "FAXFLEET_NOTIFY_REDELIVER_SECONDS": "5",
    "FAXFLEET_RENDER_STUCK_AFTER_SECONDS": "20",
    "FAXFLEET_MAX_DIALS": "4",
    "FAXFLEET_MAX_TRIES": "3",
    "FAXFLEET_LOAD_PUBLISH_INTERVAL": "0.3",
    "FAXFLEET_LOAD_TTL": "1.5",
    "FAXFLEET_NOTIFY_BACKOFF_SECONDS": "50",  # 0.1 s at this time scale
    "FAXFLEET_DEMO": "1",  # test keys are plain and short: accepted in demo mode only
    "FAXFLEET_WEBHOOK_SECRET": WEBHOOK_SECRET,
    # Callbacks go to public addresses only by default: the receivers of the tests are on
    # loopback, opened here (tests/test_callback_guard_fleet.py runs a strict fleet).
    "FAXFLEET_CALLBACK_ALLOW": "127.0.0.0/8,::1",
    "FAXFLEET_API_KEYS": "acme=acme-key,globex=globex-key",
    "FAXFLEET_API_KEY": "acme-key",
    "FAXFLEET_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
}


@contextmanager
def running_fleet(
    tmp: Path, sites: list[SiteSpec], extra_env: dict[str, str] | None = None
) -> Iterator[Fleet]:
    """A time-scaled fleet on its own redis-server, stopped (with its Redis) on exit."""
    server = RedisServer(tmp / "redis").start()
    api_port = free_port()
    env = {
        **FAST_FLEET_ENV,
        "FAXFLEET_REDIS_URL": server.url,
        "FAXFLEET_API_URLS": f"http://127.0.0.1:{api_port}",
        **(extra_env or {}),
    }
    fleet = Fleet(sites, env, tmp / "logs", api_port=api_port)
    try:
        fleet.start()
        fleet.wait_ready()
        yield fleet
    finally:
        fleet.stop()
        server.stop()


def paged_text(pages: int) -> bytes:
    """A plain-text document of ``pages`` pages (form feeds break pages)."""
    return b"\f".join(f"page {i}".encode() for i in range(1, pages + 1))


# -- parallel runs ----------------------------------------------------------------------------

LINE_FILES = frozenset(
    {
        "test_at_port.py",
        "test_class1_iaxmodem.py",
        "test_class1_primitives.py",
        "test_class2_hylafax.py",
        "test_realline_fleet.py",
        "test_session_realline.py",
        "test_softline.py",
    }
)
"""Test files that run software fax lines (iaxmodem, efax, HylaFAX): real-time calls."""

FLEET_FILES = frozenset(
    {
        "test_acct_fleet.py",
        "test_callback_guard_fleet.py",
        "test_cluster.py",
        "test_console_admin.py",
        "test_console_browser.py",
        "test_demo.py",
        "test_faults.py",
        "test_fleet_alter.py",
        "test_fleet_e2e.py",
        "test_fleet_failures.py",
        "test_fleet_priority.py",
        "test_fleet_render.py",
        "test_fleet_resolve.py",
        "test_fleet_routing.py",
        "test_fleet_site_loss.py",
        "test_health.py",
        "test_inbound_fleet.py",
        "test_metrics_fleet.py",
        "test_readme_tour.py",
        "test_redis_access.py",
        "test_sentinel.py",
        "test_supervision.py",
    }
)
"""Test files with tests that start whole fleets (marker ``fleet``)."""


def _resource(nodeid: str) -> str | None:
    name = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    return "line" if name in LINE_FILES else "fleet" if name in FLEET_FILES else None


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist (``make test`` runs two workers): every software-line test runs
    on one worker, one call at a time, as the calls are real time and HylaFAX's tools
    share system paths; every fleet test runs on the other, one fleet at a time, so the
    fleets' timing is what it is on a quiet machine; the rest is shared out. The two
    groups are the largest units of work, so xdist hands them out first, one each."""
    from xdist.scheduler import LoadScopeScheduling

    class ByResource(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _resource(nodeid) or nodeid

    return ByResource(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A fleet or software-line test in a file the parallel run does not know would run
    beside another fleet or line: refuse to run until it is listed."""
    unknown = sorted(
        {
            item.path.name
            for item in items
            if (item.get_closest_marker("fleet") or item.get_closest_marker("realline"))
            and _resource(item.nodeid) is None
        }
    )
    if unknown:
        raise pytest.UsageError(
            f"add {', '.join(unknown)} to LINE_FILES or FLEET_FILES in tests/conftest.py"
        )
