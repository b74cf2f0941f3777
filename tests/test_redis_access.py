"""Redis access control and secrets in logs: a password on every Redis (one server, a
Sentinel group and its sentinels), TLS with client certificates (the Debian
``redis-server`` is built with TLS; a throwaway CA is made with ``openssl``), every client
presenting them, and not one secret in the logs of a real fleet run.

Every Redis here is a private process on a free loopback port in the test's directory.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from redis.backoff import NoBackoff
from redis.retry import Retry

from faxfleet import keys
from faxfleet.celery_app import make_celery, queue_depth
from faxfleet.compose import COMPOSE_REPLICAS, COMPOSE_SITES, health_check, render_compose
from faxfleet.fleet import Fleet, SiteSpec
from faxfleet.log import get_logger, setup_logging
from faxfleet.redact import redact_url
from faxfleet.redis_conn import (
    RedisAccess,
    connect,
    connect_url,
    parse_sentinel_url,
    wait_for_replicas,
)
from faxfleet.redis_sentinel import SentinelGroup
from faxfleet.redis_server import RedisServer, TlsFiles, free_port, make_tls_files
from faxfleet.settings import Settings
from faxfleet.topology import topology
from tests.conftest import FAST_FLEET_ENV, paged_text


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def bare_client(port: int, tls: TlsFiles | None = None, **kwargs: object) -> redis.Redis:
    """A client with no password (unless given) that does not retry (redis-py retries an
    authentication error for seconds)."""
    if tls is not None:
        kwargs.update(ssl=True, **tls.access().ssl_options())
    return redis.Redis(port=port, retry=Retry(NoBackoff(), 0), **kwargs)  # type: ignore[arg-type]


def settings_for(env: dict[str, str]) -> Settings:
    return Settings(**{k.removeprefix("FAXFLEET_").lower(): v for k, v in env.items()})


def publish_and_count(settings: Settings) -> int:
    """Queue a task through the Celery broker the fleet would use; the queue's depth."""
    app = make_celery("access-test", settings)
    app.send_task("faxfleet.nothing", kwargs={}, queue="access-test")
    return queue_depth(connect(settings), "access-test")


# -- a password --------------------------------------------------------------------------


def test_redis_refuses_a_client_without_the_password_and_the_fleets_clients_give_it(
    tmp_path: Path,
) -> None:
    password = secrets.token_hex(12)
    server = RedisServer(tmp_path / "redis", password=password).start()
    try:
        assert server.url == f"redis://:{password}@127.0.0.1:{server.port}/0"
        with pytest.raises(redis.AuthenticationError):
            bare_client(server.port).ping()  # NOAUTH
        with pytest.raises(redis.AuthenticationError):
            bare_client(server.port, password="wrong-password").ping()
        # Not on the command line, which every local user can read (ps).
        assert password not in " ".join(server.process.args)  # type: ignore[union-attr]
        assert (tmp_path / "redis" / "access.conf").stat().st_mode & 0o077 == 0

        settings = Settings(redis_url=server.url)
        assert connect(settings).ping()
        assert publish_and_count(settings) == 1
    finally:
        server.stop()


# -- TLS ------------------------------------------------------------------------------------


def test_tls_with_a_client_certificate_for_clients_and_the_broker(
    tmp_path: Path, tls: TlsFiles
) -> None:
    password = secrets.token_hex(12)
    server = RedisServer(tmp_path / "redis", password=password, tls=tls).start()
    try:
        assert server.url.startswith(f"rediss://:{password}@127.0.0.1:")
        plain = server.url.replace("rediss://", "redis://")
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(plain, socket_timeout=2).ping()  # no TLS: no answer
        with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            connect_url(server.url).ping()  # a server the system's CAs do not vouch for
        no_client_cert = RedisAccess(tls_ca=str(tls.ca))
        with pytest.raises(redis.ConnectionError):
            connect_url(server.url, access=no_client_cert).ping()  # tls-auth-clients yes

        settings = settings_for(server.env)
        assert settings.redis_tls_ca == str(tls.ca)
        assert connect(settings).ping()
        app = make_celery("access-test", settings)
        # kombu on its own would take any certificate (CERT_NONE) on rediss://.
        assert app.conf.broker_use_ssl["ssl_cert_reqs"] == ssl.CERT_REQUIRED
        assert publish_and_count(settings) == 1
    finally:
        server.stop()


