"""Message contracts: every message that crosses a service boundary is one of these.

The scheduler, the router and the site workers never import each other; they exchange
these pydantic models (serialised as JSON inside Celery tasks) and read the public views
through the HTTP API. Changing a field here changes the wire format of the fleet.

Longer than most modules on purpose: the whole wire format lives in one file, so a
change to what the services say to each other is one reviewable diff.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from faxfleet import billing
from faxfleet.kinds import Resolution

PRIORITY_MIN = 0
PRIORITY_MAX = 9
PRIORITY_DEFAULT = 5
"""User-facing priority: 0 (bulk) .. 9 (most urgent). 5 is normal."""

MAX_TAGS = 50
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 256
"""A fax's tags: at most 50, keys of 1-64 characters, values up to 256."""

_LINE_BREAKS = frozenset("\t\n\r")


def _control_characters(text: str, allowed: frozenset[str] = frozenset()) -> bool:
    return any(unicodedata.category(ch) == "Cc" and ch not in allowed for ch in text)


def now() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TariffTerms(Message):
    """The price fields of the cost-table row a call was placed under, carried from
    routing to the site and back to the scheduler (which cannot read cost tables), so the
    real call is priced by the same arithmetic (:mod:`faxfleet.billing`). Decimals travel
    as strings, never floats."""

    prefix: str | None = None
    price_per_minute: str
    connection_fee: str
    first_increment: int = Field(ge=1)
    next_increment: int = Field(ge=1)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    description: str | None = None

    @field_validator("price_per_minute", "connection_fee")
    @classmethod
    def _decimal(cls, value: str) -> str:
        try:
            number = Decimal(value)
        except ArithmeticError:
            raise ValueError(f"{value!r} is not a decimal") from None
        if not number.is_finite() or number < 0:
            raise ValueError(f"{value!r} must be a finite decimal >= 0")
        return value

    def cost(self, seconds: float) -> Decimal:
        """What a call of ``seconds`` costs under these terms (6 decimal places)."""
        return billing.call_cost(
            seconds,
            price_per_minute=Decimal(self.price_per_minute),
            connection_fee=Decimal(self.connection_fee),
            first_increment=self.first_increment,
            next_increment=self.next_increment,
        )


class JobState(StrEnum):
    """States of one recipient of a fax (the transition table lives in the scheduler)."""

    SUBMITTED = "submitted"
    RENDERING = "rendering"
    SCHEDULED = "scheduled"
    ROUTING = "routing"
    QUEUED = "queued"
    DIALING = "dialing"
    SENDING = "sending"
    RETRY_SCHEDULED = "retry_scheduled"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    OUTCOME_UNCERTAIN = "outcome_uncertain"


TERMINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})
"""States a recipient never leaves. ``outcome_uncertain`` is not one of them: a late
result from the site may still settle it, and an operator may resend."""

SETTLED_STATES = TERMINAL_STATES | {JobState.OUTCOME_UNCERTAIN}
"""States after which the user is notified."""


class Cause(StrEnum):
    """Why an attempt or a fax ended the way it did. Retry rules key on these."""

    BUSY = "busy"
    NO_ANSWER = "no_answer"
    NO_DIALTONE = "no_dialtone"
    NO_CARRIER = "no_carrier"
    NOT_A_FAX = "not_a_fax"
    TRAINING_FAILED = "training_failed"
    PAGE_REJECTED = "page_rejected"
    REMOTE_DISCONNECTED = "remote_disconnected"
    PROTOCOL_ERROR = "protocol_error"
    MODEM_ERROR = "modem_error"
    MODEM_NOT_RESPONDING = "modem_not_responding"
    LINE_UNAVAILABLE = "line_unavailable"
    NO_SITE = "no_site"
    NO_ROUTE = "no_route"
    RENDER_ERROR = "render_error"
    INVALID_NUMBER = "invalid_number"
    CANCELLED = "cancelled"
    KILL_TIME = "kill_time"
    TOO_MANY_DIALS = "too_many_dials"
    TOO_MANY_TRIES = "too_many_tries"
    WORKER_LOST = "worker_lost"
    QUOTA_EXCEEDED = "quota_exceeded"


