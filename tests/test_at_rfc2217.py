"""An ``rfc2217://`` URL, as a modem behind ser2net is reached: here pyserial's own RFC 2217
port manager serves the emulated modem's pty on a loopback TCP port."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import serial
import serial.rfc2217

from workers.fax.emulator import EmulatorPair
from workers.fax.modem.at import AtPort
from workers.fax.modem.class1 import CallStatus, Class1Modem, Modulation


class _PtyPort(serial.Serial):
    """The server's end of the emulated modem's pty. A pty has no modem control lines
    (they raise OSError 25): the port manager reads them as off and its DTR/RTS requests
    (pyserial's RFC 2217 client sends them when it opens) change nothing, as with ser2net
    on a port without those lines."""

    cts = dsr = ri = cd = property(lambda self: False)  # type: ignore[assignment]

    def _update_dtr_state(self) -> None:
        pass

    def _update_rts_state(self) -> None:
        pass


class _Client:
    """The port manager writes its Telnet replies through ``write``."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self.lock:
            self.conn.sendall(data)


def _serve(pty: str, listener: socket.socket, stop: threading.Event) -> None:
    """One client: bytes both ways through the RFC 2217 port manager."""
    conn, _ = listener.accept()
    conn.settimeout(0.05)
    client = _Client(conn)
    ser = _PtyPort(pty, timeout=0.05)
    manager = serial.rfc2217.PortManager(ser, client)

    def to_client() -> None:
        while not stop.is_set():
            try:
                data = ser.read(ser.in_waiting or 1)
            except (serial.SerialException, OSError):
                return  # the emulator stopped
            if data:
                client.write(b"".join(manager.escape(data)))

    pump = threading.Thread(target=to_client, daemon=True)
    pump.start()
    while not stop.is_set():
        try:
            data = conn.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            break
        if not data:
            break
        ser.write(b"".join(manager.filter(data)))
    stop.set()
    pump.join(2)
    ser.close()
    conn.close()


@pytest.fixture
def rfc2217_url() -> Iterator[tuple[str, EmulatorPair]]:
    with EmulatorPair(time_scale=100) as pair:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        stop = threading.Event()
        server = threading.Thread(target=_serve, args=(pair.urls[0], listener, stop))
        server.start()
        yield f"rfc2217://127.0.0.1:{listener.getsockname()[1]}", pair
        stop.set()
        server.join(5)
        listener.close()


def test_rfc2217_url_carries_commands_and_page_data(
    rfc2217_url: tuple[str, EmulatorPair],
) -> None:
    url, pair = rfc2217_url
    a = Class1Modem(AtPort.open(url, name="rfc2217-a"))
    b = Class1Modem(AtPort.open(pair.urls[1], name="pty-b"))
    try:
        assert a.probe().class1
        got: dict[str, object] = {}

        def answer() -> None:
            b.port.wait_for(["RING"], 5)
            got["answer"] = b.answer(10)
            got["data"] = b.receive_data(Modulation.V29_9600, 5)

        side = threading.Thread(target=answer)
        side.start()
        assert a.dial("5551002", 10) is CallStatus.OK
        page = bytes(range(256)) * 40  # every byte value, telnet's 0xff included
        assert a.send_data(Modulation.V29_9600, page) is CallStatus.OK
        side.join(10)
        assert got["answer"] is CallStatus.OK
        assert got["data"].data[: len(page)] == page  # type: ignore[attr-defined]
    finally:
        a.port.close()
        b.port.close()
