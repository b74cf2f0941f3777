"""``compose.yaml`` generated from the launcher's topology, so the two never drift.

``faxfleet compose > compose.yaml`` writes it; ``tests/test_layout.py`` fails when the
committed file differs from what the topology produces. It is the cluster topology
(every kind but the site workers twice), each service with a restart policy and a
health check that fits its kind, and Redis with its append-only file on a named volume.

Redis requires a password: ``FAXFLEET_REDIS_PASSWORD``, which compose reads from the
``.env`` file next to ``compose.yaml`` (``docker compose up`` refuses to start without
it). It is URL-safe hex (``openssl rand -hex 32``): it goes into ``FAXFLEET_REDIS_URL``
as it is. Redis is published on no port; only the fleet's network reaches it.

It holds no secret: keys (as hashes), the webhook secret and Flower's credentials come
from ``faxfleet.env`` (``faxfleet keys init --tenant NAME > faxfleet.env``), which compose
requires. Only the API and Flower are published, on the host's loopback: the API's host
address is ``FAXFLEET_API_ADDRESS`` (a TLS proxy in front of it for anything else), and
Flower is reached through an SSH tunnel or such. Inside the compose network services
listen on all of the container's addresses, as they must to reach each other.

Images: every service runs the ``faxfleet`` image but the renderers, which run
``faxfleet-render`` (the same plus headless LibreOffice, for Office documents): both are
stages of the one Dockerfile.

Sites, groups and cost tables come from the folder ``fleet-config/`` next to this file,
mounted read-only into the routing admin nodes, which apply it when they start
(:mod:`routing.declared`; ``FAXFLEET_FLEET_DIR``). Edit the folder and restart them.

Metrics: the API's ``/metrics`` on its port, and every other process's on
:data:`METRICS_PORT` of its container, published nowhere: a Prometheus on the compose
network scrapes them by service name (docs/metrics.md).
"""

from __future__ import annotations

import json

from faxfleet.topology import CELERY_KINDS, ServiceSpec, SiteSpec, replica_names, topology

COMPOSE_SITES = [SiteSpec("paris", 3), SiteSpec("newyork", 3)]
COMPOSE_REPLICAS = 2
API_PORT = 8040
ADMIN_PORT = 8041
FLOWER_PORT = 5555
METRICS_PORT = 9464
FLEET_DIR = "/etc/faxfleet/fleet"
"""Where the routing admin nodes find the mounted ``fleet-config/`` folder."""
ENV_FILE = "faxfleet.env"
"""Where compose reads the fleet's secrets from (never written into compose.yaml)."""
PUBLISH = {"api": "${FAXFLEET_API_ADDRESS:-127.0.0.1}", "flower": "127.0.0.1"}
"""The host address each published kind listens on."""

REDIS_PASSWORD = "${FAXFLEET_REDIS_PASSWORD:?set FAXFLEET_REDIS_PASSWORD in .env}"
"""Interpolated by compose from ``.env`` (or the environment)."""

_COMMON_ENV = {
    "FAXFLEET_REDIS_URL": f"redis://:{REDIS_PASSWORD}@redis:6379/0",
    "FAXFLEET_ROUTING_ADMIN_URL": (
        f"http://{replica_names('routing-admin', COMPOSE_REPLICAS)[0]}:{ADMIN_PORT}"
    ),
    "FAXFLEET_SMTP_HOST": "mail",
    "FAXFLEET_SMTP_PORT": "1025",
    "FAXFLEET_TIME_SCALE": "0.05",
    "FAXFLEET_SIM_PAGE_SECONDS": "2",
}

_HEALTH_PATHS = {"api": "/readyz", "routing-admin": "/healthz", "flower": "/healthcheck"}

# A site worker publishes its status every second with a short expiry; this container's
# worker is alive and connected when the status is there and names this host.
_SITE_CHECK = (
    "import json, os, socket; from faxfleet.redis_conn import connect; "
    "v = connect().get('ff:site:' + os.environ['FAXFLEET_SITE']); "
    "assert v and '@' + socket.gethostname() + ':' in json.loads(v)['worker']"
)
# A Celery worker answers a ping sent to its own node only (the reply comes as soon as
# it answers; an undirected ping would wait out the whole timeout).
_PING_CHECK = (
    "import socket, sys; from faxfleet.monitor import app; "
    "sys.exit(not app.control.ping(['{node}@' + socket.gethostname()], timeout=5))"
)
# The timer loop and the dispatcher beat from their loops (faxfleet/heartbeat.py): one
# stuck in a pass, or cut off from Redis, stops beating and its key expires.
_BEAT_CHECK = (
    "import socket; from faxfleet.redis_conn import connect; "
    "r = connect(); "
    "assert next(r.scan_iter(match='ff:proc:{kind}:' + socket.gethostname() + ':*'), None)"
)