# ----------------------------------------------------------------------------------------
# Submission (API, Python client, CLI)


class RouteChoice(StrEnum):
    """Why the dispatcher handed a recipient to the site it chose (``Routed.choice``,
    kept in :attr:`RecipientStatus.route_choice`); docs/routing.md explains each."""

    CHEAPEST = "cheapest"
    """The cheapest site able to start it within its priority's promise."""
    OVERFLOW = "overflow"
    """A cheaper site had no free line in time, so a dearer one sent it."""
    WAITED = "waited"
    """It waited for a line at the cheaper site rather than take a free, dearer one."""
    BAND = "band"
    """It was held for a cheaper tariff band, and that band has come."""
    ONLY = "only"
    """The only site of its group (that was up) able to dial the number."""
    EARLIEST = "earliest"
    """No site could start it within its promise: the earliest start won."""
    EXCHANGED = "exchanged"
    """It took another fax's place, which cost the fleet less in total."""


class NotifyTarget(Message):
    email: str | None = None
    callback_url: str | None = None


class CoverFields(Message):
    """What a cover page shows besides the page count and date (docs/rendering.md).

    One cover is rendered per fax, so it names every recipient number and one
    ``recipient_name`` for all of them."""

    recipient_name: str | None = Field(None, max_length=100)
    recipient_numbers: list[str] = Field(default_factory=list, max_length=100)
    sender_name: str | None = Field(None, max_length=100)
    sender_fax: str | None = Field(None, max_length=40)
    sender_company: str | None = Field(None, max_length=500)
    """Company name on the first line; further lines (address, phone) below it."""
    subject: str | None = Field(None, max_length=200)
    comment: str | None = Field(None, max_length=4000)
    extra: dict[str, str] = Field(default_factory=dict, max_length=20)
    """Free fields for custom templates (``cover_fields`` of the request)."""


