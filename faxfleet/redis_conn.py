"""One way to open Redis connections, so every service parses the URL the same way.

``FAXFLEET_REDIS_URL`` is either one Redis (``redis://host:port/db``) or a Sentinel group::

    sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26379;sentinel://10.0.0.3:26379/0?master=faxfleet

Each ``sentinel://`` part names one sentinel; the database (``/0``) and the options
(``?master=<name>``, required; ``tls=yes``) may follow any part, usually the last. With a
password (``sentinel://:secret@host:port``) it is used for the master (and its replicas);
the sentinels' own password is ``FAXFLEET_REDIS_SENTINEL_PASSWORD``.
:func:`connect` then returns a client that asks the sentinels where the master is and
follows it through a failover; :func:`faxfleet.celery_app.make_celery` gives kombu's
Sentinel transport the same group (docs/reliability.md).

Access control (docs/administration.md): a password in the URL (``redis://:pw@host``),
TLS with ``rediss://`` (or ``?tls=yes`` on a Sentinel URL), verified against
``FAXFLEET_REDIS_TLS_CA`` (or the system's CAs), with a client certificate
(``FAXFLEET_REDIS_TLS_CERT`` and ``_KEY``) where the server asks for one. Everything
that connects to Redis comes through here (:class:`RedisAccess` carries what is not in
the URL), and a URL is only ever printed through :func:`~faxfleet.redact.redact_url`.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.connection import SSLConnection
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from faxfleet.settings import Settings, get_settings

T = TypeVar("T")

SENTINEL_SCHEME = "sentinel"
SENTINEL_SOCKET_TIMEOUT = 1.0
"""Seconds a sentinel may take to answer before the next one is asked."""
REPLICATION_MARK = "ff:replication:mark"
"""A counter written just before each ``WAIT`` (see :func:`wait_for_replicas`)."""


def is_sentinel_url(url: str) -> bool:
    return url.strip().lower().startswith(f"{SENTINEL_SCHEME}://")


def is_tls_url(url: str) -> bool:
    """``rediss://``, or a Sentinel URL with ``?tls=yes``."""
    if is_sentinel_url(url):
        return parse_sentinel_url(url).tls
    return url.strip().lower().startswith("rediss://")


@dataclass(frozen=True)
class RedisAccess:
    """What connecting to Redis takes beyond the URL: the TLS files, and the password
    the sentinels require (the master's password is in the URL)."""

    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, settings: Settings) -> RedisAccess:
        return cls(
            tls_ca=settings.redis_tls_ca,
            tls_cert=settings.redis_tls_cert,
            tls_key=settings.redis_tls_key,
            sentinel_password=settings.redis_sentinel_password,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RedisAccess:
        """From ``FAXFLEET_REDIS_TLS_*`` and ``FAXFLEET_REDIS_SENTINEL_PASSWORD`` in
        ``env`` (a launcher's environment for its children; default: this process's)."""
        env = os.environ if env is None else env
        return cls(
            tls_ca=env.get("FAXFLEET_REDIS_TLS_CA") or None,
            tls_cert=env.get("FAXFLEET_REDIS_TLS_CERT") or None,
            tls_key=env.get("FAXFLEET_REDIS_TLS_KEY") or None,
            sentinel_password=env.get("FAXFLEET_REDIS_SENTINEL_PASSWORD") or None,
        )

    def env(self) -> dict[str, str]:
        """The settings that give a fleet's processes this access."""
        pairs = {
            "FAXFLEET_REDIS_TLS_CA": self.tls_ca,
            "FAXFLEET_REDIS_TLS_CERT": self.tls_cert,
            "FAXFLEET_REDIS_TLS_KEY": self.tls_key,
            "FAXFLEET_REDIS_SENTINEL_PASSWORD": self.sentinel_password,
        }
        return {k: v for k, v in pairs.items() if v}

    def ssl_options(self) -> dict[str, Any]:
        """redis-py's ``ssl_*`` arguments (kombu's ``broker_use_ssl`` takes the same): the
        server's certificate is always verified, its host name included."""
        options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        if self.tls_ca:
            options["ssl_ca_certs"] = self.tls_ca
        if self.tls_cert:
            options["ssl_certfile"] = self.tls_cert
        if self.tls_key:
            options["ssl_keyfile"] = self.tls_key
        return options

    def sentinel_options(self, tls: bool) -> dict[str, Any]:
        """Connection arguments for the sentinels themselves."""
        options: dict[str, Any] = {
            "socket_timeout": SENTINEL_SOCKET_TIMEOUT,
            "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT,
        }
        if self.sentinel_password:
            options["password"] = self.sentinel_password
        if tls:
            options["ssl"] = True
            options.update(self.ssl_options())
        return options


@dataclass(frozen=True)
class SentinelTarget:
    """A Sentinel group and the database faxfleet uses on its master."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    password: str | None = None
    username: str | None = None
    tls: bool = False

    def kombu_url(self) -> str:
        """The same group as kombu's Sentinel transport wants it (``master_name`` goes in
        the transport options)."""
        auth = ""
        if self.password is not None:
            auth = f"{self.username or ''}:{self.password}@"
        return ";".join(f"sentinel://{auth}{h}:{p}/{self.db}" for h, p in self.sentinels)


def parse_sentinel_url(url: str) -> SentinelTarget:
    """``sentinel://h1:p1;sentinel://h2:p2/0?master=name`` -> :class:`SentinelTarget`."""
    sentinels: list[tuple[str, int]] = []
    options: dict[str, list[str]] = {}
    db: int | None = None
    password = username = None
    for part in (p.strip() for p in url.split(";")):
        if not part:
            continue
        parsed = urlsplit(part)
        if parsed.scheme.lower() != SENTINEL_SCHEME or not parsed.hostname:
            raise ValueError(f"not a sentinel://host:port URL: {part!r}")
        sentinels.append((parsed.hostname, parsed.port or 26379))
        if parsed.password is not None:
            password = unquote(parsed.password)
            username = unquote(parsed.username) if parsed.username else None
        path = parsed.path.strip("/")
        if path:
            if not path.isdigit():
                raise ValueError(f"the database of {part!r} is not a number")
            if db is not None and int(path) != db:
                raise ValueError(f"two different databases in {url!r}")
            db = int(path)
        for key, values in parse_qs(parsed.query).items():
            options.setdefault(key, []).extend(values)
    unknown = set(options) - {"master", "tls"}
    if unknown:
        raise ValueError(f"unknown option(s) in the sentinel URL: {', '.join(sorted(unknown))}")
    masters = set(options.get("master", []))
    if len(masters) != 1:
        raise ValueError("a sentinel URL needs exactly one ?master=<name> (the monitored group)")
    if not sentinels:
        raise ValueError("a sentinel URL needs at least one sentinel://host:port")
    tls_values = {v.strip().lower() for v in options.get("tls", [])}
    if not tls_values <= {"yes", "true", "1", "no", "false", "0"} or len(tls_values) > 1:
        raise ValueError("tls= in a sentinel URL is yes or no")
    return SentinelTarget(
        sentinels=tuple(sentinels),
        master=masters.pop(),
        db=db or 0,
        password=password,
        username=username,
        tls=bool(tls_values & {"yes", "true", "1"}),
    )


