"""The job state machine: one table of every legal transition of a recipient.

Rules the table encodes:

* A fax is rendered once for all its recipients; after that each recipient moves on its
  own (one fax to three numbers is three sends).
* ``scheduled`` waits for ``send_after``; ``retry_scheduled`` waits for the retry timer.
  Both go back through ``routing``, so every attempt is placed afresh.
* ``queued`` may go back to ``routing`` (its site dropped out before starting it).
* ``routing`` and ``queued`` may go to ``scheduled``: an operator postponed a fax waiting
  for a line (``send_after``), once routing had taken it back.
* Only ``sending`` reaches ``done``, and only with every page confirmed (a guard in the
  store: a fax is never "done" with 0 pages).
* ``outcome_uncertain`` is entered when a site went silent after dialling: the far end may
  have pages. It is never redialled automatically; a late result from the site settles it,
  or an operator resends or cancels.
* ``done``, ``failed`` and ``cancelled`` are final. No event leaves them; only an
  operator's requeue (:data:`REQUEUE`) sends a ``failed`` recipient back to ``routing``.

Anything not in the table raises :class:`IllegalTransition`. ``sending -> sending`` is
legal: it is the move from page n to page n+1.
"""

from __future__ import annotations

from faxfleet.messages import JobState as S

TRANSITIONS: dict[S, frozenset[S]] = {
    S.SUBMITTED: frozenset({S.RENDERING, S.CANCELLED, S.FAILED}),
    S.RENDERING: frozenset({S.ROUTING, S.SCHEDULED, S.FAILED, S.CANCELLED}),
    S.SCHEDULED: frozenset({S.ROUTING, S.FAILED, S.CANCELLED}),
    S.ROUTING: frozenset({S.QUEUED, S.SCHEDULED, S.RETRY_SCHEDULED, S.FAILED, S.CANCELLED}),
    S.QUEUED: frozenset(
        {
            S.DIALING,
            S.ROUTING,
            S.SCHEDULED,
            S.RETRY_SCHEDULED,
            S.FAILED,
            S.CANCELLED,
            S.OUTCOME_UNCERTAIN,
        }
    ),
    S.DIALING: frozenset(
        {S.SENDING, S.ROUTING, S.RETRY_SCHEDULED, S.FAILED, S.CANCELLED, S.OUTCOME_UNCERTAIN}
    ),
    S.SENDING: frozenset(
        {
            S.SENDING,
            S.DONE,
            S.ROUTING,
            S.RETRY_SCHEDULED,
            S.FAILED,
            S.CANCELLED,
            S.OUTCOME_UNCERTAIN,
        }
    ),
    S.RETRY_SCHEDULED: frozenset({S.ROUTING, S.FAILED, S.CANCELLED}),
    S.OUTCOME_UNCERTAIN: frozenset({S.DONE, S.FAILED, S.RETRY_SCHEDULED, S.ROUTING, S.CANCELLED}),
    S.DONE: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}

CANCELLABLE_AT_ONCE = frozenset(
    {
        S.SUBMITTED,
        S.RENDERING,
        S.SCHEDULED,
        S.ROUTING,
        S.QUEUED,
        S.RETRY_SCHEDULED,
        S.OUTCOME_UNCERTAIN,
    }
)
"""States a cancel settles immediately. ``dialing``/``sending`` are on a line: the site
worker hangs up at the next page boundary and reports ``cancelled`` itself."""

ACTIVE_ON_SITE = frozenset({S.QUEUED, S.DIALING, S.SENDING})

REQUEUE: dict[S, frozenset[S]] = {S.FAILED: frozenset({S.ROUTING})}
"""The one way out of a final state, and only by an operator (``faxfleet requeue``,
``POST /v1/faxes/{id}/retry``): a failed recipient is routed again. No event can make
this move; ``is_final`` still holds for ``failed``."""

WAITING = frozenset({S.SUBMITTED, S.RENDERING, S.SCHEDULED, S.ROUTING, S.QUEUED, S.RETRY_SCHEDULED})
"""Not yet on a line: what an operator may still alter (``PATCH /v1/faxes/{id}``).
``queued`` (handed to a site, not started) counts: a change that needs it back is held
until routing has taken it back, and dropped if the site starts it first."""

ON_TIMER = frozenset({S.SCHEDULED, S.RETRY_SCHEDULED})
"""Waiting for a timer (``send_after`` or a retry), with no attempt out at any site."""

# Order used to summarise a multi-recipient fax: the least advanced open state wins.
_PROGRESS_ORDER = [
    S.SUBMITTED,
    S.RENDERING,
    S.SCHEDULED,
    S.ROUTING,
    S.RETRY_SCHEDULED,
    S.QUEUED,
    S.DIALING,
    S.SENDING,
]


class IllegalTransition(Exception):
    """A transition the table does not allow."""

    def __init__(self, from_state: S, to_state: S) -> None:
        super().__init__(f"illegal transition {from_state.value} -> {to_state.value}")
        self.from_state = from_state
        self.to_state = to_state


def check(from_state: S, to_state: S, *, requeue: bool = False) -> None:
    """Raise :class:`IllegalTransition` unless the table allows the move (with
    ``requeue``: or :data:`REQUEUE`, an operator's requeue of a failed recipient)."""
    if to_state in TRANSITIONS[from_state]:
        return
    if requeue and to_state in REQUEUE.get(from_state, frozenset()):
        return
    raise IllegalTransition(from_state, to_state)


def is_final(state: S) -> bool:
    return not TRANSITIONS[state]


def summarise(states: list[S]) -> S:
    """The state of a whole fax from its recipients' states."""
    open_states = [s for s in states if s in _PROGRESS_ORDER]
    if open_states:
        return min(open_states, key=_PROGRESS_ORDER.index)
    if S.OUTCOME_UNCERTAIN in states:
        return S.OUTCOME_UNCERTAIN
    if all(s == S.DONE for s in states):
        return S.DONE
    if all(s == S.CANCELLED for s in states):
        return S.CANCELLED
    return S.FAILED


def mermaid() -> str:
    """The table as a Mermaid state diagram (docs/architecture.md is generated from it)."""
    lines = ["stateDiagram-v2", "    [*] --> submitted"]
    for src, targets in TRANSITIONS.items():
        for dst in sorted(targets, key=lambda s: s.value):
            lines.append(f"    {src.value} --> {dst.value}")
        if not targets:
            lines.append(f"    {src.value} --> [*]")
    for src, targets in REQUEUE.items():
        for dst in sorted(targets, key=lambda s: s.value):
            lines.append(f"    {src.value} --> {dst.value}: requeue (operator)")
    return "\n".join(lines)
