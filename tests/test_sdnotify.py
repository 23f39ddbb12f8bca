"""The notify protocol against a real AF_UNIX datagram socket, standing in for systemd."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.sdnotify import Notifier, watchdog_loop


class Listener:
    """A bound notify socket; a thread timestamps each datagram as it arrives, even while the event
    loop under test is blocked."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.received: list[tuple[float, list[str]]] = []
        self._closing = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closing:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), data.decode().split("\n")))

    def lines(self) -> list[str]:
        return [line for _, lines in self.received for line in lines]

    def wait_for(self, count: int, timeout: float = 2.0) -> list[list[str]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        return [lines for _, lines in self.received]

    def close(self) -> None:
        self._closing = True
        self._thread.join()
        self.sock.close()


@pytest.fixture
def path_listener(tmp_path: Path) -> Iterator[tuple[str, Listener]]:
    address = str(tmp_path / "notify")
    listener = Listener(address)
    yield address, listener
    listener.close()


@pytest.fixture
def abstract_listener() -> Iterator[tuple[str, Listener]]:
    name = f"appliance-test-{uuid.uuid4().hex}"
    listener = Listener("\0" + name)
    yield "@" + name, listener
    listener.close()


def test_ready_status_stopping_to_a_socket_path(
    path_listener: tuple[str, Listener], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, listener = path_listener
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    notifier = Notifier()  # reads the real environment, as under systemd
    assert notifier.enabled
    notifier.ready()
    notifier.status("3/3 cameras online\nportal up")
    notifier.watchdog()
    notifier.stopping()
    got = listener.wait_for(4)
    notifier.close()
    assert got == [["READY=1"], ["STATUS=3/3 cameras online portal up"], ["WATCHDOG=1"], ["STOPPING=1"]]


def test_abstract_socket(abstract_listener: tuple[str, Listener]) -> None:
    address, listener = abstract_listener
    notifier = Notifier({"NOTIFY_SOCKET": address})
    notifier.ready()
    notifier.watchdog()
    assert listener.wait_for(2) == [["READY=1"], ["WATCHDOG=1"]]
    notifier.close()


def test_unset_socket_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.send("READY=1") is False
    notifier.ready()
    assert notifier.watchdog_interval() is None


def test_vanished_socket_is_logged_once_and_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level(logging.WARNING, logger="appliance.sdnotify"):
        for _ in range(3):
            notifier.ready()
            notifier.watchdog()
    warnings = [r for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1
    assert "No such file or directory" in warnings[0].getMessage()
    notifier.close()


def test_bad_notify_socket_value_turns_notifications_off(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="appliance.sdnotify"):
        notifier = Notifier({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert "neither a path nor an abstract socket" in caplog.text


@pytest.mark.timeout(10)
def test_full_socket_buffer_never_blocks(tmp_path: Path) -> None:
    address = str(tmp_path / "busy")
    busy = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    busy.bind(address)  # nobody reads: systemd is busy and its queue fills up
    notifier = Notifier({"NOTIFY_SOCKET": address})
    began = time.monotonic()
    results = [notifier.send("WATCHDOG=1") for _ in range(2000)]
    assert time.monotonic() - began < 1.0
    assert results[0] is True
    assert results.count(False) > 0  # dropped with EAGAIN rather than waited for
    notifier.close()
    busy.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}, 0.1),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),  # meant for another
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert Notifier({"NOTIFY_SOCKET": "/run/x", **env}).watchdog_interval() == expected


async def test_watchdog_loop_pings_at_interval_and_sends_status_on_change(
    path_listener: tuple[str, Listener],
) -> None:
    address, listener = path_listener
    notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000"})  # ping every 0.05 s
    summary = ["2/2 cameras online"]
    task = asyncio.create_task(watchdog_loop(notifier, lambda: summary[0]))
    await asyncio.sleep(0.27)
    summary[0] = "1/2 cameras online; backoff: cam-2"
    await asyncio.sleep(0.25)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    notifier.close()
    await asyncio.sleep(0.02)  # the reader thread catches up

    pings = [t for t, lines in listener.received if "WATCHDOG=1" in lines]
    assert 8 <= len(pings) <= 12  # 0.52 s / 0.05 s
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert all(0.04 <= g <= 0.15 for g in gaps)
    statuses = [line for line in listener.lines() if line.startswith("STATUS=")]
    assert statuses == ["STATUS=2/2 cameras online", "STATUS=1/2 cameras online; backoff: cam-2"]


async def test_a_stalled_loop_sends_no_pings(path_listener: tuple[str, Listener]) -> None:
    address, listener = path_listener
    notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000"})
    task = asyncio.create_task(watchdog_loop(notifier, lambda: "ok"))
    await asyncio.sleep(0.2)

    stall_began = time.monotonic()
    time.sleep(0.5)  # a blocking call on the event loop: exactly what the watchdog must notice
    stall_ended = time.monotonic()

    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    notifier.close()
    await asyncio.sleep(0.02)

    pings = [t for t, lines in listener.received if "WATCHDOG=1" in lines]
    before = [t for t in pings if t < stall_began]
    during = [t for t in pings if stall_began + 0.02 < t < stall_ended]
    after = [t for t in pings if t >= stall_ended]
    assert len(before) >= 3
    assert during == []
    assert len(after) >= 3  # pings resume once the loop runs again
    assert max(b - a for a, b in itertools.pairwise(pings)) >= 0.45


async def test_watchdog_loop_survives_a_broken_status(
    path_listener: tuple[str, Listener], caplog: pytest.LogCaptureFixture
) -> None:
    address, listener = path_listener
    notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000"})

    def broken() -> str:
        raise KeyError("cam-3")

    task = asyncio.create_task(watchdog_loop(notifier, broken))
    await asyncio.sleep(0.12)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    notifier.close()
    got = listener.wait_for(2)
    assert len(got) >= 2 and all(lines == ["WATCHDOG=1"] for lines in got)
    assert "cannot build the systemd status line" in caplog.text


async def test_watchdog_loop_without_watchdog_sends_status_only(path_listener: tuple[str, Listener]) -> None:
    address, listener = path_listener
    notifier = Notifier({"NOTIFY_SOCKET": address})
    task = asyncio.create_task(watchdog_loop(notifier, lambda: "starting"))
    got = await asyncio.to_thread(listener.wait_for, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    notifier.close()
    assert got == [["STATUS=starting"]]


async def test_watchdog_loop_returns_when_not_under_systemd() -> None:
    await asyncio.wait_for(watchdog_loop(Notifier({}), lambda: "x"), 0.5)
