"""Call records: one per call a site placed, the unit of cost accounting.

A record is built by the scheduler from a call's :class:`~faxfleet.messages.AttemptResult`
and the fax it belongs to, and added to the call journal (``keys.ACCT_CALLS``) in the
transaction that applies that result: the result and its record are stored together or
not at all, and a result applied again (a redelivered message) is stale and adds none.
The API reads records back for reports (``faxfleet/reports.py``), from PostgreSQL when
configured, else from the journal. Shared here because the API, the copier and the CLI
all read the same shape.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import phonenumbers
from pydantic import BaseModel, ConfigDict

from faxfleet import billing
from faxfleet.messages import AttemptResult, RecipientStatus, TariffTerms


class CallRecord(BaseModel):
    """One call. Money is a decimal string to 6 places in ``currency`` (the cost table's);
    ``cost`` None: the call could not be priced (the site had no cost table)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    call_id: str
    """The attempt id, ``job:recipient:attempt``: one record per attempt."""
    job_id: str
    recipient: int
    attempt: int
    site: str
    line: str | None
    number: str
    """E.164."""
    destination: str
    """Where the number rings: ``+33 FR`` (country code and region), see :func:`destination`."""
    started_at: datetime
    ended_at: datetime
    duration_seconds: Decimal
    """How long the site held the line (dialling included), to the millisecond."""
    pages_sent: int
    """Pages the far end newly confirmed in this call."""
    pages_confirmed: int
    """Pages of the fax confirmed after this call (earlier calls included)."""
    pages_total: int | None
    """The fax's pages."""
    ok: bool
    connected: bool
    cause: str | None
    outcome: str
    """``ok``, or the cause of the failure (``busy``, ``no_answer``...)."""
    cost: Decimal | None
    currency: str | None
    billed_seconds: int | None
    tariff: TariffTerms | None
    tenant: str
    user: str | None
    priority: int
    route_reason: str | None
    home_site: str
    recorded_at: datetime


def destination(number: str) -> str:
    """``+<country code> <region>`` of an E.164 number (``+1 US``, ``+44 GB``); the
    country code alone when no region is known (``+882``)."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return "unknown"
    region = phonenumbers.region_code_for_number(parsed)
    code = f"+{parsed.country_code}"
    return f"{code} {region}" if region and region != "001" else code


def price(
    tariff: TariffTerms | None, seconds: float, connected: bool
) -> tuple[Decimal | None, int | None]:
    """A call's cost and billed seconds under ``tariff``: a connected call is billed for
    its duration (:func:`faxfleet.billing.call_cost`); a call that never connected (busy,
    no answer, no dial tone) costs nothing: carriers bill answered calls only, connection
    fee included. No tariff: (None, None)."""
    if tariff is None:
        return None, None
    if not connected:
        return Decimal("0.000000"), 0
    billed = billing.billed_seconds(seconds, tariff.first_increment, tariff.next_increment)
    return tariff.cost(seconds), billed


def build(
    *,
    ev: AttemptResult,
    before: RecipientStatus,
    tenant: str,
    user: str | None,
    priority: int,
    home_site: str,
    pages_total: int | None,
    recorded_at: datetime,
) -> CallRecord | None:
    """The record of the call ``ev`` ends, or None when the attempt never reached a line
    (the site refused it before taking one: nothing was dialled, nothing is billed).

    ``before`` is the recipient as it stood before the result was applied: the pages
    confirmed when its attempt was routed tell the pages this call added, its tariff
    prices the call when the result carries none (an older site worker)."""
    if ev.line is None:
        return None
    tariff = ev.tariff
    if tariff is None and before.tariff_attempt == ev.attempt:
        tariff = before.tariff
    duration = Decimal(repr(max(ev.duration_seconds, 0.0))).quantize(Decimal("0.001"))
    cost, billed = price(tariff, float(duration), ev.connected)
    started = ev.at - timedelta(seconds=float(duration))
    return CallRecord(
        call_id=f"{ev.job_id}:{ev.recipient}:{ev.attempt}",
        job_id=ev.job_id,
        recipient=ev.recipient,
        attempt=ev.attempt,
        site=ev.site,
        line=ev.line,
        number=before.number,
        destination=destination(before.number),
        started_at=started,
        ended_at=ev.at,
        duration_seconds=duration,
        pages_sent=max(0, ev.pages_confirmed - before.confirmed_before),
        pages_confirmed=max(ev.pages_confirmed, 0),
        pages_total=pages_total,
        ok=ev.ok,
        connected=ev.connected,
        cause=None if ev.cause is None else ev.cause.value,
        outcome="ok" if ev.ok else (ev.cause.value if ev.cause else "failed"),
        cost=cost,
        currency=tariff.currency if tariff is not None else None,
        billed_seconds=billed,
        tariff=tariff,
        tenant=tenant,
        user=user,
        priority=priority,
        route_reason=before.route_reason if before.tariff_attempt == ev.attempt else None,
        home_site=home_site,
        recorded_at=recorded_at,
    )
