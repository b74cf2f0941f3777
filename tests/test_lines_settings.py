"""Line settings from the environment: kinds, modems as JSON, and clear refusals."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from faxfleet.modems import ModemLine
from faxfleet.settings import Settings


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(f"FAXFLEET_{key.upper()}", value)
    return Settings()


def test_modems_come_from_json_with_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    modems = [
        {"name": "usb0", "url": "/dev/ttyACM0", "fax_class": "1"},
        {
            "name": "lab",
            "url": "rfc2217://modemhost:7001",
            "fax_class": "2.0",
            "local_id": "+33 1 23 45 67 89",
            "max_rate": 9600,
            "ecm": False,
            "flow": "rtscts",
            "baudrate": 57600,
            "did": "+33123456789",
            "answer": True,
        },
    ]
    s = _settings(monkeypatch, line_kind="modem", modems=json.dumps(modems))
    assert s.line_kind == "modem"
    usb, lab = s.modems
    assert usb == ModemLine(name="usb0", url="/dev/ttyACM0")
    assert (usb.fax_class, usb.max_rate, usb.ecm, usb.flow, usb.answer) == (
        "1",
        14400,
        True,
        "xonxoff",
        False,
    )
    assert (lab.fax_class, lab.max_rate, lab.flow, lab.baudrate, lab.did, lab.answer) == (
        "2.0",
        9600,
        "rtscts",
        57600,
        "+33123456789",
        True,
    )


def test_line_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAXFLEET_LINE_KIND", raising=False)
    s = _settings(monkeypatch)
    assert s.line_kind == "emulated"
    assert s.modems == []
    assert 50 <= s.emulator_time_scale <= 200
    assert s.modem_probe_seconds > 0


@pytest.mark.parametrize(
    ("modem", "words"),
    [
        ({"name": "x", "url": "/dev/ttyS0", "max_rate": 33600}, ["max_rate", "14400"]),
        ({"name": "x", "url": "/dev/ttyS0", "fax_class": "2"}, ["fax_class"]),
        ({"name": "x", "url": "/dev/ttyS0", "local_id": "x" * 21}, ["local_id", "20"]),
        ({"name": "x", "url": "/dev/ttyS0", "flow": "hardware"}, ["flow"]),
        ({"name": "x"}, ["url", "missing"]),
        ({"name": "x", "url": "/dev/ttyS0", "speed": 9600}, ["speed"]),
        ({"name": "bad name", "url": "/dev/ttyS0"}, ["name"]),
    ],
)
def test_bad_modem_configs_are_refused_by_field(
    monkeypatch: pytest.MonkeyPatch, modem: dict[str, object], words: list[str]
) -> None:
    with pytest.raises(ValidationError) as err:
        _settings(monkeypatch, line_kind="modem", modems=json.dumps([modem]))
    text = str(err.value)
    for word in words:
        assert word in text, text


def test_modem_kind_needs_modems_and_unique_names(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="FAXFLEET_MODEMS"):
        _settings(monkeypatch, line_kind="modem")
    twice = json.dumps([{"name": "a", "url": "/dev/a"}, {"name": "a", "url": "/dev/b"}])
    with pytest.raises(ValidationError, match="unique: a"):
        _settings(monkeypatch, line_kind="modem", modems=twice)


def test_unknown_kind_and_bad_scale_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="line_kind"):
        _settings(monkeypatch, line_kind="iax")
    with pytest.raises(ValidationError, match="emulator_time_scale"):
        _settings(monkeypatch, emulator_time_scale="0")
