"""The fleet's HTTP apps (the public API, the routing admin) as real uvicorn processes
for tests that need no whole fleet: started on free loopback ports, their output in a
log file each, waited for until ready, and stopped however the test ends."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from faxfleet.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_API = "scheduler.api:app"
ROUTING_ADMIN = "routing.admin:app"


def start(name: str, app: str, port: int, env: dict[str, str], logs: Path) -> subprocess.Popen:
    """``app`` on 127.0.0.1:``port``, its output in ``logs/<name>.log``."""
    out = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    out.close()
    return proc


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 20) -> None:
    """Until ``url`` answers its readiness check; its log in the error if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited:\n{log.read_text()}")
        try:
            # The public API's readiness is /readyz (its /healthz is the fleet's, and
            # there is no fleet here); the routing admin's is /healthz.
            for path in ("/readyz", "/healthz"):
                if httpx.get(f"{url}{path}", timeout=1).status_code == 200:
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not start:\n{log.read_text()}")


def stop(procs: Sequence[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass(frozen=True)
class App:
    url: str
    pid: int
    log: Path


@contextmanager
def running(apps: Sequence[tuple[str, str, dict[str, str]]], logs: Path) -> Iterator[list[App]]:
    """Each ``(name, app, env)`` started on a port of its own, in order, once every one
    is ready."""
    ports = [free_port() for _ in apps]
    procs: list[subprocess.Popen] = []
    try:
        for (name, app, env), port in zip(apps, ports, strict=True):
            procs.append(start(name, app, port, env, logs))
        started = [
            App(f"http://127.0.0.1:{port}", proc.pid, logs / f"{name}.log")
            for (name, _, _), port, proc in zip(apps, ports, procs, strict=True)
        ]
        for app, proc in zip(started, procs, strict=True):
            wait_ready(app.url, proc, app.log)
        yield started
    finally:
        stop(procs)


@contextmanager
def running_api(env: dict[str, str], logs: Path, name: str = "api") -> Iterator[App]:
    """One public API node."""
    with running([(name, PUBLIC_API, env)], logs) as apps:
        yield apps[0]
