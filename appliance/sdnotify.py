"""The systemd notify protocol (sd_notify(3)), without the `systemd` Python package.

A message is one datagram of newline-separated KEY=VALUE lines sent to the AF_UNIX socket named
by $NOTIFY_SOCKET: a filesystem path, or an abstract socket written with a leading '@'.
Outside systemd the variable is unset and every call is a no-op, so the daemon runs the same
under `appliance run` in a terminal as under systemd.

Pings come from `watchdog_loop`, a coroutine on the event loop itself: if the loop stalls (a
blocking call, a deadlock), the pings stop and systemd restarts the service after WatchdogSec.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

logger = logging.getLogger(__name__)

# How often STATUS= is refreshed when systemd set no watchdog (Type=notify without WatchdogSec).
STATUS_REFRESH_S = 10.0

_USEC = 1_000_000


class Notifier:
    """Sends notifications to systemd. Never blocks and never raises: the service must run on even
    when the notify socket is gone (systemd restarted, or a test ended)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = _watchdog_usec(env)
        self._sock: socket.socket | None = None
        self._failure_logged = False

    @property
    def enabled(self) -> bool:
        """True when systemd (or a test) is listening."""
        return self._address is not None

    def ready(self) -> None:
        self.send("READY=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def status(self, text: str) -> None:
        self.send(_status_line(text))

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WatchdogSec, as sd_watchdog_enabled(3) advises),
        or None when systemd expects no pings from this process."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / _USEC / 2

    def send(self, *lines: str) -> bool:
        """One datagram with the given KEY=VALUE lines. False if it could not be sent."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # A full socket buffer (systemd busy) must not stall the event loop: drop instead.
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(lines).encode("utf-8"), self._address)
        except OSError as exc:
            # Logged once: a vanished socket would otherwise add a line to every ping.
            if not self._failure_logged:
                self._failure_logged = True
                logger.warning(
                    "cannot notify systemd (%s); the service keeps running, but systemd may consider it "
                    "hung: check NotifyAccess= and the unit's Type=notify",
                    exc.strerror or exc,
                    extra={"notify_socket": _printable(self._address)},
                )
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status_line(text: str) -> str:
    """STATUS= holds one line: a newline would start a new (bogus) key."""
    return "STATUS=" + " ".join(text.split())


def _socket_address(value: str) -> str | None:
    if not value:
        return None
    if value.startswith("@"):
        # Linux abstract namespace: the name starts with a NUL byte instead of '@'.
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    logger.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract socket; systemd notifications are off", value)
    return None


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """WATCHDOG_USEC, if it is meant for this process (sd_watchdog_enabled(3))."""
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        # Inherited from a parent that is the one systemd watches.
        return None
    try:
        usec = int(raw)
    except ValueError:
        usec = 0
    if usec <= 0:
        logger.warning("WATCHDOG_USEC=%r is not a positive number of microseconds; not sending pings", raw)
        return None
    return usec


def _printable(address: str) -> str:
    return "@" + address[1:] if address.startswith("\0") else address


async def watchdog_loop(notifier: Notifier, status_fn: Callable[[], str]) -> None:
    """Ping WATCHDOG=1 every `watchdog_interval()` and send STATUS= when `status_fn()` changes.

    Runs until cancelled. Run it as a plain task of the main loop, not under the Supervisor: a
    restarted watchdog would hide exactly the stall it exists to report.
    """
    if not notifier.enabled:
        return
    interval = notifier.watchdog_interval()
    pinging = interval is not None
    period = interval if interval is not None else STATUS_REFRESH_S
    last_status: str | None = None
    while True:
        lines = ["WATCHDOG=1"] if pinging else []
        try:
            status = _status_line(status_fn())
        except Exception:
            # A bug in the summary must not stop the pings and get a healthy service killed.
            logger.exception("cannot build the systemd status line")
        else:
            if status != last_status:
                lines.append(status)
                last_status = status
        if lines:
            notifier.send(*lines)
        await asyncio.sleep(period)
