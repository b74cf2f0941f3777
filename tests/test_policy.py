"""routing.policy.place: candidates in, one decision out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.policy import Candidate, place


def c(site: str, up: int, busy: int = 0, waiting: int = 0) -> Candidate:
    return Candidate(site=site, lines_up=up, lines_busy=busy, waiting=waiting)


@pytest.mark.parametrize(
    ("candidates", "home", "expected"),
    [
        ([c("paris", 4, busy=3), c("lyon", 4, busy=1)], "paris", "lyon"),
        ([c("paris", 4, busy=4, waiting=2), c("lyon", 2, busy=2)], "paris", "lyon"),
        ([c("paris", 2, busy=1), c("lyon", 4, busy=1)], "paris", "lyon"),
        ([c("paris", 4, busy=1), c("lyon", 4, busy=2)], "lyon", "paris"),
        # equal load: the home site wins, whatever the name order
        ([c("berlin", 4, busy=2), c("zurich", 2, busy=1)], "zurich", "zurich"),
        ([c("zurich", 2, busy=1), c("berlin", 4, busy=2)], "berlin", "berlin"),
        # equal load, neither is home: more lines, then the name
        ([c("berlin", 2), c("zurich", 4)], "paris", "zurich"),
        ([c("zurich", 4), c("berlin", 4)], "paris", "berlin"),
        # a site with every line out of service is skipped even when idle
        ([c("paris", 0), c("lyon", 1, busy=1, waiting=5)], "paris", "lyon"),
        ([c("lyon", 3)], "paris", "lyon"),
    ],
)
def test_place(candidates: list[Candidate], home: str, expected: str) -> None:
    placement = place(candidates, home)
    assert placement.site == expected
    assert placement.reason


def test_no_sites() -> None:
    placement = place([], "paris")
    assert placement.site is None
    assert placement.reason == "no site is up"


def test_all_lines_out_of_service() -> None:
    placement = place([c("paris", 0), c("lyon", 0, waiting=3)], "paris")
    assert placement.site is None
    assert placement.reason == "no site has a line in service"


def test_reason_names_load_and_sites() -> None:
    placement = place([c("paris", 4, busy=2), c("lyon", 0)], "paris")
    assert placement.reason == "load 0.50 over 1 site(s)"


candidate_lists = st.lists(
    st.builds(
        Candidate,
        site=st.sampled_from(["paris", "lyon", "berlin", "zurich", "oslo", "rome"]),
        lines_up=st.integers(min_value=0, max_value=8),
        lines_busy=st.integers(min_value=0, max_value=8),
        waiting=st.integers(min_value=0, max_value=50),
    ),
    max_size=6,
    unique_by=lambda x: x.site,
)


@settings(max_examples=300, deadline=None)
@given(candidate_lists, st.sampled_from(["paris", "lyon", "berlin", "nowhere"]))
def test_choice_is_usable_and_least_loaded(candidates: list[Candidate], home: str) -> None:
    placement = place(candidates, home)
    usable = [x for x in candidates if x.lines_up > 0]
    if not usable:
        assert placement.site is None
        return
    chosen = next(x for x in candidates if x.site == placement.site)
    assert chosen.lines_up > 0
    assert not any(x.load < chosen.load for x in usable)
    home_usable = [x for x in usable if x.site == home]
    if home_usable and home_usable[0].load == chosen.load:
        assert chosen.site == home
