"""The processes a fleet is made of: one description for the launcher and compose.yaml.

A fleet is, per site: an event worker (lifecycle events), a notifier and a site worker
with one thread per line; and once per fleet: the timer loop, the router, the
dispatcher, the routing admin API, the renderer, the API and (optionally) Flower, which
always asks for credentials. Every HTTP service binds to loopback unless told otherwise.

With ``replicas=N`` (N >= 2, the "cluster" topology) every kind runs N times except the
site worker: a site's lines are the devices of one process, so a site has one worker and
relies on supervision (the launcher's supervisor, compose's restart policy) to come back.
Replicated services are named ``<kind>-<i>`` (``dispatcher-1``, ``events-paris-2``); with
one replica the names carry no number, as they always have.

Metrics (docs/metrics.md): the API serves ``/metrics`` on its own port; with
``metrics_port`` every process that is not an HTTP service serves its own on
``FAXFLEET_METRICS_PORT``, one port for all (each in a container of its own, as compose
runs them) or a port per service (a function of the service's name, as the launcher
gives them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SiteSpec:
    name: str
    lines: int


@dataclass(frozen=True)
class ServiceSpec:
    """One process: its argv (without the interpreter), environment, and what it is.

    ``kind`` says how to tell that the process is up (an HTTP health URL on ``port``, the
    site's status key, a Celery node ``node`` answering); an empty kind means "running"
    is all that can be checked."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    kind: str = ""
    port: int | None = None
    node: str | None = None
    exec_via: list[str] = field(default_factory=list)
    """A command that runs the process and then execs it, e.g. ``ip netns exec NAME`` to
    give a site a network of its own (the pid stays the process's own)."""
    metrics_port: int | None = None
    """Where the process serves ``/metrics`` (the API: its own port), if it does."""


LINE_SLOTS = 32

HTTP_KINDS = frozenset({"api", "routing-admin", "flower"})
CELERY_KINDS = frozenset({"events", "notify", "site", "routing", "render"})
LOOP_KINDS = frozenset({"timers", "dispatcher"})


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


def _uvicorn(app: str, bind: str, port: int) -> list[str]:
    return ["-m", "uvicorn", app, "--host", bind, "--port", str(port), "--no-access-log"]


def replica_names(base: str, replicas: int) -> list[str]:
    """``[base]`` for one replica (the names every single-node fleet has always had),
    ``[base-1, .., base-N]`` for more."""
    return [base] if replicas == 1 else [f"{base}-{i}" for i in range(1, replicas + 1)]


def _ports(port: int | Sequence[int], replicas: int) -> list[int]:
    """Explicit ports, or ``port, port+2, ..``: API and admin ports interleave (8040,
    8041, 8042, 8043), so neither replica set runs into the other."""
    if isinstance(port, int):
        return [port + 2 * i for i in range(replicas)]
    if len(port) < replicas:
        raise ValueError(f"{replicas} replicas need {replicas} ports, got {list(port)}")
    return list(port)[:replicas]


def topology(
    sites: list[SiteSpec],
    *,
    api_port: int | Sequence[int] = 8040,
    admin_port: int | Sequence[int] = 8041,
    flower_port: int | None = None,
    render_concurrency: int = 2,
    bind: str = "127.0.0.1",
    replicas: int = 1,
    admin_host: str | None = None,
    metrics_port: int | Callable[[str], int] | None = None,
) -> list[ServiceSpec]:
    """Every process of a fleet (argv without the Python interpreter).

    A site worker gets ``LINE_SLOTS`` threads (or more, for a larger site) so lines added
    at run time have a thread to run on; the dispatcher never hands it more faxes than
    it has lines in service, so the spare threads only ever wait.

    With several replicas, API node *i* relays administration to routing admin node *i*
    (at ``admin_host``, or the admin service's own name as compose resolves it): the API
    relays to one admin URL, so pairing them keeps each API node whole on its own."""
    if replicas < 1:
        raise ValueError("replicas must be at least 1")
    services: list[ServiceSpec] = []
    for site in sites:
        env = {"FAXFLEET_SITE": site.name, "FAXFLEET_LINES": str(site.lines)}
        for name in replica_names(f"events-{site.name}", replicas):
            argv = _celery("scheduler.tasks", f"events.{site.name}", "solo", 1, name)
            services.append(ServiceSpec(name, argv, env, "events", node=name))
        for name in replica_names(f"notify-{site.name}", replicas):
            argv = _celery("scheduler.tasks", f"notify.{site.name}", "threads", 4, name)
            services.append(ServiceSpec(name, argv, env, "notify", node=name))
        name = f"site-{site.name}"
        slots = max(site.lines, LINE_SLOTS)
        argv = _celery("workers.site", f"site.{site.name}", "threads", slots, name)
        services.append(ServiceSpec(name, argv, env, "site", node=name))
    home = {"FAXFLEET_SITE": sites[0].name}
    for name in replica_names("timers", replicas):
        services.append(ServiceSpec(name, ["-m", "scheduler.timers"], home, "timers"))
    for name in replica_names("routing", replicas):
        argv = _celery("routing.tasks", "routing", "threads", 2, name)
        services.append(ServiceSpec(name, argv, home, "routing", node=name))
    for name in replica_names("dispatcher", replicas):
        services.append(ServiceSpec(name, ["-m", "routing.dispatcher"], home, "dispatcher"))
    admin_names = replica_names("routing-admin", replicas)
    admins = list(zip(admin_names, _ports(admin_port, replicas), strict=True))
    for name, port in admins:
        argv = _uvicorn("routing.admin:app", bind, port)
        services.append(ServiceSpec(name, argv, home, "routing-admin", port=port))
    for name in replica_names("render", replicas):
        argv = _celery("workers.rendering", "render", "prefork", render_concurrency, name)
        services.append(ServiceSpec(name, argv, home, "render", node=name))
    apis = zip(replica_names("api", replicas), _ports(api_port, replicas), admins, strict=True)
    for name, port, (admin_name, admin) in apis:
        env = dict(home)
        if replicas > 1:
            env["FAXFLEET_ROUTING_ADMIN_URL"] = f"http://{admin_host or admin_name}:{admin}"
        argv = _uvicorn("scheduler.api:app", bind, port)
        services.append(ServiceSpec(name, argv, env, "api", port=port))
    if flower_port:
        # faxfleet.monitor starts Flower only with credentials (FAXFLEET_FLOWER_BASIC_AUTH).
        argv = ["-m", "faxfleet.monitor", f"--port={flower_port}", f"--address={bind}"]
        services.append(ServiceSpec("flower", argv, home, "flower", port=flower_port))
    return [_with_metrics(s, metrics_port, bind) for s in services]


def _with_metrics(
    spec: ServiceSpec, port: int | Callable[[str], int] | None, bind: str
) -> ServiceSpec:
    """The API serves its metrics on its own port; a process that is no HTTP service on
    ``port`` (one for all, or chosen by service name) when metrics are asked for."""
    if spec.kind == "api":
        return dataclasses.replace(spec, metrics_port=spec.port)
    if port is None or spec.kind in HTTP_KINDS:
        return spec
    chosen = port if isinstance(port, int) else port(spec.name)
    env = {**spec.env, "FAXFLEET_METRICS_PORT": str(chosen), "FAXFLEET_METRICS_ADDRESS": bind}
    return dataclasses.replace(spec, env=env, metrics_port=chosen)