class FailoverRetry(Retry):
    """Retry connection errors and timeouts for up to ``seconds`` (not a number of tries).

    redis-py runs a connection's retry both around each command and around each
    reconnection, so a count would multiply; a deadline bounds each of them."""

    def __init__(self, seconds: float) -> None:
        super().__init__(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=1_000_000)
        self.seconds = seconds

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        deadline = time.monotonic() + self.seconds
        self._backoff.reset()
        failures = 0
        while True:
            try:
                return do()
            except self._supported_errors as error:
                if is_retryable is not None and not is_retryable(error):
                    raise
                failures += 1
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                delay = self._backoff.compute(failures)
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)


class FollowingConnection(SentinelManagedConnection):
    """A master connection that asks the sentinels again whenever it reconnects.

    redis-py 8's ``SentinelManagedConnection`` resolves the master only when the pool
    hands out a connection. A command that loses its connection and is retried
    reconnects in ``send_packed_command`` to the address it had: the dead master, then,
    once it is back as a replica, the replica (``READONLY``), until the retries run out
    (30 s in a drill, against a 2.3 s failover)."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:
            self.connect()
        super().send_packed_command(command, check_health)


class FollowingSSLConnection(FollowingConnection, SSLConnection):
    """:class:`FollowingConnection` over TLS."""


def connect(settings: Settings | None = None) -> redis.Redis:
    """A client returning ``bytes`` (blobs and JSON alike; callers decode).

    With a ``sentinel://`` URL, the client asks the sentinels for the master and follows
    it: on a connection error it retries for up to ``redis_failover_seconds``, asking
    again, so a failover is ridden out by the same client object."""
    s = settings or get_settings()
    return connect_url(
        s.redis_url, access=RedisAccess.of(s), failover_seconds=s.redis_failover_seconds
    )


def connect_url(
    url: str,
    *,
    access: RedisAccess | None = None,
    failover_seconds: float = 30.0,
    socket_timeout: float = 10.0,
) -> redis.Redis:
    """:func:`connect` for a URL (launchers and tools that have a URL, not settings);
    ``access``: the TLS files and the sentinels' password, if the URL needs them."""
    access = access or RedisAccess()
    if not is_sentinel_url(url):
        tls = access.ssl_options() if is_tls_url(url) else {}
        return redis.Redis.from_url(
            url, socket_timeout=socket_timeout, health_check_interval=30, **tls
        )
    target = parse_sentinel_url(url)
    sentinel = Sentinel(
        list(target.sentinels),
        sentinel_kwargs=access.sentinel_options(target.tls),
        socket_timeout=socket_timeout,
        socket_connect_timeout=min(2.0, socket_timeout),
        health_check_interval=30,
        retry=FailoverRetry(failover_seconds),
        db=target.db,
        username=target.username,
        password=target.password,
        **(access.ssl_options() if target.tls else {}),
    )
    connection_class = FollowingSSLConnection if target.tls else FollowingConnection
    return sentinel.master_for(target.master, connection_class=connection_class)


class NotReplicated(Exception):
    """Fewer Redis replicas than required acknowledged a write in time."""

    def __init__(self, reason: str, *, wanted: int, acked: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wanted = wanted
        self.acked = acked


def wait_for_replicas(client: redis.Redis, replicas: int, timeout_ms: int) -> int:
    """Block until ``replicas`` replicas hold every write made so far, at most
    ``timeout_ms``; raise :class:`NotReplicated` otherwise. Returns the replicas that did.

    ``WAIT`` covers the writes of the connection it runs on, and a pooled client may run
    it on another connection than the caller's last write; so a counter is incremented
    first on the same connection. The master's replication stream is ordered: a replica
    that has the increment has everything written before it, by any connection."""
    if replicas <= 0:
        return 0
    with client.pipeline(transaction=False) as pipe:
        pipe.incr(REPLICATION_MARK)
        pipe.wait(replicas, timeout_ms)
        _, acked = pipe.execute()
    acked = int(acked)
    if acked < replicas:
        raise NotReplicated(
            f"{acked} of {replicas} Redis replica(s) confirmed the write within {timeout_ms} ms",
            wanted=replicas,
            acked=acked,
        )
    return acked
