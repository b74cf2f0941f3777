"""The one settings class of faxfleet, read from the environment (``FAXFLEET_*``).

Every service reads the same class so that a single environment describes a node. The
defaults run a local fleet out of the box: a private Redis on port 6390, a site named
``paris`` with four emulated fax lines, an API on port 8040 and a demo tenant, whose
keys the services accept in demo mode only (``FAXFLEET_DEMO=1``, as ``faxfleet demo`` and
``faxfleet up`` set it; faxfleet/credentials.py).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from faxfleet import destinations
from faxfleet.credentials import KeyRing, parse_admin_keys, parse_tenant_keys
from faxfleet.egress import AllowList
from faxfleet.modems import ModemLine
from faxfleet.redact import redacted_fields, secret_values


class Settings(BaseSettings):
    """Configuration of one faxfleet node (API, scheduler, router or site worker)."""

    # An invalid value is not echoed in the error: it may be a key or a password.
    model_config = SettingsConfigDict(
        env_prefix="FAXFLEET_", extra="ignore", hide_input_in_errors=True
    )

    # --- where the fleet meets -------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6390/0"
    """Job store, shared site state and (unless ``broker_url`` is set) the Celery broker.
    A Sentinel group instead of one Redis: ``sentinel://h1:26379;sentinel://h2:26379;
    sentinel://h3:26379/0?master=<name>`` (faxfleet/redis_conn.py, docs/reliability.md).
    A password goes in the URL (``redis://:<password>@host:6379/0``); ``rediss://`` (or
    ``?tls=yes`` on a Sentinel URL) connects with TLS (docs/administration.md)."""
    redis_min_replicas_ack: int | None = Field(None, ge=0)
    """Replicas that must confirm a new fax (Redis ``WAIT``) before the API answers 201;
    default: 1 with a Sentinel URL, 0 with a single Redis."""
    redis_replica_ack_timeout_ms: int = Field(1000, gt=0, le=9000)
    """How long a submission waits for those replicas before it is refused with a 503."""
    redis_failover_seconds: float = Field(30.0, gt=0)
    """With Sentinel: how long a Redis command (or a task being queued) keeps retrying
    through connection errors, asking the sentinels for the master again, before it fails.
    Longer than a failover (about 3 s with ``down-after-milliseconds`` 1000)."""
    redis_sentinel_password: str | None = None
    """The password the sentinels themselves require (their ``requirepass``); unset:
    sentinels are asked without one. The master's password is the URL's."""
    redis_tls_ca: str | None = None
    """CA certificate file (PEM) that Redis's certificate must chain to, with a
    ``rediss://`` URL or a Sentinel URL with ``?tls=yes``; unset: the system's CAs."""
    redis_tls_cert: str | None = None
    """Client certificate file (PEM) for Redis servers that require one
    (``tls-auth-clients yes``), with ``redis_tls_key``."""
    redis_tls_key: str | None = None
    """The client certificate's private key file (PEM)."""
    broker_url: str | None = None
    visibility_timeout: int = 300
    """Seconds before Redis hands an unacknowledged task to another worker, so a message
    held by a worker that was killed comes back within minutes. Every task is safe to
    run twice: a send order is refused by its claim (a call in progress is protected by
    its lease, not by this), events are ordered by attempt and sequence, notifications
    are delivered once per settled state."""

    # --- this node ---------------------------------------------------------------------
    node_name: str | None = None
    """This machine's name in worker ids (default: its host name). A site worker proves
    an earlier worker of its site dead only on the same node (its process is gone), so
    give a node a stable name where host names change (containers)."""
    site: str = "paris"
    """The site this node belongs to (its home site for submissions made through it)."""
    lines: int = 4
    """Lines of this site's worker for the ``simulated`` and ``emulated`` kinds (one
    concurrent send per line); ``modem`` sites have one line per entry of ``modems``."""
    line_prefix: str = ""
    """Prefix of this site's line names (defaults to the site name)."""

    # --- lines (docs/lines.md) ------------------------------------------------------------
    line_kind: Literal["simulated", "emulated", "modem"] = "emulated"
    """``emulated``: each line is a pair of emulated Class 1 modems, our driver on one side
    and a scripted far end on the other; ``modem``: the real modems of ``modems``;
    ``simulated``: a sleep-based stand-in with no protocol at all."""
    modems: list[ModemLine] = Field(default_factory=list)
    """The site's modem lines, as JSON: ``[{"name": "usb0", "url": "/dev/ttyACM0"}]``."""
    emulator_time_scale: float = Field(100.0, gt=0, le=10000)
    """Divides the line time of emulated lines (100: a 40 s page takes 0.4 s)."""
    modem_probe_seconds: float = Field(60.0, gt=0)
    """How often a modem line out of service is probed again."""
    emulator_answer: bool = False
    """Emulated lines also answer inbound calls while idle (as modems with ``answer``)."""
    emulator_did: str | None = None
    """The called number reported for faxes emulated lines receive."""
    sim_network_redis_url: str | None = None
    """Where simulated and emulated far ends keep what they received (default: the
    fleet's Redis)."""
    sim_dial_seconds: float = 0.5
    sim_page_seconds: float = 1.0

    # --- secrets (docs/administration.md#keys-and-secrets) --------------------------------
    demo: bool = False
    """A local demo or test fleet: the demo's keys and secrets and plain keys are accepted.
    Unset (every deployment), a service refuses to start on them and names the variable."""

    # --- HTTP API ----------------------------------------------------------------------
    api_urls: str = "http://127.0.0.1:8040"
    """Comma-separated API base URLs the client and CLI fail over between."""
    api_key: str = "demo-key"
    """The key the client and CLI present."""
    api_keys: str = "demo=demo-key"
    """Comma-separated ``tenant=sha256:<id>:<digest>`` pairs the API accepts (``faxfleet
    keys new``), several per tenant while keys are rotated. A plain ``tenant=key`` (demo
    only) is hashed when the settings load: this field then holds hashes only."""
    admin_keys: str = "admin-key"
    """Comma-separated ``sha256:<id>:<digest>`` entries of the keys that may administer
    sites, groups and cost tables (plain keys: demo only, hashed at load)."""
    admin_key: str = "admin-key"
    """The admin key the CLI presents for ``faxfleet site|group|costs``."""
    routing_admin_url: str = "http://127.0.0.1:8041"
    """The routing service's admin API; the public API forwards /v1/sites and /v1/groups
    to it."""
    fleet_dir: Path | None = None
    """A folder declaring sites, groups and cost tables (``fleet.toml``, CSV files), applied
    by every routing admin node at start (routing/declared.py); unset: nothing declared."""
    console_session_seconds: int = Field(8 * 3600, ge=1)
    """How long a web console session lasts without a request (docs/console.md); each
    request starts the time again. Sessions live in Redis: every API node accepts them."""
    max_upload_bytes: int = 20 * 1024 * 1024
    """A submission's documents together; its whole body may hold 1 MiB more, counted as
    it arrives (scheduler/api.py); also the body limit of the relayed site administration."""
    max_documents: int = 20
    max_recipients: int = 100
    default_region: str = "FR"
    """Region for numbers given without a leading ``+`` (national format)."""

    # --- destinations and quotas (docs/administration.md) ---------------------------------
    destination_barred_types: str = destinations.DEFAULT_BARRED_TYPES
    """Number types no tenant may fax unless granted (comma-separated libphonenumber
    types: premium_rate, shared_cost, personal_number, pager, voicemail, uan, voip, mobile,
    toll_free, fixed_line, fixed_line_or_mobile, unknown)."""
    destination_allowed_regions: str = ""
    """The only regions faxes may go to (comma-separated ISO codes: ``FR,BE,CH``); empty:
    every region not barred."""
    destination_barred_regions: str = destinations.DEFAULT_BARRED_REGIONS
    """Regions no tenant may fax unless granted; ``001`` is non-geographic numbers
    (satellite, international networks, international premium rate)."""
    daily_page_quota: int | None = Field(None, ge=0)
    """Pages (times recipients) a tenant may submit per UTC day unless its own policy sets
    another number; unset: no limit."""

    # --- lifecycle and retries ---------------------------------------------------------
    time_scale: float = 1.0
    """Multiplies every retry delay and watchdog period (0.01 makes a test fleet 100x
    faster). Never below 0.001."""
    max_dials: int = 12
    max_tries: int = 3
    kill_after_seconds: float = 3 * 3600
    retry_busy_seconds: float = 180
    retry_no_answer_seconds: float = 300
    retry_no_carrier_seconds: float = 300
    retry_protocol_seconds: float = 120
    retry_line_seconds: float = 30
    retry_backoff_factor: float = 1.5
    retry_max_delay_seconds: float = 3600
    stuck_after_seconds: float = 600
    """A send with no progress for this long is declared ``outcome_uncertain``."""
    routing_stuck_after_seconds: float = 60
    """A recipient left in ``routing`` this long is routed again (same attempt)."""
    retention_seconds: int = 7 * 86400
    """How long a fax's documents and rendered pages (and a settled fax) are kept; a fax
    whose kill time falls later is refused at submission (``send_after`` too far ahead)."""

    # --- routing policy (docs/routing.md) ------------------------------------------------
    routing_seconds_per_page: float = 40.0
    """Airtime per page used to estimate a call's cost."""
    routing_call_setup_seconds: float = 25.0
    """Dialling, answer and handshake before the first page."""
    routing_promise_seconds: str = "86400,28800,14400,7200,3600,1800,900,300,60,0"
    """Longest acceptable wait for a line by priority 0..9 (comma-separated seconds,
    scaled by ``time_scale``)."""
    routing_min_success: float = 0.05
    routing_max_calls_per_number: int = Field(1, ge=1)
    """Calls to one destination number at a time, fleet-wide."""
    routing_cost_tolerance: float = 0.05
    """Costs within this fraction of the cheapest count as equal (the earliest start
    wins among them)."""
    routing_patience_seconds: float = 900.0
    """Longest a fax waits for a cheaper site while another site could start it sooner
    (scaled by ``time_scale``); raise it to favour cost over idle lines."""
    routing_band_wait_seconds: float | None = None
    """Longest a fax is held back for a cheaper tariff band (evening, night, weekend
    rates), scaled by ``time_scale``; unset: as long as its priority's promise allows.
    Set 0 to send every fax as soon as a line is free."""
    routing_refresh_seconds: float = 30.0
    """How often a router reloads site configuration and cost tables even without a
    configuration change (it reloads at once on one)."""

    # --- leases (docs/reliability.md) ---------------------------------------------------
    lease_seconds: float = Field(10.0, gt=0)
    """A site worker holds a lease on each attempt it has started and renews it every
    third of this (real seconds, not scaled). A lease not renewed for this long means the
    worker is dead, hung or cut off: the attempt's slot is freed and the call is in doubt
    until its result arrives, the site's next worker proves the holder dead (then the fax
    goes on from its first unconfirmed page) or the watchdog declares it uncertain."""
    dispatch_claim_seconds: float = Field(30.0, gt=0)
    """A fax handed to a live site that its worker has not started after this long (real
    seconds: the send order was lost, or the worker is stuck) goes back to the waiting
    set, keeping its place; the site's copy, if it ever arrives, is refused."""
    spool_dir: str = ".fleet/spool"
    """Where a site worker keeps events it could not send while cut off from Redis
    (``<spool_dir>/<site>/events.jsonl``); they are sent when Redis answers again."""
    render_stuck_after_seconds: float | None = None
    """A fax still ``submitted`` or ``rendering`` after this long (real seconds: rendering
    is CPU time) is started again; default: twice the render timeout plus a minute."""

    @property
    def render_watch_seconds(self) -> float:
        if self.render_stuck_after_seconds is not None:
            return self.render_stuck_after_seconds
        return 2 * self.render_timeout_seconds + 60

    # --- shared site state -------------------------------------------------------------
    load_publish_interval: float = 1.0
    load_ttl: float = 5.0

    # --- notification ------------------------------------------------------------------
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_from: str = "faxfleet@localhost"
    webhook_secret: str = "change-me"
    """HMAC-SHA256 key that signs result callbacks (16 characters or more outside the
    demo)."""
    flower_basic_auth: SecretStr | None = None
    """Flower's ``user:password`` (comma-separated for several): Flower does not start
    without it (``python -m faxfleet.monitor``); the local launcher makes one up."""
    notify_max_attempts: int = 8
    notify_backoff_seconds: float = 5.0
    notify_timeout_seconds: float = 10.0
    notify_redeliver_seconds: float = Field(60.0, gt=0)
    """A notification not delivered this long after it was queued is queued again (its
    message may have been lost with a killed worker), the wait doubling each time; real
    seconds, not scaled (scheduler/outbox.py)."""
    callback_allow: str = ""
    """Non-public addresses callbacks may go to (result and inbound callbacks). By default
    a callback goes only to a public address: its host is resolved, loopback, private,
    shared (CGNAT), link-local, multicast, reserved and unspecified addresses (and their
    IPv6 forms) are refused, and the request goes to the address that was checked.
    Comma-separated entries: an address or network (``10.20.0.5``, ``10.20.0.0/16``,
    ``fd00::/8``), optionally on one port (``10.20.0.0/16:443``, ``[fd00::1]:8443``), or a
    host name with or without a port (``hooks.internal:8443``: a URL with that exact
    host may reach what the name resolves to). Unspecified and multicast addresses are
    never allowed (faxfleet/egress.py; README.md, "Verifying callbacks")."""

    # --- rendering -----------------------------------------------------------------------
    cover_template_dir: str | None = None
    """Directory of custom cover page templates: ``<tenant>.j2``, else ``<site>.j2`` (the
    fax's home site), else the built-in one (docs/rendering.md)."""
    render_timeout_seconds: float = Field(120, gt=0)
    """Wall-clock and CPU limit for rendering one fax (Office conversion included)."""
    render_memory_mb: int = Field(1024, ge=16)
    """Address space the sandboxed renderer may grow by (workers/render/sandbox.py)."""

    # --- inbound faxes (docs/inbound.md) --------------------------------------------------
    inbound_routes: str = ""
    """Who gets the faxes this site's lines receive: a JSON object (or the path of a JSON
    file) mapping a called number (E.164), a number prefix ending in ``*``, ``line:<name>``
    (lines without DID) or ``*`` (the default route) to ``{"tenant": ..., "email": ...,
    "callback_url": ...}``. A fax no entry matches is kept unrouted, for admins."""
    inbound_retention_seconds: int = Field(30 * 86400, ge=60)
    """How long a received fax (pages and record) is kept."""
    inbound_scheduler_site: str | None = None
    """The site whose scheduler files and notifies the faxes this site receives (default:
    this site; set it for a site that runs no scheduler)."""

    # --- call accounting (docs/accounting.md) ------------------------------------------
    database_url: str | None = None
    """PostgreSQL for the call records (``postgresql+psycopg://user:pass@host/db``); unset:
    the Redis call journal is the store. The timer loops copy the journal into it."""
    acct_retention_days: int = Field(400, ge=1)
    """Without a database: how long call records stay in the journal (older ones are
    trimmed). With one, the database keeps them; the journal only what is not copied yet."""
    acct_keep_copied_seconds: float = Field(86400.0, ge=0)
    """With a database: how long a copied record stays in the journal too (for a look at
    recent calls from Redis); records not yet copied are never trimmed."""
    acct_copy_batch: int = Field(500, ge=1, le=10000)
    """Records a copier moves to PostgreSQL per transaction."""
    acct_claim_idle_seconds: float = Field(60.0, gt=0)
    """A record a copier read but did not acknowledge for this long (its process died) is
    taken over by another copier (``XAUTOCLAIM``)."""
    acct_copy_interval_seconds: float = Field(1.0, gt=0)
    """How often a timer loop copies and trims the journal."""

    # --- metrics (docs/metrics.md) ---------------------------------------------------------
    metrics_port: int = Field(0, ge=0, le=65535)
    """Where a worker process (site worker, renderer, router, dispatcher, event worker,
    notifier, timer loop) serves its Prometheus metrics at ``/metrics``; 0: none. Each
    process of a host needs a port of its own (the launcher gives each one a free port and
    lists them in ``.fleet/logs/metrics-targets.json``; compose gives every container the
    same one). The API serves ``/metrics`` on its own port, whatever this says."""
    metrics_address: str = "127.0.0.1"
    """The address a worker's metrics server listens on (``0.0.0.0`` in containers)."""

    log_level: str = "INFO"
    log_format: str = Field("text", pattern="^(text|json)$")

    _keys: KeyRing = PrivateAttr(default_factory=lambda: KeyRing([]))

    @model_validator(mode="after")
    def _hash_keys(self) -> Settings:
        """Keep the accepted keys as hashes only, the plain ones hashed now."""
        self._keys = KeyRing(
            [*parse_tenant_keys(self.api_keys), *parse_admin_keys(self.admin_keys)]
        )
        self.api_keys = self._keys.entries(admin=False)
        self.admin_keys = self._keys.entries(admin=True)
        return self

    @property
    def keys(self) -> KeyRing:
        """The API and admin keys this node accepts (``keys.match(presented)``)."""
        return self._keys

    @field_validator("time_scale")
    @classmethod
    def _time_scale_positive(cls, value: float) -> float:
        if value < 0.001:
            raise ValueError("time_scale must be at least 0.001")
        return value

    @field_validator("callback_allow")
    @classmethod
    def _callback_allow_parses(cls, value: str) -> str:
        AllowList.parse(value)  # a bad entry stops the node at start, naming the variable
        return value

    @property
    def callback_allow_list(self) -> AllowList:
        return AllowList.parse(self.callback_allow)

    @field_validator("destination_barred_types")
    @classmethod
    def _known_types(cls, value: str) -> str:
        destinations.parse_types(value, "FAXFLEET_DESTINATION_BARRED_TYPES")
        return value

    @field_validator("destination_allowed_regions", "destination_barred_regions")
    @classmethod
    def _known_regions(cls, value: str, info: ValidationInfo) -> str:
        destinations.parse_regions(value, f"FAXFLEET_{(info.field_name or '').upper()}")
        return value

    @model_validator(mode="after")
    def _modems_fit_the_kind(self) -> Settings:
        if self.line_kind == "modem" and not self.modems:
            raise ValueError('line_kind "modem" needs FAXFLEET_MODEMS (a JSON list of modems)')
        names = [m.name for m in self.modems]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"modem names must be unique: {', '.join(duplicates)}")
        return self

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def min_replicas_ack(self) -> int:
        if self.redis_min_replicas_ack is not None:
            return self.redis_min_replicas_ack
        return 1 if self.redis_url.strip().lower().startswith("sentinel://") else 0

    @property
    def api_url_list(self) -> list[str]:
        return [u.strip().rstrip("/") for u in self.api_urls.split(",") if u.strip()]

    @property
    def promise_list(self) -> tuple[float, ...]:
        values = tuple(float(v) for v in self.routing_promise_seconds.split(","))
        if len(values) != 10 or any(v < 0 for v in values):
            raise ValueError("FAXFLEET_ROUTING_PROMISE_SECONDS needs 10 values >= 0 (0..9)")
        return values

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale

    def secret_values(self) -> set[str]:
        """Every secret this node was given (keys, passwords, URL passwords): what the
        log formatter scrubs from each line (faxfleet/redact.py)."""
        return secret_values((name, getattr(self, name)) for name in type(self).model_fields)

    def __repr_args__(self) -> Any:
        # repr() and str() of the settings (a settings dump in a log line, a traceback)
        # show no key or password.
        return redacted_fields(super().__repr_args__())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()
