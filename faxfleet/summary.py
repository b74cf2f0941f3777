"""The demo's summary: one line per recipient, plain text, 80 columns.

Pure: :class:`~faxfleet.messages.FaxStatus` objects (with their history) in, text out.
Everything shown comes from what the fleet recorded: the site, the routing choice and
cost the dispatcher gave (``route_choice``, ``cost_estimate``), the wait from
``queued_since`` to ``call_started_at`` (or ``routed_at``), and the calls from the
history.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from faxfleet.messages import FaxStatus, JobState, RecipientStatus, RouteChoice

WORDS: dict[RouteChoice, str] = {
    RouteChoice.CHEAPEST: "cheapest site",
    RouteChoice.OVERFLOW: "overflow: cheaper busy",
    RouteChoice.WAITED: "waited for cheap line",
    RouteChoice.BAND: "waited for cheaper band",
    RouteChoice.ONLY: "only site that can dial",
    RouteChoice.EARLIEST: "earliest start",
    RouteChoice.EXCHANGED: "swapped, cheaper in all",
}
"""Why a site was chosen, in plain words (at most 23 characters)."""

LEGEND = """\
wait   from joining the queue for a line to the call's start (~: to its hand-out
       to the site, for a call that never started)
why    the dispatcher's recorded reason: cheapest site that keeps the promise;
       overflow: a cheaper site's lines were all busy, a dearer one sent it now;
       waited: it waited for the cheaper site's line, not a dearer free one
cost   expected cost at that site, rounded to the currency's minor unit
d/t    calls placed / calls that reached the far end's fax (from the history)"""

MINOR_UNITS = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "BHD": 3, "KWD": 3, "OMR": 3, "TND": 3}
"""Decimal places of currencies that do not have two (ISO 4217)."""

WIDTH = 80


def money(amount: str | None, currency: str | None) -> str:
    """``amount`` rounded to ``currency``'s minor unit, with the currency (``-``: none)."""
    if amount is None:
        return "-"
    try:
        value = Decimal(amount)
    except InvalidOperation:
        return "-"
    places = MINOR_UNITS.get((currency or "").upper(), 2)
    rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"{rounded} {currency}" if currency else str(rounded)


def stamp(at: datetime | None, zone: tzinfo | None = None) -> str:
    """A time with its date and zone (``2026-12-07 14:03:21 CET``)."""
    if at is None:
        return "-"
    local = at.astimezone(zone)
    name = local.tzname() or local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} {name}"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


@dataclass(frozen=True)
class Calls:
    """A recipient's calls as its history records them."""

    dials: int
    """Calls placed (moves to ``dialing``)."""
    tries: int
    """Calls that reached the far end's fax (``dialing`` → ``sending``)."""


def calls(fax: FaxStatus, index: int) -> Calls:
    dials = tries = 0
    for t in fax.history:
        if t.recipient != index:
            continue
        if t.to_state == JobState.DIALING:
            dials += 1
        elif t.to_state == JobState.SENDING and t.from_state == JobState.DIALING:
            tries += 1
    return Calls(dials, tries)


def counters_agree(fax: FaxStatus, r: RecipientStatus) -> bool:
    """The fleet's retry counters (failed calls: ``dials`` unanswered, ``tries``
    answered) plus the final successful call equal the calls in the history."""
    made = calls(fax, r.index).dials
    return made == r.dials + r.tries + (1 if r.state == JobState.DONE else 0)


def wait_of(r: RecipientStatus) -> str:
    if r.queued_since is None:
        return "-"
    if r.call_started_at is not None:
        return duration(max(0.0, (r.call_started_at - r.queued_since).total_seconds()))
    if r.routed_at is not None:
        return "~" + duration(max(0.0, (r.routed_at - r.queued_since).total_seconds()))
    return "-"


def why_of(r: RecipientStatus) -> str:
    if r.route_choice is None:
        return "-"
    return WORDS.get(r.route_choice, r.route_choice.value)


def result_of(r: RecipientStatus) -> str:
    return {"outcome_uncertain": "uncertain", "retry_scheduled": "retry"}.get(
        r.state.value, r.state.value
    )


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


