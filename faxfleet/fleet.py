"""The process launcher: the same topology as ``compose.yaml``, as local processes.

A fleet is, per site: an event worker (ordered lifecycle events), a notifier and a site
worker with one thread per line; and once per fleet: the timer loop, the router, the
renderer, the API and (optionally) Flower. :func:`topology` is the single description of
that; ``tests/test_compose.py`` checks ``compose.yaml`` against it.

Services are stopped with SIGTERM to their main process only (a Celery worker then
finishes or hands back what it holds); whatever is left after a grace period is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from faxfleet import keys
from faxfleet.redis_server import free_port


@dataclass(frozen=True)
class SiteSpec:
    name: str
    lines: int


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def _celery(app: str, queue: str, pool: str, concurrency: int, node: str) -> list[str]:
    return [
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "-Q",
        queue,
        "-P",
        pool,
        "-c",
        str(concurrency),
        "-n",
        f"{node}@%h",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
    ]


LINE_SLOTS = 32


def topology(
    sites: list[SiteSpec],
    *,
    api_port: int = 8040,
    admin_port: int = 8041,
    flower_port: int | None = None,
    render_concurrency: int = 2,
    bind: str = "127.0.0.1",
) -> list[ServiceSpec]:
    """Every process of a fleet (argv without the Python interpreter).

    A site worker gets ``LINE_SLOTS`` threads (or more, for a larger site) so lines added
    at run time have a thread to run on; the dispatcher never hands it more faxes than
    it has lines in service, so the spare threads only ever wait."""
    services: list[ServiceSpec] = []
    for site in sites:
        env = {"FAXFLEET_SITE": site.name, "FAXFLEET_LINES": str(site.lines)}
        services += [
            ServiceSpec(
                f"events-{site.name}",
                _celery("scheduler.tasks", f"events.{site.name}", "solo", 1, f"events-{site.name}"),
                env,
            ),
            ServiceSpec(
                f"notify-{site.name}",
                _celery(
                    "scheduler.tasks", f"notify.{site.name}", "threads", 4, f"notify-{site.name}"
                ),
                env,
            ),
            ServiceSpec(
                f"site-{site.name}",
                _celery(
                    "workers.site",
                    f"site.{site.name}",
                    "threads",
                    max(site.lines, LINE_SLOTS),
                    f"site-{site.name}",
                ),
                env,
            ),
        ]
    home = {"FAXFLEET_SITE": sites[0].name}
    services += [
        ServiceSpec("timers", ["-m", "scheduler.timers"], home),
        ServiceSpec("routing", _celery("routing.tasks", "routing", "threads", 2, "routing"), home),
        ServiceSpec("dispatcher", ["-m", "routing.dispatcher"], home),
        ServiceSpec(
            "routing-admin",
            [
                "-m",
                "uvicorn",
                "routing.admin:app",
                "--host",
                bind,
                "--port",
                str(admin_port),
                "--no-access-log",
            ],
            home,
        ),
        ServiceSpec(
            "render",
            _celery("workers.rendering", "render", "prefork", render_concurrency, "render"),
            home,
        ),
        ServiceSpec(
            "api",
            [
                "-m",
                "uvicorn",
                "scheduler.api:app",
                "--host",
                bind,
                "--port",
                str(api_port),
                "--no-access-log",
            ],
            home,
        ),
    ]
    if flower_port:
        services.append(
            ServiceSpec(
                "flower",
                [
                    "-m",
                    "celery",
                    "-A",
                    "faxfleet.monitor",
                    "flower",
                    f"--port={flower_port}",
                    f"--address={bind}",
                ],
                home,
            )
        )
    return services


@dataclass
class Fleet:
    """A running fleet of local processes."""

    sites: list[SiteSpec]
    env: dict[str, str]
    log_dir: Path
    api_port: int = 8040
    flower_port: int | None = None
    admin_port: int | None = None
    """The routing admin API's port (a free one when not given)."""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.admin_port is None:
            self.admin_port = free_port()
        self.env = {**self.env, "FAXFLEET_ROUTING_ADMIN_URL": self.admin_url}

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def topology(self) -> list[ServiceSpec]:
        return topology(
            self.sites,
            api_port=self.api_port,
            admin_port=self.admin_port or 8041,
            flower_port=self.flower_port,
        )

    def start(self, only: set[str] | None = None) -> Fleet:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.topology():
            if only is not None and spec.name not in only:
                continue
            self.start_service(spec)
        return self

    def start_service(self, spec: ServiceSpec) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.env, **spec.env, "PYTHONUNBUFFERED": "1"}
        out = open(self.log_dir / f"{spec.name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            [sys.executable, *spec.argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        self.processes[spec.name] = proc
        return proc

    def spec(self, name: str) -> ServiceSpec:
        for spec in self.topology():
            if spec.name == name:
                return spec
        raise KeyError(name)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the API answers and every site publishes its status."""
        r = redis.Redis.from_url(self.env["FAXFLEET_REDIS_URL"])
        deadline = time.monotonic() + timeout
        waiting: list[str] = []
        while time.monotonic() < deadline:
            self._check_alive()
            homes = {h.decode() for h in r.smembers(keys.HOME_SITES)}
            waiting = [s.name for s in self.sites if not r.exists(keys.site_status(s.name))]
            waiting += [f"events-{s.name}" for s in self.sites if s.name not in homes]
            if not waiting and "api" in self.processes:
                try:
                    if httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200:
                        return
                    waiting = ["api"]
                except httpx.HTTPError:
                    waiting = ["api"]
            elif not waiting:
                return
            time.sleep(0.2)
        raise TimeoutError(
            f"fleet not ready after {timeout} s: waiting for {waiting}; logs in {self.log_dir}"
        )

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop_service(self, name: str, *, kill: bool = False, grace: float = 15.0) -> None:
        proc = self.processes.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        if kill:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # Pool children left behind by a worker that exited are not ours to keep.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        for name in list(self.processes):
            proc = self.processes[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name in list(self.processes):
            self.stop_service(name, grace=max(0.1, deadline - time.monotonic()))
