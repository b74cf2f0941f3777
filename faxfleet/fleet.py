"""The process launcher: the same topology as ``compose.yaml``, as supervised local
processes (the demo, ``faxfleet up``, the tests and the benchmarks use it).

:func:`~faxfleet.topology.topology` says which processes a fleet has; ``tests/test_layout.py``
checks ``compose.yaml`` against it. :class:`~faxfleet.supervisor.Supervisor` restarts any
of them that exits without being asked to. A service is "ready" by what its kind can
show: the HTTP ones answer their health URL, a site worker publishes its status from its
current process, the timer loop and the dispatcher beat from theirs, and a Celery worker
has logged that it is ready.

Every process that is not an HTTP service serves its metrics on a free loopback port of
its own; :meth:`Fleet.start` lists them, with the API's, for Prometheus in
``<log_dir>/metrics-targets.json`` (``file_sd_configs``; docs/metrics.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from faxfleet import heartbeat, keys
from faxfleet.credentials import FLOWER_AUTH_VAR
from faxfleet.redis_conn import RedisAccess, connect_url
from faxfleet.redis_server import free_port
from faxfleet.supervisor import Backoff, Restart, Supervisor
from faxfleet.topology import LINE_SLOTS, LOOP_KINDS, ServiceSpec, SiteSpec, topology

__all__ = [
    "LINE_SLOTS",
    "Backoff",
    "Fleet",
    "Restart",
    "ServiceSpec",
    "SiteSpec",
    "topology",
]

CRASH_LOOP_ATTEMPTS = 5
"""Quick exits in a row after which waiting for the fleet gives up (0.5 + 1 + 2 + 4 s of
backoff): a service that cannot start is a configuration error, not a blip."""

_HEALTH_PATHS = {"api": "/readyz", "routing-admin": "/healthz", "flower": "/healthcheck"}


@dataclass
class Fleet:
    """A running fleet of local processes, restarted when they exit on their own."""

    sites: list[SiteSpec]
    env: dict[str, str]
    log_dir: Path
    api_port: int = 8040
    flower_port: int | None = None
    admin_port: int | None = None
    """The (first) routing admin API's port (a free one when not given)."""
    replicas: int = 1
    """The cluster topology with 2 or more: every kind but the site worker runs this
    many times (see :mod:`faxfleet.topology`); extra API and admin nodes get free ports."""
    supervise: bool = True
    backoff: Backoff = field(default_factory=Backoff)
    on_restart: Callable[[Restart], None] | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api_ports: list[int] = field(default_factory=list)
    admin_ports: list[int] = field(default_factory=list)
    flower_auth: str | None = None
    """Flower's ``user:password``: the environment's ``FAXFLEET_FLOWER_BASIC_AUTH``, else
    a new password for this run (given to the Flower process only)."""
    metrics: bool = True
    """Each worker process serves its metrics on a free port (:attr:`metrics_ports`)."""
    metrics_ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.flower_port and not self.flower_auth:
            given = self.env.get(FLOWER_AUTH_VAR) or os.environ.get(FLOWER_AUTH_VAR)
            self.flower_auth = given or f"flower:{secrets.token_urlsafe(18)}"
        if self.admin_port is None:
            self.admin_port = free_port()
        if not self.api_ports:
            self.api_ports = [self.api_port] + [free_port() for _ in range(self.replicas - 1)]
        if not self.admin_ports:
            extra = [free_port() for _ in range(self.replicas - 1)]
            self.admin_ports = [self.admin_port, *extra]
        self.env = {**self.env, "FAXFLEET_ROUTING_ADMIN_URL": self.admin_url}
        self.supervisor = Supervisor(
            self.log_dir,
            self.env,
            backoff=self.backoff,
            enabled=self.supervise,
            on_restart=self.on_restart,
            processes=self.processes,
        )
        self._ready_seen: set[tuple[str, int]] = set()
        self._clients: dict[tuple[str, RedisAccess], redis.Redis] = {}

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_ports[0]}"

    @property
    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.api_ports]

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def restarts(self) -> Counter[str]:
        """Restarts per service since the fleet started (intentional ones not counted)."""
        return self.supervisor.restarts

    @property
    def restart_history(self) -> list[Restart]:
        return self.supervisor.history

    def topology(self) -> list[ServiceSpec]:
        specs = topology(
            self.sites,
            api_port=self.api_ports,
            admin_port=self.admin_ports,
            flower_port=self.flower_port,
            replicas=self.replicas,
            admin_host="127.0.0.1",
            metrics_port=self._metrics_port if self.metrics else None,
        )
        return [
            dataclasses.replace(s, env={**s.env, FLOWER_AUTH_VAR: self.flower_auth})
            if s.kind == "flower" and self.flower_auth
            else s
            for s in specs
        ]

    def _metrics_port(self, name: str) -> int:
        """A free port for ``name``'s metrics, none of the fleet's other ports (free
        ones not yet bound may come up twice)."""
        if name not in self.metrics_ports:
            taken = {*self.api_ports, *self.admin_ports, self.flower_port}
            taken |= set(self.metrics_ports.values())
            port = free_port()
            while port in taken:
                port = free_port()
            self.metrics_ports[name] = port
        return self.metrics_ports[name]

    def metrics_url(self, name: str) -> str:
        """Where service ``name`` serves its metrics."""
        port = self.spec(name).metrics_port
        if port is None:
            raise KeyError(f"{name} serves no metrics")
        return f"http://127.0.0.1:{port}/metrics"

    def metrics_targets(self) -> list[dict[str, object]]:
        """Every process's metrics endpoint, as Prometheus's file service discovery
        reads them (one group per service, labelled with its name and kind)."""
        return [
            {
                "targets": [f"127.0.0.1:{spec.metrics_port}"],
                "labels": {"service": spec.name, "kind": spec.kind},
            }
            for spec in self.topology()
            if spec.metrics_port
        ]

    # -- starting and stopping ------------------------------------------------------------

    def start(self, only: set[str] | None = None) -> Fleet:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        targets = self.log_dir / "metrics-targets.json"
        targets.write_text(json.dumps(self.metrics_targets(), indent=1) + "\n")
        for spec in self.topology():
            if only is not None and spec.name not in only:
                continue
            self.start_service(spec)
        return self

    def start_service(self, spec: ServiceSpec) -> subprocess.Popen[bytes]:
        return self.supervisor.start(spec)

    def spec(self, name: str) -> ServiceSpec:
        for spec in self.topology():
            if spec.name == name:
                return spec
        raise KeyError(name)

    def stop_service(self, name: str, *, kill: bool = False, grace: float = 15.0) -> None:
        """Stop a service on purpose (SIGTERM to its main process, or SIGKILL to its
        group with ``kill``): the supervisor leaves it stopped."""
        self.supervisor.stop(name, kill=kill, grace=grace)

    def stop(self) -> None:
        self.supervisor.stop_all()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Signal a service as a crash would (SIGKILL by default): unlike
        :meth:`stop_service`, the supervisor restarts it. Returns the PID signalled."""
        return self.supervisor.kill(name, sig)

    def wait_restarted(self, name: str, since: int, timeout: float = 60.0) -> int:
        """Until ``name`` has more than ``since`` restarts (read ``fleet.restarts[name]``
        before killing it); returns the new count."""
        return self.supervisor.wait_restarted(name, since, timeout)

    # -- readiness ------------------------------------------------------------------------

    def service_ready(self, name: str) -> bool:
        """Whether the service's current process is up, judged by its kind."""
        child = self.supervisor.children.get(name)
        if child is None or child.proc.poll() is not None:
            return False
        seen = (name, child.proc.pid)
        if seen in self._ready_seen:
            return True
        spec = child.spec
        if spec.kind in _HEALTH_PATHS and spec.port:
            ok = _http_ok(f"http://127.0.0.1:{spec.port}{_HEALTH_PATHS[spec.kind]}")
        elif spec.kind == "site":
            ok = self._site_published(spec.env["FAXFLEET_SITE"], child.proc.pid)
        elif spec.kind in LOOP_KINDS:  # they beat from their loops, as host:pid
            ok = self._exists(heartbeat.key(spec.kind, f"{socket.gethostname()}:{child.proc.pid}"))
        elif spec.node:  # Celery logs "<node>@<host> ready." once it consumes
            ready = rf"{re.escape(spec.node)}@\S+ ready\."
            ok = _logged(self.log_dir / f"{name}.log", child.log_offset, ready)
        else:
            ok = True
        if ok:
            self._ready_seen.add(seen)
        return ok

    def _redis(self) -> redis.Redis:
        """A client as the fleet's processes connect (they get this environment too)."""
        env = {**os.environ, **self.env}
        key = (env["FAXFLEET_REDIS_URL"], RedisAccess.from_env(env))
        if key not in self._clients:  # one pool, not a TLS handshake per readiness probe
            self._clients[key] = connect_url(
                key[0], access=key[1], socket_timeout=2, failover_seconds=2
            )
        return self._clients[key]

    def _exists(self, key: str) -> bool:
        try:
            return bool(self._redis().exists(key))
        except redis.RedisError:
            return False

    def _site_published(self, site: str, pid: int) -> bool:
        """The site's status key comes from this very process (its worker id carries
        the PID), not from the one it replaced."""
        try:
            raw = self._redis().get(keys.site_status(site))
        except redis.RedisError:
            return False
        if raw is None:
            return False
        return f":{pid}:" in str(json.loads(raw).get("worker", ""))

    def _not_ready(self) -> list[str]:
        waiting = [n for n in list(self.supervisor.children) if not self.service_ready(n)]
        sites = {
            c.spec.env.get("FAXFLEET_SITE")
            for c in list(self.supervisor.children.values())
            if c.spec.kind == "events"
        }
        try:
            homes = {h.decode() for h in self._redis().smembers(keys.HOME_SITES)}
        except redis.RedisError:
            return [*waiting, "redis"]
        waiting += [f"home site {s}" for s in sorted(s for s in sites if s and s not in homes)]
        return waiting

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every service started is up (see :meth:`service_ready`) and every site
        with an event worker is a home site. Services being restarted are waited for;
        only one that keeps failing to start (or any exit, without supervision) fails."""
        deadline = time.monotonic() + timeout
        waiting: list[str] = []
        while time.monotonic() < deadline:
            self._check_alive()
            waiting = self._not_ready()
            if not waiting:
                return
            time.sleep(0.1)
        raise TimeoutError(
            f"fleet not ready after {timeout} s: waiting for {waiting}; logs in {self.log_dir}"
        )

    def wait_service_ready(self, name: str, timeout: float = 60.0) -> float:
        """Until ``name``'s current process is ready; the seconds waited."""
        start = time.monotonic()
        while not self.service_ready(name):
            self._check_alive()
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"{name} not ready after {timeout} s; logs in {self.log_dir}")
            time.sleep(0.05)
        return time.monotonic() - start

    def _check_alive(self) -> None:
        """Raise for a service that is down for good: any exit without supervision, or
        a crash loop with it."""
        if self.supervise:
            failed = self.supervisor.crash_looping(CRASH_LOOP_ATTEMPTS)
        else:
            failed = self.supervisor.dead()
        for name in failed:
            code = self.processes[name].returncode
            tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited with {code}:\n{tail}")


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _logged(path: Path, offset: int, pattern: str) -> bool:
    """Whether ``pattern`` (a regex) is in the log after ``offset`` (this process's output)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return re.search(pattern.encode(), f.read()) is not None
    except OSError:
        return False
