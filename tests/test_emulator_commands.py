"""The emulated modem's command interpreter, byte for byte over a pty."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import serial

from workers.fax.emulator import EmulatorPair


@pytest.fixture
def pair() -> Iterator[EmulatorPair]:
    with EmulatorPair(time_scale=100) as p:
        yield p


@pytest.fixture
def raw(pair: EmulatorPair) -> Iterator[serial.Serial]:
    ser = serial.serial_for_url(pair.urls[0], timeout=0.1)
    yield ser
    ser.close()


def exchange(ser: serial.Serial, cmd: bytes, settle: float = 0.1) -> bytes:
    ser.reset_input_buffer()
    ser.write(cmd)
    time.sleep(settle)
    out = b""
    while chunk := ser.read(max(1, ser.in_waiting)):
        out += chunk
    return out


def test_echo_then_verbose_result(raw: serial.Serial) -> None:
    assert exchange(raw, b"AT\r") == b"AT\r\r\nOK\r\n"
    assert exchange(raw, b"ATE0\r") == b"ATE0\r\r\nOK\r\n"
    assert exchange(raw, b"AT\r") == b"\r\nOK\r\n"


def test_numeric_and_quiet_results(raw: serial.Serial) -> None:
    exchange(raw, b"ATE0V0\r")
    assert exchange(raw, b"AT\r") == b"0\r"
    assert exchange(raw, b"ATX\x7f\r") == b"0\r"  # delete takes back the X
    assert exchange(raw, b"ATFOO\r") == b"4\r"
    exchange(raw, b"ATV1Q1\r")
    assert exchange(raw, b"AT\r") == b""
    assert exchange(raw, b"ATZ\r") == b"\r\nOK\r\n"  # typed quietly, answered after reset
    assert exchange(raw, b"AT\r") == b"AT\r\r\nOK\r\n"  # echo back on


def test_fax_queries(raw: serial.Serial) -> None:
    exchange(raw, b"ATE0\r")
    assert exchange(raw, b"AT+FCLASS=?\r") == b"\r\n0,1,1.0\r\n\r\nOK\r\n"
    assert exchange(raw, b"AT+FTM=?\r") == b"\r\nERROR\r\n"  # not in fax class yet
    assert exchange(raw, b"AT+FCLASS=1\r") == b"\r\nOK\r\n"
    assert b"24,48,72,73,74,96,97,98,121,122,145,146" in exchange(raw, b"AT+FRM=?\r")
    assert exchange(raw, b"AT+FTH=?\r") == b"\r\n3\r\n\r\nOK\r\n"
    assert exchange(raw, b"AT+FRS=?\r") == b"\r\n0-255\r\n\r\nOK\r\n"
    assert exchange(raw, b"AT+FAR=1;+FLO=1;+FAR?\r") == b"\r\n1\r\n\r\nOK\r\n"
    assert exchange(raw, b"AT+FLO=3\r") == b"\r\nERROR\r\n"
    assert exchange(raw, b"ATS0=2S0?\r") == b"\r\n002\r\n\r\nOK\r\n"
    assert exchange(raw, b"AT&F\r") == b"\r\nOK\r\n"
    assert exchange(raw, b"AT\r") == b"AT\r\r\nOK\r\n"  # factory settings: echo on
    assert exchange(raw, b"AT+FMI?;+FMM?\r").count(b"\r\n") == 6


def test_actions_need_a_call(raw: serial.Serial) -> None:
    exchange(raw, b"ATE0+FCLASS=1\r")
    assert exchange(raw, b"AT+FTH=3\r") == b"\r\nERROR\r\n"
    assert exchange(raw, b"AT+FRM=96\r") == b"\r\nERROR\r\n"
    assert exchange(raw, b"AT+FTM=95\r") == b"\r\nERROR\r\n"
    assert exchange(raw, b"ATA\r") == b"\r\nERROR\r\n"  # nothing rings
    assert exchange(raw, b"AT+FTS=1\r") == b"\r\nERROR\r\n"
    assert exchange(raw, b"AT+FRS=1\r") == b"\r\nERROR\r\n"


def test_data_class_cannot_dial_a_fax(raw: serial.Serial) -> None:
    exchange(raw, b"ATE0+FCLASS=0\r")
    assert exchange(raw, b"ATDT5551002\r") == b"\r\nNO CARRIER\r\n"


def test_pty_survives_the_host_reopening_it(pair: EmulatorPair) -> None:
    for _ in range(3):
        with serial.serial_for_url(pair.urls[1], timeout=0.3) as ser:
            assert exchange(ser, b"AT\r").endswith(b"OK\r\n")


def test_output_nobody_reads_does_not_block_the_modem(pair: EmulatorPair) -> None:
    """A ringing modem whose host is away must not stall the caller."""
    with serial.serial_for_url(pair.urls[0], timeout=0.3) as a:
        exchange(a, b"ATE0S7=30+FCLASS=1\r")  # 30 s of line time: many RINGs at 0.2 s
        a.write(b"ATDT5551002\r")
        got = b""
        deadline = time.monotonic() + 5
        while b"NO ANSWER" not in got and time.monotonic() < deadline:
            got += a.read(max(1, a.in_waiting))
        assert got == b"\r\nNO ANSWER\r\n"
    fd = os.open(pair.urls[1], os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert b"RING" in os.read(fd, 4096)
    finally:
        os.close(fd)