def _q(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid YAML scalar


def _inline(items: list[str]) -> str:
    return "[" + ", ".join(_q(a) for a in items) + "]"


# The SMTP sink answers a NOOP: it is up and accepting connections.
MAIL_CHECK = (
    "import smtplib; s = smtplib.SMTP('127.0.0.1', 1025, timeout=5); "
    "assert s.noop()[0] == 250; s.quit()"
)


def health_check(spec: ServiceSpec) -> list[str]:
    """The compose ``healthcheck.test`` for a service, by its kind."""
    if spec.kind in _HEALTH_PATHS:
        url = f"http://127.0.0.1:{spec.port}{_HEALTH_PATHS[spec.kind]}"
        code = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=5)"
    elif spec.kind == "site":
        code = _SITE_CHECK
    elif spec.kind in CELERY_KINDS and spec.node:
        code = _PING_CHECK.replace("{node}", spec.node)
    else:
        code = _BEAT_CHECK.replace("{kind}", spec.kind)
    return ["CMD", "python", "-c", code]


def render_compose() -> str:
    out = [
        "# Generated by `faxfleet compose` from faxfleet/topology.py: do not edit by hand.",
        "# A two-site fleet with emulated fax lines, every service but the site workers",
        "# twice. Secrets come from faxfleet.env, which this file requires, and Redis's",
        "# password from .env (docs/administration.md):",
        "#   faxfleet keys init --tenant acme > faxfleet.env && chmod 600 faxfleet.env",
        '#   echo "FAXFLEET_REDIS_PASSWORD=$(openssl rand -hex 32)" > .env',
        "#   docker compose up --build",
        "name: faxfleet",
        "",
        "x-faxfleet: &faxfleet",
        "  build: {context: ., target: faxfleet}",
        "  image: faxfleet:dev",
        "  restart: unless-stopped",
        f"  env_file: [{ENV_FILE}]",
        "  depends_on:",
        "    redis:",
        "      condition: service_healthy",
        "",
        "x-health: &health",
        "  interval: 15s",
        "  timeout: 10s",
        "  retries: 3",
        "  start_period: 60s",
        "",
        "services:",
        "  redis:",
        "    image: redis:7",
        "    command: "
        + _inline(
            [
                "redis-server",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--requirepass",
                REDIS_PASSWORD,
            ]
        ),
        "    restart: unless-stopped",
        "    volumes: [redis-data:/data]",
        "    environment:",
        f"      REDISCLI_AUTH: {_q(REDIS_PASSWORD)}",  # redis-cli's password, off its argv
        "    healthcheck:",
        "      <<: *health",
        '      test: ["CMD", "redis-cli", "ping"]',
        "      start_period: 30s",
        "  mail:",
        "    <<: *faxfleet",
        '    command: ["python", "-m", "aiosmtpd", "-n", "-l", "0.0.0.0:1025"]',
        "    depends_on: {}",
        "    healthcheck:",
        "      <<: *health",
        "      test: " + _inline(["CMD", "python", "-c", MAIL_CHECK]),
        "      start_period: 30s",
    ]
    specs = topology(
        COMPOSE_SITES,
        api_port=API_PORT,
        admin_port=ADMIN_PORT,
        flower_port=FLOWER_PORT,
        bind="0.0.0.0",
        replicas=COMPOSE_REPLICAS,
        metrics_port=METRICS_PORT,
    )
    for spec in specs:
        env = {**_COMMON_ENV, **spec.env}
        if spec.kind == "routing-admin":
            env["FAXFLEET_FLEET_DIR"] = FLEET_DIR
        out += [f"  {spec.name}:", "    <<: *faxfleet"]
        if spec.kind == "render":
            out += ["    build: {context: ., target: render}", "    image: faxfleet-render:dev"]
        if spec.kind == "routing-admin":
            out.append(f'    volumes: ["./fleet-config:{FLEET_DIR}:ro"]')
        out += [
            "    command: " + _inline(["python", *spec.argv]),
            "    environment:",
            *(f"      {k}: {_q(v)}" for k, v in sorted(env.items())),
            "    healthcheck:",
            "      <<: *health",
            "      test: " + _inline(health_check(spec)),
        ]
        if spec.kind == "site":
            # SIGTERM lets the calls on the lines finish: give them the time a fax takes.
            out.append("    stop_grace_period: 10m")
        if spec.kind in PUBLISH and spec.port:
            out.append(f'    ports: ["{PUBLISH[spec.kind]}:{spec.port}:{spec.port}"]')
    out += ["", "volumes:", "  redis-data: {}"]
    return "\n".join(out) + "\n"
