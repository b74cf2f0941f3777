"""What each hang-up cause means to the person who sent the fax, and what they can do.

A fax that failed carries a :class:`~faxfleet.messages.Cause`; users see it in the API,
in mails and callbacks, and in ``docs/faxing.md``. This module is the one place that
explains each cause in words: what happened, in which T.30 phase it typically happens,
and the advice. Whether faxfleet retries a cause is decided by the scheduler's retry
rules; :class:`RetryFacts` carries those rules in so the table in the docs is generated
from the code that decides, never written by hand (the shared package imports no
service, so the facts are handed in rather than imported).

Pure: no I/O, nothing but the standard library and :mod:`faxfleet.messages`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from faxfleet.messages import Cause


class Phase(StrEnum):
    """Where in a call a cause shows up: the T.30 phases A to E, plus the stages a fax goes
    through before any call is made."""

    BEFORE_CALL = "before the call"
    A = "A: call setup"
    B = "B: pre-message (DIS/DCS, training)"
    C = "C: page transmission"
    D = "D: post-page (MPS/EOP, MCF/RTN)"
    E = "E: call release"
    ANY = "any phase"


@dataclass(frozen=True)
class CauseInfo:
    cause: Cause
    what: str
    """What happened, in the words of someone who sent a fax."""
    phases: tuple[Phase, ...]
    """Where it typically happens (the first one is the most common)."""
    advice: str
    """What the user (or their administrator) can do about it."""


def _info(cause: Cause, what: str, phases: tuple[Phase, ...], advice: str) -> CauseInfo:
    return CauseInfo(cause, what, phases, advice)


P = Phase
CAUSES: Mapping[Cause, CauseInfo] = {
    c.cause: c
    for c in (
        _info(
            Cause.BUSY,
            "The number was busy.",
            (P.A,),
            "Nothing: the fax is sent again later. A number that stays busy is often a "
            "machine receiving many faxes; send outside office hours.",
        ),
        _info(
            Cause.NO_ANSWER,
            "The call rang but nothing answered.",
            (P.A,),
            "Check the number; the fax machine may be switched off or set not to answer.",
        ),
        _info(
            Cause.NO_DIALTONE,
            "Our modem heard no dial tone when it picked up the line.",
            (P.A,),
            "Administrator: check the cable from the modem to the wall socket, and whether "
            "the line needs a prefix (site dialing rules).",
        ),
        _info(
            Cause.NO_CARRIER,
            "The call was answered, but no fax tones came back, or the carrier was lost.",
            (P.A, P.B),
            "Check that the number is a fax number. Retried: a busy far end sometimes "
            "answers late.",
        ),
        _info(
            Cause.NOT_A_FAX,
            "A person, an answering machine or a data modem answered, not a fax machine.",
            (P.A,),
            "Check the number: it is probably a telephone number, not a fax number.",
        ),
        _info(
            Cause.TRAINING_FAILED,
            "The two modems could not agree on a speed: the training check failed even at "
            "the slowest rate.",
            (P.B,),
            "Usually a poor line; it often works on a later call. Administrator: lower the "
            "line's max_rate if it happens on many numbers.",
        ),
        _info(
            Cause.PAGE_REJECTED,
            "The far end rejected a page as unreadable (RTN) more often than allowed.",
            (P.D,),
            "Line noise. Administrator: keep ECM on, or lower the line's max_rate; standard "
            "resolution pages are shorter and survive a bad line better.",
        ),
        _info(
            Cause.REMOTE_DISCONNECTED,
            "The far end hung up, or the call dropped, before every page was confirmed.",
            (P.C, P.D),
            "Usually passes: the fax is resent from the first unconfirmed page. If it stops "
            "at the same page every time, the far end may be out of paper or memory.",
        ),
        _info(
            Cause.PROTOCOL_ERROR,
            "The far end sent an unexpected T.30 frame, or none in time.",
            (P.B, P.D),
            "Often a fax machine with a quirk. If it repeats for one number, send the "
            "site's log of the call to your administrator.",
        ),
        _info(
            Cause.MODEM_ERROR,
            "Our modem reported an error during the call.",
            (P.ANY,),
            "Administrator: look at the line's status and the site worker's log; a modem "
            "that keeps failing may need a reset or another fax class setting.",
        ),
        _info(
            Cause.MODEM_NOT_RESPONDING,
            "Our modem stopped answering commands; its line is out of service until a "
            "probe finds it working again.",
            (P.BEFORE_CALL, P.ANY),
            "Nothing for the sender: the fax goes out on another line. Administrator: check "
            "that the modem is powered and plugged in.",
        ),
        _info(
            Cause.LINE_UNAVAILABLE,
            "The site had no line free or in service when the call was due.",
            (P.BEFORE_CALL,),
            "Nothing: it is tried again. Administrator: check the site's lines.",
        ),
        _info(
            Cause.NO_SITE,
            "No site of the fleet was up to take the fax.",
            (P.BEFORE_CALL,),
            "Administrator: start a site worker, or check why the sites stopped reporting.",
        ),
        _info(
            Cause.NO_ROUTE,
            "No site of the fleet can dial this number.",
            (P.BEFORE_CALL,),
            "Administrator: add a cost table entry or dialing rule that covers the number.",
        ),
        _info(
            Cause.RENDER_ERROR,
            "The document could not be turned into fax pages.",
            (P.BEFORE_CALL,),
            "Check the document: a supported format (PDF, TIFF, text, images, Office), not "
            "password-protected, within the size limits.",
        ),
        _info(
            Cause.INVALID_NUMBER,
            "The number is not a valid telephone number.",
            (P.BEFORE_CALL,),
            "Correct it: international format (+33 1 42 68 53 00) or the national format "
            "of the fleet's default region.",
        ),
        _info(
            Cause.CANCELLED,
            "Someone cancelled the fax.",
            (P.ANY,),
            "Nothing; pages confirmed before the cancel did reach the far end.",
        ),
        _info(
            Cause.KILL_TIME,
            "The fax's deadline (kill time) passed before it could be sent.",
            (P.BEFORE_CALL,),
            "Submit it again, with a longer kill_after_seconds if it needs more retries.",
        ),
        _info(
            Cause.TOO_MANY_DIALS,
            "Every allowed call failed to connect; the last cause is in the detail.",
            (P.A,),
            "Check the number and the last cause; submit again later.",
        ),
        _info(
            Cause.TOO_MANY_TRIES,
            "Calls connected but failed part-way too many times; the last cause is in the detail.",
            (P.B, P.C, P.D),
            "The line to this number is poor; try again later, or at standard resolution.",
        ),
        _info(
            Cause.WORKER_LOST,
            "The site sending the fax went silent during the call: the far end may have "
            "received some or all of the pages.",
            (P.C,),
            "Ask the recipient what arrived before sending again: faxfleet never redials "
            "such a fax by itself, to avoid sending it twice.",
        ),
        _info(
            Cause.QUOTA_EXCEEDED,
            "Once rendered, the fax had more pages (times recipients) than were left of "
            "the tenant's daily page quota; nothing was dialled and it was not counted.",
            (P.BEFORE_CALL,),
            "Send it after midnight UTC, or in smaller parts; an administrator can raise "
            "the tenant's quota or submit it with override_policy.",
        ),
    )
}


def explain(cause: Cause) -> CauseInfo:
    """The explanation of ``cause`` (every cause has one; the test checks it)."""
    return CAUSES[cause]


# -- retry column, from the scheduler's rules -------------------------------------------------


@dataclass(frozen=True)
class RetryFacts:
    """What the scheduler's retry rules say, handed in by whoever generates the table."""

    dial_causes: frozenset[Cause]
    """Retried, and counted against the dial limit (``FAXFLEET_MAX_DIALS``)."""
    final_causes: frozenset[Cause]
    """Never retried."""
    verdicts: Mapping[Cause, str] = field(default_factory=dict)
    """Causes the scheduler itself gives a fax when it stops retrying, with why."""
    limited: Mapping[Cause, int] = field(default_factory=dict)
    """Causes retried only up to this many calls in total."""
    delays: Mapping[Cause, str] = field(default_factory=dict)
    """The setting that gives each retried cause its first delay."""
    uncertain: frozenset[Cause] = frozenset()
    """Causes that leave a fax ``outcome_uncertain``: never redialled automatically."""