# -- compose ---------------------------------------------------------------------------------


def test_compose_redis_requires_a_password_and_the_health_checks_present_it(
    tmp_path: Path, tls: TlsFiles
) -> None:
    compose = yaml.safe_load(render_compose())
    services = compose["services"]
    redis_service = services.pop("redis")
    command = redis_service["command"]
    password = command[command.index("--requirepass") + 1]
    assert password.startswith("${FAXFLEET_REDIS_PASSWORD:?")  # no password, no start
    assert redis_service["environment"]["REDISCLI_AUTH"] == password
    assert "ports" not in redis_service
    for name, service in services.items():
        if name != "mail":
            url = service["environment"]["FAXFLEET_REDIS_URL"]
            assert url == f"redis://:{password}@redis:6379/0", name

    # The checks that read Redis connect as the services do (password, TLS, Sentinel).
    server = RedisServer(tmp_path / "redis", password=secrets.token_hex(12), tls=tls).start()
    try:
        host = socket.gethostname()
        r = server.client()
        r.set(keys.site_status("paris"), json.dumps({"worker": f"site-paris@{host}:1:x"}))
        r.set(f"ff:proc:dispatcher:{host}:1", b"1")
        specs = {s.name: s for s in topology(COMPOSE_SITES, replicas=COMPOSE_REPLICAS)}
        env = {**os.environ, **server.env, "FAXFLEET_SITE": "paris"}
        for name in ("site-paris", "dispatcher-1"):
            code = health_check(specs[name])[-1]
            run = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
            )
            assert run.returncode == 0, (name, run.stderr[-2000:])
    finally:
        server.stop()


# -- Sentinel --------------------------------------------------------------------------------


def test_sentinel_group_with_passwords_and_tls_rides_out_a_failover(
    tmp_path: Path, tls: TlsFiles
) -> None:
    master_pw, sentinel_pw = secrets.token_hex(12), secrets.token_hex(12)
    with SentinelGroup(
        tmp_path / "group", password=master_pw, sentinel_password=sentinel_pw, tls=tls
    ) as group:
        target = parse_sentinel_url(group.url)
        assert (target.password, target.tls) == (master_pw, True)
        for port in [n.port for n in group.nodes] + [w.port for w in group.watchers]:
            with pytest.raises(redis.AuthenticationError):
                bare_client(port, tls).ping()

        settings = settings_for(group.env)
        assert settings.redis_sentinel_password == sentinel_pw
        client = connect(settings)
        client.set("before", b"1")
        # Replication is asynchronous: as the fleet's store does, wait until every replica
        # holds the write, or the one promoted below may not have it.
        wait_for_replicas(client, len(group.nodes) - 1, 10_000)
        assert publish_and_count(settings) == 1
        # Without the sentinels' password nobody can say where the master is.
        no_sentinel_pw = dataclasses.replace(group.access, sentinel_password=None)
        with pytest.raises(redis.ConnectionError):
            connect_url(group.url, access=no_sentinel_pw, failover_seconds=0.5).get("before")

        # Replicas authenticate to the master, sentinels to the nodes and to each other:
        # a failover goes through, and the client follows it.
        old = group.master_address()
        group.kill_master()
        client.set("during", b"2")
        assert group.wait_for_promotion(old) != old
        assert client.get("before") == b"1" and client.get("during") == b"2"
        assert publish_and_count(settings) == 2


# -- secrets out of sight --------------------------------------------------------------------


