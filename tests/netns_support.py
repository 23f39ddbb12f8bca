"""Network namespaces as a test peer: a guest ─ gateway ─ internet topology for one test module,
with the shop's LAN (where the cameras are) on a third side of the gateway.

    guest ns                 gateway ns                         internet ns
    guest0 ──veth── gw-guest  (the box: nftables, the portal)  gw-inet ──veth── inet0
    10.99.1.2       10.99.1.1                                   203.0.113.1     203.0.113.2
    fd00:99:1::2    fd00:99:1::1                                2001:db8:99:2::1 2001:db8:99:2::2
                              gw-lan ──veth── lan0 (lan ns)
                              192.168.77.1    192.168.77.2
                              fd00:99:3::1    fd00:99:3::2

"The internet" has public-looking addresses (RFC 5737 / RFC 3849 documentation ranges) and the
LAN private ones, as in a shop: the gateway keeps signed-in guests away from private ranges. The
addresses exist only inside the namespaces, and the namespace names are unique per run, so
several test runs on one machine do not meet. Every process is started inside a namespace with
`ip netns exec` (which execs the command: the process id is the command's), and `topology()`
always cleans up: it kills whatever still runs in its namespaces (only its own processes can be
there) and deletes them.

Typical use, from a module's fixture (see tests/test_gateway_nftables.py):

    with netns_support.topology() as net:
        server = net.start(net.internet, sys.executable, "-m", "http.server", "80", "--bind", "::")
        result = await net.curl("http://10.99.2.2/")
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PYTHON = sys.executable
REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 20.0


def unavailable_reason() -> str | None:
    """None when namespaces and nftables can be used here, else why not (for a visible skip)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and nftables); run the tests as root"
    missing = [tool for tool in ("ip", "nft", "curl") if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} (apt-get install iproute2 nftables curl)"
    name = f"apt-probe-{secrets.token_hex(4)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    try:
        probe = subprocess.run(
            ["ip", "netns", "exec", name, "nft", "list", "ruleset"], capture_output=True, text=True, check=False
        )
        if probe.returncode != 0:
            return f"nftables does not work in a namespace: {probe.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return None


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float


@dataclass
class Topology:
    guest: str
    gateway: str
    internet: str
    lan: str
    guest_if: str = "guest0"
    gateway_guest_if: str = "gw-guest"
    gateway_inet_if: str = "gw-inet"
    internet_if: str = "inet0"
    gateway_lan_if: str = "gw-lan"
    lan_if: str = "lan0"
    guest_ip: str = "10.99.1.2"
    gateway_guest_ip: str = "10.99.1.1"
    gateway_inet_ip: str = "203.0.113.1"
    internet_ip: str = "203.0.113.2"
    gateway_lan_ip: str = "192.168.77.1"
    lan_ip: str = "192.168.77.2"
    guest_ip6: str = "fd00:99:1::2"
    gateway_guest_ip6: str = "fd00:99:1::1"
    gateway_inet_ip6: str = "2001:db8:99:2::1"
    internet_ip6: str = "2001:db8:99:2::2"
    gateway_lan_ip6: str = "fd00:99:3::1"
    lan_ip6: str = "fd00:99:3::2"
    log_dir: Path = Path()
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def namespaces(self) -> tuple[str, str, str, str]:
        return (self.guest, self.gateway, self.internet, self.lan)

    def argv(self, ns: str, *command: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *command]

    def run(self, ns: str, *command: str, timeout_s: float = 30.0) -> str:
        """A short command inside `ns` (set-up, inspection); its stdout. Fails the test on error."""
        done = subprocess.run(self.argv(ns, *command), capture_output=True, text=True, timeout=timeout_s, check=False)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} in {ns} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    async def exec(self, ns: str, *command: str, timeout_s: float = 30.0) -> Result:
        """A command inside `ns`, from async code, whatever its exit status."""
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *self.argv(ns, *command), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return Result(proc.returncode or 0, out.decode(), err.decode(), time.monotonic() - started)

    async def curl(self, url: str, *options: str, max_time_s: float = 3.0, ns: str | None = None) -> Result:
        """`curl` from the guest (or `ns`): returncode 0 with the body, 7 refused/reset, 28 timed out."""
        return await self.exec(ns or self.guest, "curl", "-s", "-m", f"{max_time_s:g}", *options, url)

    def start(self, ns: str, *command: str, ready: str | None = None) -> subprocess.Popen[bytes]:
        """A long-running process inside `ns`, killed at teardown. Its output goes to a log file (a
        pipe nobody reads would fill and stall it); with `ready`, waits until the log contains it
        (a server saying it listens)."""
        log = self.log_dir / f"{len(self.processes):02d}-{Path(command[0]).name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                self.argv(ns, *command),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.processes.append(proc)
        if ready is not None:
            deadline = time.monotonic() + START_TIMEOUT_S
            while ready not in log.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{' '.join(command)} did not say {ready!r}:\n{log.read_text()[-3000:]}")
                time.sleep(0.02)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
        """Stops a process from `start`; its exit status."""
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def mac(self, ns: str, interface: str) -> str:
        return self.run(ns, "cat", f"/sys/class/net/{interface}/address").strip()