def retry_rule(cause: Cause, facts: RetryFacts) -> str:
    """Whether and how faxfleet retries ``cause``, in one table cell."""
    if cause in facts.uncertain:
        return "no: outcome uncertain, never redialled automatically"
    if cause in facts.verdicts:
        return f"no: {facts.verdicts[cause]}"
    if cause in facts.final_causes:
        return "no"
    delay = f" after `{facts.delays[cause]}`" if cause in facts.delays else ""
    if cause in facts.limited:
        return f"once more{delay} (at most {facts.limited[cause]} such calls)"
    if cause in facts.dial_causes:
        return f"yes{delay}; counts as a dial (`FAXFLEET_MAX_DIALS`)"
    return (
        f"yes{delay}; counts as a try (`FAXFLEET_MAX_TRIES`), or as a dial if the call "
        "never connected; resumes at the first page not confirmed"
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(facts: RetryFacts) -> str:
    """The hang-up cause table of ``docs/faxing.md``, one row per cause in
    :class:`~faxfleet.messages.Cause` order."""
    rows = [
        "| cause | what happened | typical T.30 phase | retried by faxfleet | what you can do |",
        "|---|---|---|---|---|",
    ]
    for cause in Cause:
        info = explain(cause)
        phases = ", ".join(p.value for p in info.phases)
        cells = (f"`{cause.value}`", info.what, phases, retry_rule(cause, facts), info.advice)
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows) + "\n"
