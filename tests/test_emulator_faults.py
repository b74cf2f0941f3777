"""The fault text format: what the command line and benchmarks pass."""

from __future__ import annotations

import pytest

from workers.fax.emulator import Faults, format_faults, parse_faults


def test_parse_every_fault() -> None:
    faults = parse_faults(
        "5551=busy; 5552=no_answer; 5553=no-dialtone; 5554=voice; "
        "5555=drop_after:20000,noisy_page:2,noise_every:31,bad_fcs:3; "
        "5556=silent:2.5; 5557=silent:1:dead; 5558=slow_xoff:1.5"
    )
    assert faults["5551"].busy and not faults["5551"].voice
    assert faults["5552"].no_answer and faults["5553"].no_dialtone and faults["5554"].voice
    f = faults["5555"]
    assert (f.drop_after, f.noisy_page, f.noise_every, f.bad_fcs) == (20000, 2, 31, 3)
    assert faults["5556"].silent == 2.5 and faults["5556"].silent_recovers
    assert faults["5557"].silent == 1.0 and not faults["5557"].silent_recovers
    assert faults["5558"].slow_xoff == 1.5


def test_format_round_trips() -> None:
    text = "1=busy; 2=drop_after:100,bad_fcs:2; 3=silent:1:dead; 4=noisy_page:1,noise_every:7"
    assert parse_faults(format_faults(parse_faults(text))) == parse_faults(text)
    assert str(Faults()) == ""


@pytest.mark.parametrize(
    "text",
    ["5551=explode", "5551", "=busy", "5551=busy:3", "5551=bad_fcs:0", "5551=silent:2:maybe"],
)
def test_bad_fault_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_faults(text)
