"""The recipient state machine: the transition table, its checks and its summaries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faxfleet.messages import TERMINAL_STATES, JobState
from scheduler import states
from scheduler.states import TRANSITIONS, IllegalTransition, check, is_final, mermaid, summarise

S = JobState
FINAL = [S.DONE, S.FAILED, S.CANCELLED]


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(JobState)
    for targets in TRANSITIONS.values():
        assert targets <= set(JobState)


@pytest.mark.parametrize("state", FINAL)
def test_final_states_have_no_way_out(state: JobState) -> None:
    assert TRANSITIONS[state] == frozenset()
    assert is_final(state)
    for target in JobState:
        with pytest.raises(IllegalTransition):
            check(state, target)


def test_final_states_are_the_terminal_states() -> None:
    assert {s for s in JobState if is_final(s)} == set(FINAL) == set(TERMINAL_STATES)
    assert not is_final(S.OUTCOME_UNCERTAIN)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (S.DONE, S.SENDING),
        (S.QUEUED, S.DONE),
        (S.SUBMITTED, S.SENDING),
        (S.FAILED, S.ROUTING),
        (S.DIALING, S.DONE),
        (S.SCHEDULED, S.QUEUED),
        (S.RETRY_SCHEDULED, S.DIALING),
        (S.CANCELLED, S.SUBMITTED),
        (S.DIALING, S.DIALING),
    ],
)
def test_illegal_moves_raise(src: JobState, dst: JobState) -> None:
    with pytest.raises(IllegalTransition) as info:
        check(src, dst)
    assert info.value.from_state == src
    assert info.value.to_state == dst
    assert f"{src.value} -> {dst.value}" in str(info.value)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (S.SUBMITTED, S.RENDERING),
        (S.RENDERING, S.ROUTING),
        (S.RENDERING, S.SCHEDULED),
        (S.SCHEDULED, S.ROUTING),
        (S.ROUTING, S.QUEUED),
        (S.QUEUED, S.DIALING),
        (S.QUEUED, S.ROUTING),
        (S.DIALING, S.SENDING),
        (S.SENDING, S.SENDING),
        (S.SENDING, S.DONE),
        (S.SENDING, S.RETRY_SCHEDULED),
        (S.RETRY_SCHEDULED, S.ROUTING),
        (S.SENDING, S.OUTCOME_UNCERTAIN),
        (S.OUTCOME_UNCERTAIN, S.DONE),
        (S.OUTCOME_UNCERTAIN, S.CANCELLED),
    ],
)
def test_legal_moves_pass(src: JobState, dst: JobState) -> None:
    assert check(src, dst) is None


def test_only_sending_reaches_done() -> None:
    sources = {src for src, targets in TRANSITIONS.items() if S.DONE in targets}
    assert sources == {S.SENDING, S.OUTCOME_UNCERTAIN}


@pytest.mark.parametrize(
    ("recipients", "expected"),
    [
        ([S.SUBMITTED], S.SUBMITTED),
        ([S.DONE], S.DONE),
        ([S.DONE, S.DONE, S.DONE], S.DONE),
        ([S.FAILED, S.FAILED], S.FAILED),
        ([S.CANCELLED, S.CANCELLED], S.CANCELLED),
        ([S.DONE, S.FAILED], S.FAILED),
        ([S.CANCELLED, S.FAILED], S.FAILED),
        ([S.DONE, S.SENDING], S.SENDING),
        ([S.SENDING, S.DIALING, S.QUEUED], S.QUEUED),
        ([S.SENDING, S.RETRY_SCHEDULED], S.RETRY_SCHEDULED),
        ([S.QUEUED, S.RETRY_SCHEDULED], S.RETRY_SCHEDULED),
        ([S.ROUTING, S.SCHEDULED, S.DONE], S.SCHEDULED),
        ([S.RENDERING, S.RENDERING], S.RENDERING),
        ([S.OUTCOME_UNCERTAIN, S.DONE], S.OUTCOME_UNCERTAIN),
        ([S.OUTCOME_UNCERTAIN, S.FAILED, S.CANCELLED], S.OUTCOME_UNCERTAIN),
        ([S.OUTCOME_UNCERTAIN, S.DIALING], S.DIALING),
        ([S.FAILED, S.SENDING, S.DONE], S.SENDING),
    ],
)
def test_summarise(recipients: list[JobState], expected: JobState) -> None:
    assert summarise(recipients) == expected


def test_mermaid_has_every_transition() -> None:
    text = mermaid()
    lines = set(text.splitlines())
    assert text.startswith("stateDiagram-v2")
    assert "    [*] --> submitted" in lines
    expected = 0
    for src, targets in TRANSITIONS.items():
        for dst in targets:
            assert f"    {src.value} --> {dst.value}" in lines
            expected += 1
    for state in FINAL:
        assert f"    {state.value} --> [*]" in lines
    for src, targets in states.REQUEUE.items():
        for dst in targets:
            assert f"    {src.value} --> {dst.value}: requeue (operator)" in lines
            expected += 1
    arrows = [line for line in lines if "-->" in line and "[*]" not in line]
    assert len(arrows) == expected


def test_cancellable_and_active_sets_are_consistent() -> None:
    for state in states.CANCELLABLE_AT_ONCE:
        check(state, S.CANCELLED)
    assert not states.CANCELLABLE_AT_ONCE & {S.DIALING, S.SENDING}
    assert not states.CANCELLABLE_AT_ONCE & set(FINAL)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=1000), max_size=40))
def test_random_walk_stays_in_table(choices: list[int]) -> None:
    state = S.SUBMITTED
    final_seen = False
    for choice in choices:
        assert state in TRANSITIONS
        if final_seen:
            assert is_final(state)
        targets = sorted(TRANSITIONS[state], key=lambda s: s.value)
        if not targets:
            final_seen = True
            assert is_final(state)
            for target in JobState:
                with pytest.raises(IllegalTransition):
                    check(state, target)
            continue
        nxt = targets[choice % len(targets)]
        check(state, nxt)
        assert nxt in TRANSITIONS
        state = nxt
        if is_final(state):
            final_seen = True
    assert not final_seen or is_final(state)