HEADER = f" {'to':<14}{'site':<8}{'wait':>6} {'why':<23} {'cost':>8} {'pgs':>3} {'d/t':>3} result"


def recipient_row(fax: FaxStatus, r: RecipientStatus) -> str:
    made = calls(fax, r.index)
    pages = f"{r.pages_confirmed}/{fax.pages}" if fax.pages else "-"
    flag = "" if counters_agree(fax, r) or r.state not in (JobState.DONE, JobState.FAILED) else "!"
    row = (
        f" {_fit(r.number, 13):<14}{(r.site or '-'):<8}{wait_of(r):>6} "
        f"{why_of(r):<23} {money(r.cost_estimate, r.currency):>8} {pages:>3} "
        f"{f'{made.dials}/{made.tries}{flag}':>3} {result_of(r)}"
    )
    return _fit(row, WIDTH)


def fax_line(fax: FaxStatus, zone: tzinfo | None = None) -> str:
    notified = f", notified: {fax.notified_by}" if fax.notified_by else ""
    line = f"{fax.id} p{fax.priority} from {fax.home_site}, {stamp(fax.created_at, zone)}{notified}"
    if fax.user and len(line) + len(fax.user) + 3 <= WIDTH:
        line += f" ({fax.user})"
    return _fit(line, WIDTH)


def causes(fax: FaxStatus) -> list[str]:
    """Why a recipient failed (or is uncertain), one indented line each."""
    out = []
    for r in fax.recipients:
        if r.state in (JobState.FAILED, JobState.OUTCOME_UNCERTAIN) and (r.cause or r.detail):
            what = r.cause.value if r.cause else ""
            if r.detail:
                what = f"{what}: {r.detail}" if what else r.detail
            out.append(_fit(f"   {r.number} {what}", WIDTH))
    return out


def summary(faxes: list[FaxStatus], *, zone: tzinfo | None = None, legend: bool = True) -> str:
    """The summary table: per fax a line (id, priority, home site, user, submitted,
    who notified), then one row per recipient; the legend after it."""
    lines = ["Summary", HEADER, "-" * WIDTH]
    for fax in faxes:
        lines.append(fax_line(fax, zone))
        lines += [recipient_row(fax, r) for r in fax.recipients]
        lines += causes(fax)
    if legend:
        lines += ["-" * WIDTH, *LEGEND.splitlines()]
    return "\n".join(lines)


@dataclass(frozen=True)
class Totals:
    done: int
    failed: int
    recipients: int
    calls: dict[str, int]
    """Calls placed per site (from the histories)."""
    stories: Counter[RouteChoice]


def totals(faxes: list[FaxStatus]) -> Totals:
    per_site: Counter[str] = Counter()
    for fax in faxes:
        for t in fax.history:
            if t.to_state == JobState.DIALING and t.site:
                per_site[t.site] += 1
    recipients = [r for f in faxes for r in f.recipients]
    return Totals(
        done=sum(1 for r in recipients if r.state == JobState.DONE),
        failed=sum(1 for r in recipients if r.state == JobState.FAILED),
        recipients=len(recipients),
        calls=dict(sorted(per_site.items())),
        stories=Counter(r.route_choice for r in recipients if r.route_choice is not None),
    )


def final_line(faxes: list[FaxStatus], mails: int, sites: list[str]) -> str:
    """``18/19 recipients done, 1 failed; 18 mails; calls: paris 15, newyork 10``."""
    t = totals(faxes)
    per_site = ", ".join(f"{s} {t.calls.get(s, 0)}" for s in sites)
    return (
        f"{t.done}/{t.recipients} recipients done, {t.failed} failed; "
        f"{mails} mails; calls: {per_site}"
    )


def progress_line(faxes: list[FaxStatus], at: datetime, zone: tzinfo | None = None) -> str:
    """One plain progress line (for a pipe or a log): how many recipients are in each
    state."""
    states = Counter(r.state.value for f in faxes for r in f.recipients)
    parts = " ".join(f"{state} {n}" for state, n in sorted(states.items()))
    return _fit(f"{stamp(at, zone)}  {parts}", WIDTH)