def test_urls_settings_and_log_lines_show_no_secret() -> None:
    assert redact_url("redis://:s3cret-pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("rediss://user:s3cret-pw@h:6379/0") == "rediss://user:***@h:6379/0"
    assert redact_url("sentinel://:pw-one@h1:1;sentinel://:pw-one@h2:2/0?master=m") == (
        "sentinel://:***@h1:1;sentinel://:***@h2:2/0?master=m"
    )
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"

    given = {
        "redis_url": "redis://:redis-pw-0001@127.0.0.1:6390/0",
        "redis_sentinel_password": "sentinel-pw-0002",
        "api_keys": "acme=acme-key-0003,globex=globex-key-0004",
        "api_key": "acme-key-0003",
        "admin_keys": "admin-key-0005,admin-key-0006",
        "admin_key": "admin-key-0005",
        "webhook_secret": "webhook-secret-0007",
        "smtp_password": "smtp-pw-0008",
    }
    settings = Settings(**given)  # type: ignore[arg-type]
    secret_strings = {
        "redis-pw-0001", "sentinel-pw-0002", "acme-key-0003", "globex-key-0004",
        "admin-key-0005", "admin-key-0006", "webhook-secret-0007", "smtp-pw-0008",
    }  # fmt: skip
    api_keys = {"acme-key-0003", "globex-key-0004", "admin-key-0005", "admin-key-0006"}
    # API keys are hashed as the settings load (faxfleet/credentials.py): nothing of them
    # is kept to leak; every other secret is known to the log scrubber.
    assert secret_strings - api_keys <= settings.secret_values()
    # The API is unchanged: the values are there for the code that needs them.
    assert settings.keys.match("acme-key-0003").tenant == "acme"  # type: ignore[union-attr]
    assert settings.keys.match("globex-key-0004").tenant == "globex"  # type: ignore[union-attr]
    assert settings.smtp_password == "smtp-pw-0008"
    shown = repr(settings) + str(settings)
    assert not [s for s in secret_strings if s in shown]
    assert "redis://:***@127.0.0.1:6390/0" in shown  # the rest of the URL stays useful

    # Whatever puts a secret in a log line (a message, a field, an exception), it is
    # replaced by *** in the line written.
    root = logging.getLogger()
    before = list(root.handlers), root.level
    # uvicorn's loggers have handlers and formatters of their own, set up before the app.
    uvicorn_log, uvicorn_stream = logging.getLogger("uvicorn.error"), io.StringIO()
    uvicorn_handler = logging.StreamHandler(uvicorn_stream)
    uvicorn_log.addHandler(uvicorn_handler)
    try:
        setup_logging("INFO", "text", settings.secret_values())
        stream = io.StringIO()
        handler = next(h for h in root.handlers if getattr(h, "_faxfleet", False))
        handler.stream = stream  # type: ignore[attr-defined]
        log = get_logger("faxfleet.test")
        log.info(f"connecting to {settings.redis_url}", key="smtp-pw-0008")
        try:
            raise ValueError("bad secret webhook-secret-0007 / smtp-pw-0008")
        except ValueError:
            log.exception("failed", password="sentinel-pw-0002")
            uvicorn_log.exception("Exception in ASGI application %s", "webhook-secret-0007")
        written = stream.getvalue() + uvicorn_stream.getvalue()
    finally:
        root.handlers[:] = before[0]
        root.setLevel(before[1])
        uvicorn_log.removeHandler(uvicorn_handler)
    assert "connecting to redis://:***@127.0.0.1:6390/0 key=***" in written
    assert "ValueError: bad secret *** / ***" in written
    assert "Exception in ASGI application ***" in uvicorn_stream.getvalue()
    assert "ValueError: bad secret *** / ***" in uvicorn_stream.getvalue()
    assert not [s for s in secret_strings - api_keys if s in written]


def test_uvicorns_access_log_still_formats_through_the_scrubbing_filter() -> None:
    """uvicorn's access formatter reads the request's fields from the record's arguments:
    the filter scrubs them one by one instead of merging them into the message."""
    from uvicorn.logging import AccessFormatter

    access, stream = logging.getLogger("uvicorn.access"), io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(AccessFormatter('%(client_addr)s "%(request_line)s" %(status_code)s'))
    access.addHandler(handler)
    try:
        setup_logging("INFO", "text", {"webhook-secret-0007"})
        access.info(
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:5000",
            "GET",
            "/v1/faxes?token=webhook-secret-0007",
            "1.1",
            200,
        )
    finally:
        access.removeHandler(handler)
    line = stream.getvalue()
    assert '127.0.0.1:5000 "GET /v1/faxes?token=*** HTTP/1.1" 200' in line, line


# -- a fleet run --------------------------------------------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.count += 1
        return "250 OK"


@pytest.fixture
def smtp_with_login() -> Iterator[tuple[int, str, _Inbox]]:
    """An SMTP server that takes mail only after ``fax`` logs in with its password."""
    password = secrets.token_hex(12)

    def authenticate(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        ok = isinstance(auth_data, LoginPassword) and auth_data == LoginPassword(
            b"fax", password.encode()
        )
        return AuthResult(success=ok)

    inbox = _Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    yield port, password, inbox
    controller.stop()


@pytest.mark.fleet
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_fleet_on_redis_with_a_password_and_tls_logs_none_of_its_secrets(
    tmp_path: Path, tls: TlsFiles, smtp_with_login: tuple[int, str, _Inbox]
) -> None:
    """One small fleet (Flower included) on a Redis with a password and TLS, with its
    own API keys, admin key, webhook secret and SMTP password: faxes go out, mail is
    sent with the SMTP login; then no log file holds any of those secrets."""
    smtp_port, smtp_password, inbox = smtp_with_login
    redis_password = secrets.token_hex(16)
    key = {name: f"{name}-{secrets.token_hex(12)}" for name in ("acme", "globex", "admin")}
    webhook_secret = secrets.token_hex(16)
    server = RedisServer(tmp_path / "redis", password=redis_password, tls=tls).start()
    api_port = free_port()
    env = {
        **FAST_FLEET_ENV,
        **server.env,
        "FAXFLEET_API_URLS": f"http://127.0.0.1:{api_port}",
        "FAXFLEET_API_KEYS": f"acme={key['acme']},globex={key['globex']}",
        "FAXFLEET_API_KEY": key["acme"],
        "FAXFLEET_ADMIN_KEYS": key["admin"],
        "FAXFLEET_ADMIN_KEY": key["admin"],
        "FAXFLEET_WEBHOOK_SECRET": webhook_secret,
        "FAXFLEET_SMTP_PORT": str(smtp_port),
        "FAXFLEET_SMTP_USER": "fax",
        "FAXFLEET_SMTP_PASSWORD": smtp_password,
    }
    given = [redis_password, *key.values(), webhook_secret, smtp_password]
    fleet = Fleet(
        [SiteSpec("paris", 2)], env, tmp_path / "logs", api_port=api_port, flower_port=free_port()
    )
    try:
        fleet.start()
        fleet.wait_ready(timeout=90)
        with httpx.Client(base_url=fleet.api_url, timeout=30) as api:
            ids = []
            for i in range(2):
                resp = api.post(
                    "/v1/faxes",
                    headers={"X-API-Key": key["acme"]},
                    data={"to": [f"+3314268531{i}"], "notify_email": f"alice{i}@example.com"},
                    files=[("documents", ("doc.txt", paged_text(2), "text/plain"))],
                )
                assert resp.status_code == 201, resp.text
                ids.append(resp.json()["id"])
            assert api.get("/v1/sites", headers={"X-API-Key": key["admin"]}).status_code == 200
            assert api.get("/v1/faxes", headers={"X-API-Key": "wrong-key"}).status_code == 401
            deadline = time.monotonic() + 40
            states: list[str] = []
            while time.monotonic() < deadline:
                states = [
                    api.get(f"/v1/faxes/{i}", headers={"X-API-Key": key["acme"]}).json()["state"]
                    for i in ids
                ]
                if all(s == "done" for s in states) and inbox.count >= 2:
                    break
                time.sleep(0.1)
            assert states == ["done", "done"] and inbox.count >= 2, (states, inbox.count)
    finally:
        fleet.stop()
        server.stop()

    logs = [p for p in (tmp_path / "logs").iterdir() if p.is_file()]
    logs.append(tmp_path / "redis" / "redis.log")
    assert {p.name for p in logs} >= {"api.log", "flower.log", "site-paris.log", "redis.log"}
    found = {
        p.name: [i for i, secret in enumerate(given) if secret in p.read_text(errors="replace")]
        for p in logs
    }
    assert not {name: hits for name, hits in found.items() if hits}, found
    assert not [p.name for p in logs if "insecure SSL" in p.read_text(errors="replace")]
    # The Celery workers did print where they connect, with the password masked.
    assert "rediss://:**@127.0.0.1" in (tmp_path / "logs" / "site-paris.log").read_text()