def _build(net: Topology) -> None:
    g, w, i, lan = net.namespaces
    commands = [
        *(["netns", "add", ns] for ns in net.namespaces),
        ["link", "add", net.guest_if, "netns", g, "type", "veth", "peer", "name", net.gateway_guest_if, "netns", w],
        ["link", "add", net.internet_if, "netns", i, "type", "veth", "peer", "name", net.gateway_inet_if, "netns", w],
        ["link", "add", net.lan_if, "netns", lan, "type", "veth", "peer", "name", net.gateway_lan_if, "netns", w],
    ]
    for ns, interface, v4, v6 in (
        (g, net.guest_if, net.guest_ip, net.guest_ip6),
        (w, net.gateway_guest_if, net.gateway_guest_ip, net.gateway_guest_ip6),
        (w, net.gateway_inet_if, net.gateway_inet_ip, net.gateway_inet_ip6),
        (i, net.internet_if, net.internet_ip, net.internet_ip6),
        (w, net.gateway_lan_if, net.gateway_lan_ip, net.gateway_lan_ip6),
        (lan, net.lan_if, net.lan_ip, net.lan_ip6),
    ):
        commands += [
            ["-n", ns, "addr", "add", f"{v4}/24", "dev", interface],
            # nodad: the address is usable at once, not after duplicate address detection.
            ["-n", ns, "-6", "addr", "add", f"{v6}/64", "dev", interface, "nodad"],
            ["-n", ns, "link", "set", interface, "up"],
        ]
    commands += [*(["-n", ns, "link", "set", "lo", "up"] for ns in net.namespaces)]
    commands += [
        ["-n", g, "route", "add", "default", "via", net.gateway_guest_ip],
        ["-n", g, "-6", "route", "add", "default", "via", net.gateway_guest_ip6],
        ["-n", i, "route", "add", "default", "via", net.gateway_inet_ip],
        ["-n", i, "-6", "route", "add", "default", "via", net.gateway_inet_ip6],
        ["-n", lan, "route", "add", "default", "via", net.gateway_lan_ip],
        ["-n", lan, "-6", "route", "add", "default", "via", net.gateway_lan_ip6],
    ]
    for command in commands:
        done = subprocess.run(["ip", *command], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise AssertionError(f"ip {' '.join(command)}: {done.stderr.strip()}")
    net.run(w, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")


def _teardown(net: Topology) -> None:
    for proc in net.processes:
        net.stop(proc, signal.SIGKILL)
    for ns in net.namespaces:
        # Anything else still inside (a curl the test gave up on) can only be this test's.
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@contextlib.contextmanager
def topology(prefix: str = "apt") -> Iterator[Topology]:
    run_id = f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix=f"{run_id}-") as logs:
        net = Topology(
            guest=f"{run_id}-guest",
            gateway=f"{run_id}-gw",
            internet=f"{run_id}-inet",
            lan=f"{run_id}-lan",
            log_dir=Path(logs),
        )
        try:
            _build(net)
            yield net
        finally:
            _teardown(net)
