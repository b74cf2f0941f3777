"""Redis key names shared between services.

Only data that more than one service reads lives under these names; each service keeps
its private keys in its own package. All keys start with ``ff:``.
"""

from __future__ import annotations


def document(job_id: str, index: int) -> str:
    """An uploaded document (bytes), written by the API, read by the renderer."""
    return f"ff:doc:{job_id}:{index}"


def pages(job_id: str) -> str:
    """Hash of rendered pages: field ``n`` (1-based) -> single-page TIFF bytes."""
    return f"ff:pages:{job_id}"


def site_status(site: str) -> str:
    """A site's published :class:`~faxfleet.messages.SiteStatus` (JSON, with a TTL)."""
    return f"ff:site:{site}"


SITE_STATUS_PATTERN = "ff:site:*"


def site_lines(site: str) -> str:
    """The number of lines an administrator gave a site (routing writes, the site worker
    follows it without a restart)."""
    return f"ff:site-lines:{site}"


def site_inflight(site: str) -> str:
    """Attempts handed to a site and not yet ended (hash attempt id -> dispatch record):
    the dispatcher adds, the site worker removes when the attempt ends."""
    return f"ff:inflight:{site}"


WAITING = "ff:rt:waiting"
"""Attempts waiting for a line, fleet-wide (sorted set: attempt id by
:func:`waiting_score`): the router adds, the dispatcher takes (``routing/waiting.py``);
metrics count them per priority."""

PRIORITY_BAND = 1e13
"""Width of one priority's score range in :data:`WAITING` (milliseconds since the epoch
stay far below it)."""


def waiting_score(priority: int, enqueued_at: float) -> float:
    """Lower is first: priority band (9 first), then arrival (milliseconds)."""
    return (9 - priority) * PRIORITY_BAND + enqueued_at * 1000


def waiting_band(priority: int) -> tuple[float, float]:
    """The scores of :data:`WAITING` that faxes of ``priority`` have (min inclusive, max
    exclusive)."""
    low = (9 - priority) * PRIORITY_BAND
    return low, low + PRIORITY_BAND


def fax_state(state: str) -> str:
    """Faxes whose (summary) state is ``state``: a sorted set of fax ids by the time they
    entered it, kept by the job store in the transaction that changes the state; settled
    entries older than the retention are trimmed (faxes are kept that long)."""
    return f"ff:stats:state:{state}"


FAX_STATES_ENTERED = "ff:stats:entered"
"""Hash: fax state -> how many times a fax entered it, fleet-wide (a counter)."""

SITES_SEEN = "ff:sites:seen"
"""Sorted set: every site that published its state, by when it last did (the site
worker adds itself each time it publishes): metrics list a site gone silent as down."""

DISPATCH_WAKE = "ff:dispatch:wake"
"""A list the dispatcher blocks on: pushed when a line frees or work arrives."""

DISPATCH_SUMMARY = "ff:fleet:dispatch"
"""The dispatcher's :class:`~faxfleet.messages.DispatchSummary` (JSON, short expiry)."""

HOME_SITES = "ff:homes"
"""Set of sites whose scheduler applies events and sends notifications: a fax may only
name one of these as its home site (its events would otherwise wait forever)."""


def console_session(token: str) -> str:
    """A web console session (JSON: role, tenant, key id, CSRF token) with a TTL, read by
    every API node (``scheduler/console``); deleted at sign-out."""
    return f"ff:console:session:{token}"


def console_admin_key(token: str) -> str:
    """The admin key an admin console session signed in with (plain text, kept for the
    session's life only): the fleet pages present it to the routing admin API
    (``scheduler/console/adminapi.py``). Never in a cookie; deleted at sign-out."""
    return f"ff:console:adminkey:{token}"


def cancel_flag(job_id: str) -> str:
    """Set by the scheduler when a fax is cancelled; site workers check it between pages."""
    return f"ff:cancel:{job_id}"


def attempt_claim(attempt_id: str) -> str:
    """Claimed (SET NX) by the site worker that makes an attempt; a redelivered or
    duplicated send order for the same attempt finds it taken and is dropped."""
    return f"ff:claim:{attempt_id}"


def lease(attempt_id: str) -> str:
    """``<token>|<worker>`` with an expiry, set when a site worker claims an attempt and
    renewed while the call lasts (``lease_seconds``). The dispatcher frees the slot of a
    started attempt whose lease expired and tells the scheduler (``LeaseLost``)."""
    return f"ff:lease:{attempt_id}"


def in_doubt(site: str) -> str:
    """Attempts of ``site`` whose lease expired while started (hash attempt id -> JSON
    with the order and the worker that held it): written by the dispatcher when it frees
    the slot, cleared by the site worker when it reports the call's result or finds the
    holder's process dead after a restart (``HolderDead``)."""
    return f"ff:in-doubt:{site}"


def sim_script(number: str) -> str:
    """Simulated telephone network: outcomes scripted for calls to ``number`` (a list,
    one entry popped per call; empty means the call succeeds)."""
    return f"ff:sim:script:{number}"


def sim_received(number: str) -> str:
    """Simulated telephone network: what the far end at ``number`` received (a list)."""
    return f"ff:sim:received:{number}"


def sim_confirmed(number: str) -> str:
    """Emulated telephone network: each page the far end at ``number`` confirmed (MCF),
    one JSON entry per page, written as it happens."""
    return f"ff:sim:confirmed:{number}"


def inbound_fax(inbound_id: str) -> str:
    """A received fax as one multi-page TIFF (bytes, with the inbound retention TTL):
    written by the receiving site's worker, read by its scheduler (mail, API)."""
    return f"ff:inbound:{inbound_id}:tiff"


ACCT_CALLS = "ff:acct:calls"
"""The call journal (a stream): one entry per call a site made (field ``r``: a
:class:`~faxfleet.accounting.CallRecord` as JSON), added by the scheduler in the same
transaction that applies the call's result. The store of record without a database;
with one, the journal its copier empties (``docs/accounting.md``)."""

ACCT_GROUP = "acct-copier"
"""The consumer group of :data:`ACCT_CALLS` that copies records to PostgreSQL."""

ACCT_COPIED = "ff:acct:copied"
"""Hash: what the copier last did (``at``, ``copied``, ``error``), for health checks."""
