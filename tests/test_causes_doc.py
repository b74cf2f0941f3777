"""The hang-up cause table in docs/faxing.md is generated from faxfleet.causes and from the
scheduler's retry rules, so it cannot drift from what the code does.

After changing a cause, its explanation or a retry rule, regenerate the table with
``FAXFLEET_UPDATE_DOCS=1 .venv/bin/python -m pytest -q tests/test_causes_doc.py``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from faxfleet.causes import CAUSES, RetryFacts, explain, markdown_table, retry_rule
from faxfleet.messages import Cause
from faxfleet.settings import Settings
from scheduler import retry
from scheduler.retry import Counters, RetryRules, decide

DOC = Path(__file__).resolve().parent.parent / "docs" / "faxing.md"
START, END = "<!-- causes-table:start -->\n", "<!-- causes-table:end -->"

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
FAR = NOW + timedelta(days=30)


def _delay_settings() -> dict[Cause, str]:
    """Which setting gives each cause its first retry delay: give every retry setting a
    different value and see which value each cause's rule carries."""
    fields = [
        name
        for name in Settings.model_fields
        if name.startswith("retry_")
        and name.endswith("_seconds")
        and name != "retry_max_delay_seconds"
    ]
    values = {name: float(1000 + i) for i, name in enumerate(fields)}
    rules = RetryRules.from_settings(Settings(**values))
    by_value = {v: f"FAXFLEET_{k.upper()}" for k, v in values.items()}
    return {cause: by_value[rules.base_delay.get(cause, rules.default_delay)] for cause in Cause}


def _not_a_fax_calls(rules: RetryRules) -> int:
    """How many voice answers a fax gets before the scheduler gives up on the number."""
    calls = 1
    while decide(Cause.NOT_A_FAX, Counters(0, calls, calls), NOW, FAR, rules).retry_at:
        calls += 1
    return calls


def facts_from_scheduler() -> RetryFacts:
    rules = RetryRules.from_settings(Settings())
    dials = decide(Cause.BUSY, Counters(rules.max_dials, 0), NOW, FAR, rules).final_cause
    tries = decide(Cause.NO_CARRIER, Counters(0, rules.max_tries), NOW, FAR, rules).final_cause
    late = decide(Cause.BUSY, Counters(1, 0), NOW, NOW + timedelta(seconds=1), rules).final_cause
    assert dials and tries and late
    return RetryFacts(
        dial_causes=retry.DIAL_CAUSES,
        final_causes=retry.FINAL_CAUSES,
        verdicts={
            dials: "given once `FAXFLEET_MAX_DIALS` calls have failed to connect",
            tries: "given once `FAXFLEET_MAX_TRIES` connected calls have failed",
            late: "given when the next retry would fall after the fax's kill time",
        },
        limited={Cause.NOT_A_FAX: _not_a_fax_calls(rules)},
        delays={c: s for c, s in _delay_settings().items() if c not in retry.FINAL_CAUSES},
        # The lifecycle's watchdog: a site that goes silent mid-call leaves the fax
        # outcome_uncertain (scheduler/lifecycle.py, on_watch_expired).
        uncertain=frozenset({Cause.WORKER_LOST}),
    )


def generated() -> str:
    return markdown_table(facts_from_scheduler())


def _doc_table(text: str) -> str:
    assert START in text and END in text, f"{DOC} lacks the {START.strip()} markers"
    return text.split(START, 1)[1].split(END, 1)[0]


def test_every_cause_is_explained() -> None:
    assert set(CAUSES) == set(Cause)
    for cause in Cause:
        info = explain(cause)
        assert info.cause is cause
        assert info.what.endswith(".") and info.advice.endswith(".")
        assert info.phases


def test_the_retry_column_says_what_the_scheduler_does() -> None:
    """On a first failure, a cause the table calls retried gets a retry time from the
    scheduler, and one it calls final does not."""
    facts = facts_from_scheduler()
    rules = RetryRules.from_settings(Settings())
    for cause in set(Cause) - set(facts.verdicts) - facts.uncertain:
        retried = decide(cause, Counters(1, 1), NOW, FAR, rules).retry_at is not None
        assert retry_rule(cause, facts).startswith(("yes", "once")) is retried, cause
    assert retry_rule(Cause.BUSY, facts).startswith("yes after `FAXFLEET_RETRY_BUSY_SECONDS`")
    assert "at most 2" in retry_rule(Cause.NOT_A_FAX, facts)
    assert retry_rule(Cause.TOO_MANY_DIALS, facts).startswith("no: given once")


def test_the_table_in_the_docs_is_the_generated_one() -> None:
    text = DOC.read_text()
    table = generated()
    if os.environ.get("FAXFLEET_UPDATE_DOCS") and _doc_table(text) != table:
        head, rest = text.split(START, 1)
        DOC.write_text(head + START + table + END + rest.split(END, 1)[1])
        text = DOC.read_text()
    assert _doc_table(text) == table, (
        "docs/faxing.md's cause table is stale; regenerate it with "
        "FAXFLEET_UPDATE_DOCS=1 .venv/bin/python -m pytest tests/test_causes_doc.py"
    )
    assert table.count("\n") == len(Cause) + 2