class FaxRequest(Message):
    """The JSON part of a submission (the documents travel beside it)."""

    to: list[str] = Field(min_length=1)
    priority: int = Field(PRIORITY_DEFAULT, ge=PRIORITY_MIN, le=PRIORITY_MAX)
    sender: str | None = Field(None, max_length=100)
    user: str | None = Field(None, max_length=100)
    home_site: str | None = Field(None, max_length=64)
    send_after: datetime | None = None
    kill_after_seconds: float | None = Field(None, gt=0, le=30 * 86400)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    notify: NotifyTarget = NotifyTarget()
    tags: dict[str, str] = Field(default_factory=dict)
    """At most :data:`MAX_TAGS`, keys of 1-64 characters, values up to 256."""
    resolution: Resolution = Resolution.FINE
    cover: bool = False
    """Put a cover page first (it counts as page 1 of the fax)."""
    subject: str | None = Field(None, max_length=200)
    comment: str | None = Field(None, max_length=4000)
    recipient_name: str | None = Field(None, max_length=100)
    """Shown on the cover page; one name for all recipients."""
    sender_company: str | None = Field(None, max_length=500)
    sender_fax: str | None = Field(None, max_length=40)
    cover_fields: dict[str, str] = Field(default_factory=dict, max_length=20)
    """Extra values for custom cover templates (keys up to 40, values up to 500 chars)."""
    header: bool = True
    """Stamp the header line ("From <sender> <date time> Page n/N") on every page."""
    tenant: str | None = Field(None, max_length=64)
    """With an admin key: the tenant the fax is submitted for (a tenant key submits for
    its own tenant only)."""
    override_policy: bool = False
    """With an admin key: send even to destinations the tenant's policy bars and past its
    daily page quota; the fax's history records who decided. Refused for tenant keys."""

    @field_validator("cover_fields")
    @classmethod
    def _short_cover_fields(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not 1 <= len(key) <= 40 or len(text) > 500:
                raise ValueError("cover_fields keys take 1-40 characters, values up to 500")
            if _control_characters(key) or _control_characters(text, _LINE_BREAKS):
                raise ValueError("cover_fields take no control characters")
        return value

    @field_validator("tags")
    @classmethod
    def _few_short_tags(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_TAGS:
            raise ValueError(f"at most {MAX_TAGS} tags ({len(value)} given)")
        for key, text in value.items():
            if not 1 <= len(key) <= MAX_TAG_KEY or len(text) > MAX_TAG_VALUE:
                raise ValueError(
                    f"tag keys take 1-{MAX_TAG_KEY} characters, values up to {MAX_TAG_VALUE}"
                )
            if _control_characters(key) or _control_characters(text):
                raise ValueError("tags take no control characters (line breaks, tabs, ...)")
        return value

    @field_validator(
        "sender", "user", "home_site", "idempotency_key", "subject", "recipient_name", "sender_fax"
    )
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and _control_characters(value):
            raise ValueError("no control characters (line breaks, tabs, ...) in this field")
        return value

    @field_validator("comment", "sender_company")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        if value is not None and _control_characters(value, _LINE_BREAKS):
            raise ValueError("no control characters besides line breaks and tabs")
        return value

    @field_validator("send_after")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        """A time with its zone, in UTC (a naive time would be read in the API's zone)."""
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(
                "send_after needs a time zone: end it with Z (UTC) or an offset like +01:00"
            )
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("send_after is out of range") from None


class Transition(Message):
    at: datetime
    recipient: int | None
    from_state: JobState | None
    to_state: JobState
    site: str | None = None
    line: str | None = None
    cause: Cause | None = None
    detail: str | None = None


class PendingChange(Message):
    """A change an operator asked for on a recipient that waits for a line (``routing``
    or ``queued``), held until routing has taken the current attempt back (so the old
    number is never dialled): it applies then, or not at all if a site started the call
    first (the history says which)."""

    attempt: int
    """The attempt routing is asked to take back."""
    number: str | None = None
    """The new number (E.164)."""
    send_after: datetime | None = None
    """Postponed to this time (the recipient waits in ``scheduled``)."""
    by: str
    """Who asked (``tenant acme (user bob, key 3f9a1c2e7d4b)``, ``admin (key …)``)."""
    at: datetime


class RecipientStatus(Message):
    index: int
    number: str
    """E.164."""
    state: JobState = JobState.SUBMITTED
    site: str | None = None
    line: str | None = None
    attempt: int = 0
    dials: int = 0
    tries: int = 0
    not_a_fax: int = 0
    """Calls answered by something other than a fax machine."""
    page: int | None = None
    """Page on the wire while ``sending``."""
    pages_confirmed: int = 0
    cause: Cause | None = None
    detail: str | None = None
    next_try_at: datetime | None = None
    remote_id: str | None = None
    cost_estimate: str | None = None
    """Expected cost of the current attempt at its site (decimal) and currency."""
    currency: str | None = None
    event_seq: int = 0
    updated_at: datetime | None = None
    queued_since: datetime | None = None
    """When the current wait for a line began (see :attr:`RouteOrder.queued_since`)."""
    routed_at: datetime | None = None
    """When the dispatcher handed the current attempt to :attr:`site`."""
    route_choice: RouteChoice | None = None
    """Why that site (the dispatcher's word for it; :attr:`route_reason` in full)."""
    route_reason: str | None = None
    """The placement policy's reason for that site, as the dispatcher gave it."""
    call_started_at: datetime | None = None
    """When the current attempt's call started (the site began dialling)."""
    pending: PendingChange | None = None
    """A change of number or ``send_after`` waiting for routing to take the fax back."""
    tariff: TariffTerms | None = None
    """The tariff the current attempt was placed under (from its ``Routed`` event)."""
    tariff_attempt: int | None = None
    """The attempt :attr:`tariff` belongs to."""
    confirmed_before: int = 0
    """Pages confirmed when the current attempt was routed (where its call resumes): the
    call's own pages are those confirmed past it."""


class DocumentInfo(Message):
    name: str
    content_type: str
    size: int


class FaxStatus(Message):
    """The public view of a fax, as returned by the API and the client."""

    id: str
    tenant: str
    state: JobState
    priority: int
    resolution: Resolution
    user: str | None = None
    sender: str | None = None
    home_site: str
    created_at: datetime
    send_after: datetime | None = None
    kill_at: datetime
    idempotency_key: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    notify: NotifyTarget = NotifyTarget()
    documents: list[DocumentInfo]
    pages: int | None = None
    recipients: list[RecipientStatus]
    cause: Cause | None = None
    detail: str | None = None
    notified_by: str | None = None
    """The site whose scheduler delivered the notification (always the home site)."""
    renders: int = 0
    """Times rendering was started again because it did not finish in time."""
    history: list[Transition] = Field(default_factory=list)
    cover: CoverFields | None = None
    """The cover page's fields; None: no cover page."""
    header: bool = True
    revision: int = 0
    """Times the fax's priority was altered (``PATCH /v1/faxes/{id}``): route orders
    carry it, so routing keeps the latest one whatever order they arrive in."""


# ----------------------------------------------------------------------------------------
# Work orders (scheduler -> workers, scheduler -> router -> site)


class RenderOrder(Message):
    job_id: str
    home_site: str
    documents: int
    resolution: Resolution
    priority: int
    tenant: str | None = None
    """Picks a custom cover template (``<tenant>.j2``, else ``<home_site>.j2``)."""
    cover: CoverFields | None = None
    """Render a cover page with these fields before the documents."""


class RouteOrder(Message):
    job_id: str
    recipient: int
    attempt: int
    number: str
    pages: int
    first_page: int
    priority: int
    home_site: str
    tenant: str
    sender: str | None = None
    header: bool = True
    """The site worker stamps the header line on each page as it sends it."""
    queued_since: datetime | None = None
    """When this fax started waiting for a line: its place in the central queue and the
    start of its priority promise. Kept when a fax is given back by a site that went
    down or lost its lease, so it does not lose its place; None: now."""
    revision: int = 0
    """The fax's :attr:`FaxStatus.revision` when the order was made: an order for an
    attempt already waiting replaces it (new priority, same place) only if its revision
    is higher, so a late or repeated older order changes nothing."""

    @property
    def attempt_id(self) -> str:
        return f"{self.job_id}:{self.recipient}:{self.attempt}"


class WithdrawOrder(Message):
    """Scheduler -> routing: take this attempt back unless a site has started it (its
    number or ``send_after`` is being changed). Idempotent; answered by
    :class:`Withdrawn`. Once taken back, the attempt is never handed out, even if its
    route order arrives later."""

    job_id: str
    recipient: int
    attempt: int
    home_site: str

    @property
    def attempt_id(self) -> str:
        return f"{self.job_id}:{self.recipient}:{self.attempt}"


class SendOrder(RouteOrder):
    """What a site worker needs to make one attempt on one recipient: the route order
    plus the site it was placed on. ``first_page`` is where the call starts (resume)."""

    site: str
    routed_at: datetime
    dial_string: str | None = None
    """What the site's modem dials (its dialing rules applied); None: the E.164 number."""
    token: str = ""
    """Names this one hand-out of the attempt (the dispatcher's in-flight record carries
    the same): a copy of the order whose token no longer matches the record (given back,
    handed out again) is stale and refused without touching the site's slots."""
    tariff: TariffTerms | None = None
    """The site's tariff for the number when the fax was placed; the site worker hands it
    back in its :class:`AttemptResult`, so the result can be priced whatever order the
    events are applied in. None: the site has no cost table."""


# ----------------------------------------------------------------------------------------
# Events back to the home site's scheduler


class RenderDone(Message):
    kind: Literal["render_done"] = "render_done"
    job_id: str
    pages: int
    at: datetime


class RenderFailed(Message):
    kind: Literal["render_failed"] = "render_failed"
    job_id: str
    detail: str
    at: datetime


class Routed(Message):
    kind: Literal["routed"] = "routed"
    job_id: str
    recipient: int
    attempt: int
    site: str
    at: datetime
    cost: str | None = None
    """Expected cost of the call at the chosen site (decimal, in the table's currency)."""
    currency: str | None = None
    reason: str | None = None
    """The placement policy's reason, in full."""
    choice: RouteChoice | None = None
    """Why that site, in one word (None from a dispatcher that predates it)."""
    tariff: TariffTerms | None = None
    """The tariff in force at the chosen site for this number when it was placed: the
    real call is priced with it (None: older routers, or a site without a cost table)."""


class Requeued(Message):
    """A fax handed to a site that went down before starting it is waiting centrally
    again (the same attempt; the site's copy, if it ever runs, finds it claimed)."""

    kind: Literal["requeued"] = "requeued"
    job_id: str
    recipient: int
    attempt: int
    site: str
    detail: str
    at: datetime


class LeaseLost(Message):
    """A site worker started this attempt and stopped renewing its lease: it died, hung,
    was paused or was cut off, and nobody can tell which yet. Its slot is free again; the
    attempt is in doubt until its result arrives (a cut-off site finishes the call and
    reports it when it reconnects), its worker is proven dead (:class:`HolderDead`), or
    the watchdog declares it ``outcome_uncertain``."""

    kind: Literal["lease_lost"] = "lease_lost"
    job_id: str
    recipient: int
    attempt: int
    site: str
    worker: str | None = None
    detail: str
    at: datetime


class HolderDead(Message):
    """Proof that the worker that held this attempt is gone: the site's worker started
    again on the same host and found its predecessor's process dead. Its call ended with
    it, so the fax can be sent again from its first unconfirmed page."""

    kind: Literal["holder_dead"] = "holder_dead"
    job_id: str
    recipient: int
    attempt: int
    site: str
    worker: str
    at: datetime


class Withdrawn(Message):
    """Routing's answer to a :class:`WithdrawOrder`: ``taken_back`` (the attempt was
    waiting, or handed to ``site`` and not started, and will never be sent) or not (a
    site started it: ``detail`` says where)."""

    kind: Literal["withdrawn"] = "withdrawn"
    job_id: str
    recipient: int
    attempt: int
    taken_back: bool
    site: str | None = None
    detail: str
    at: datetime


class Unroutable(Message):
    kind: Literal["unroutable"] = "unroutable"
    job_id: str
    recipient: int
    attempt: int
    cause: Cause
    detail: str
    at: datetime


class AttemptProgress(Message):
    """A site worker's report during an attempt. ``seq`` orders reports of one attempt."""

    kind: Literal["progress"] = "progress"
    job_id: str
    recipient: int
    attempt: int
    seq: int
    site: str
    line: str
    phase: Literal["dialing", "page"]
    page: int | None = None
    pages_confirmed: int = 0
    at: datetime


class AttemptResult(Message):
    """The end of an attempt. ``pages_confirmed`` counts pages of the whole fax the far
    end has confirmed so far (including those confirmed by earlier attempts)."""

    kind: Literal["result"] = "result"
    job_id: str
    recipient: int
    attempt: int
    seq: int
    site: str
    line: str | None
    ok: bool
    pages_confirmed: int
    connected: bool
    cause: Cause | None = None
    detail: str | None = None
    remote_id: str | None = None
    duration_seconds: float = 0.0
    """How long the site held the line for the call, dialling included."""
    at: datetime
    """When the call ended."""
    tariff: TariffTerms | None = None
    """The tariff of the send order, handed back (see :attr:`SendOrder.tariff`)."""


class InboundReceived(Message):
    """A fax call a site's line answered has ended: the pages it received are stored
    (``faxfleet.keys.inbound_fax``) and the receiving site's scheduler files it.

    ``ok`` False with pages is a partial reception (the call broke off; ``cause`` says
    why); the pages received are kept all the same."""

    kind: Literal["inbound"] = "inbound"
    inbound_id: str
    site: str
    line: str
    called: str | None = None
    """The number the caller dialled (DID), as the line reported it; None without DID."""
    remote_id: str | None = None
    """The caller's station id (TSI)."""
    pages: int = Field(ge=0)
    size: int = Field(0, ge=0)
    """Bytes of the stored fax (one multi-page TIFF)."""
    ok: bool
    cause: Cause | None = None
    detail: str | None = None
    at: datetime


FleetEvent = Annotated[
    RenderDone
    | RenderFailed
    | Routed
    | Requeued
    | LeaseLost
    | HolderDead
    | Withdrawn
    | Unroutable
    | AttemptProgress
    | AttemptResult
    | InboundReceived,
    Field(discriminator="kind"),
]


class EventEnvelope(Message):
    event: FleetEvent


# ----------------------------------------------------------------------------------------
# Shared site state and notification


class LineStatus(Message):
    name: str
    state: Literal["idle", "busy", "out_of_service"]
    job_id: str | None = None
    recipient: int | None = None
    since: datetime | None = None
    reason: str | None = None
    """Why a line is out of service (its modem failed its probe or stopped responding)."""


class DispatchSummary(Message):
    """What the dispatcher saw on its latest pass (``keys.DISPATCH_SUMMARY``, with a
    short expiry): health checks read it to tell whether faxes wait with lines free."""

    at: datetime
    waiting: dict[int, int] = Field(default_factory=dict)
    """Faxes waiting for a line, by priority."""
    overdue: int = 0
    """Waiting faxes whose priority promise has run out."""
    free_lines: int = 0
    """Lines in service and not handed a fax, fleet-wide, after the pass."""
    oldest_wait_seconds: float = 0.0


class SiteStatus(Message):
    """What a site publishes about itself every ``load_publish_interval`` seconds."""

    name: str
    lines: list[LineStatus]
    waiting: int = 0
    worker: str
    updated_at: datetime
    seconds_per_page: float | None = None
    """Recent mean call time per page sent (setup included); None before any call."""
    pages_per_minute: float | None = None
    """The same, as pages per minute of line time."""
    mean_call_seconds: float | None = None
    """Recent mean length of a connected call."""
    success: dict[str, float] = Field(default_factory=dict)
    """Recent share of connected calls that ended well, per destination prefix."""

    @property
    def lines_up(self) -> int:
        return sum(1 for line in self.lines if line.state != "out_of_service")

    @property
    def lines_busy(self) -> int:
        return sum(1 for line in self.lines if line.state == "busy")


class NotifyOrder(Message):
    job_id: str
    home_site: str
    channel: Literal["email", "webhook"]
    target: str


# ----------------------------------------------------------------------------------------
# Inbound faxes (received by a site's lines)


class InboundFax(Message):
    """The public view of a received fax, as returned by ``/v1/inbound``."""

    id: str
    tenant: str | None
    """The tenant the called number routes to; None: unrouted (visible to admins)."""
    route: str | None = None
    """The routing table entry that matched: a number, a prefix (``+3314268*``),
    ``line:<name>`` or ``*`` (the default route); None when unrouted."""
    site: str
    line: str
    called: str | None = None
    remote_id: str | None = None
    pages: int
    size: int = 0
    ok: bool
    """False: a partial or failed reception (``cause`` says why)."""
    cause: Cause | None = None
    detail: str | None = None
    received_at: datetime
    notify: NotifyTarget = NotifyTarget()
    notifications: list[str] = Field(default_factory=list)
    """What became of each notification (delivered, or abandoned and why)."""
    notified_by: str | None = None
    """The site whose scheduler delivered a notification (the receiving site's)."""


class InboundNotifyOrder(Message):
    inbound_id: str
    site: str
    channel: Literal["email", "webhook"]
    target: str
