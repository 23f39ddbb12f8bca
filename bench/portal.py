"""How the guest portal holds up when a shop's guest network is full: 300 guests (the ZyXEL UAG4100's
limit, the seed's gateway) probing and signing in, against the real daemon as the guests' gateway.

The network is tests/netns_support.py's guest ─ gateway ─ internet namespaces. In the guest
namespace every guest is a macvlan interface of its own (its own MAC and address, routed by its
source address), so the daemon, `appliance run` in the gateway namespace with the `nftables`
driver, tells them apart as it tells phones apart: by the MAC its neighbour table holds for the
address. One client process (bench/_portal_guests.py) plays all guests, each with its own
connections and cookies: the OS probes to an internet address (diverted to the portal by the
gateway's table), the sign-in page, the number with the consent, the SMS read from the SMS.ru
stand-in (in the internet namespace, through the provider's HTTP API), the code, the welcome page.

Phases, each on a fresh daemon and database (SQLite):
1. arrivals: the guests arrive evenly over --arrival-s seconds and pause like people (--think-s
   before each form): latency of probes, pages and forms;
2. rush: all guests at once, no pauses: logins per second, and latency under that load;
3. authorise: --authorise guests one after another, each streaming UDP datagrams (every 0.5 ms,
   tests/peers/udp_probe.py) to the internet while it types the code: code sent → the first
   datagram the gateway lets through (the receiver stamps it with the same monotonic clock). This
   bounds "authorise → first packet through" from above: it includes checking the code and opening
   the session before the driver's nft transaction.
Baseline, in the same run and the same namespaces: phases 1 and 2 against a bare aiohttp server in
the gateway namespace that answers every step like the portal with nothing behind it (probes
reach it through the same kind of nftables redirect). The client shares the 2 cores with the
daemon, in both.

Run (as root): .venv/bin/python bench/portal.py [--guests 300] [--arrival-s 10] [--think-s 0.5,2]
A default run takes about 2 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cameras import cpu_seconds, percentile, stop_process  # noqa: E402
from tests import netns_support  # noqa: E402
from tests.netns_support import PYTHON, Topology  # noqa: E402
from tests.peers.smsru_standin import DEFAULT_API_ID  # noqa: E402

GUESTS_SCRIPT: Final = str(ROOT / "bench" / "_portal_guests.py")
APPLIANCE: Final = str(Path(sys.executable).with_name("appliance"))
PORTAL_PORT: Final = 8081
CONSOLE_PORT: Final = 8080
SMS_PORT: Final = 9100
UDP_PORT: Final = 9999
GUEST_NET: Final = ipaddress.ip_network("10.99.8.0/22")
"""The guests' addresses (the topology's own guest keeps 10.99.1.2); the gateway is .1 of it too."""
TABLE_BASE: Final = 1000
TARGET_P99_MS: Final = 50.0
TARGET_THROUGH_P95_MS: Final = 100.0
BARE_TABLE: Final = "bench_bare"


# ------------------------------------------------------------------------------ the network ---


def add_guests(net: Topology, count: int) -> list[str]:
    """`count` devices in the guest namespace, each a macvlan on the guest's veth with an address
    routed by a rule of its own; returns their addresses."""
    hosts = list(GUEST_NET.hosts())
    gateway, addresses = str(hosts[0]), [str(a) for a in hosts[9 : 9 + count]]
    # Only the device that owns an address answers ARP for it, from that address: each MAC is learnt
    # for its own address (by default the veth would answer for all of them with its own MAC).
    net.run(net.guest, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2")
    net.run(net.gateway, "ip", "addr", "add", f"{gateway}/{GUEST_NET.prefixlen}", "dev", net.gateway_guest_if)
    batch = []
    for n, address in enumerate(addresses):
        dev, table = f"g{n}", TABLE_BASE + n
        batch += [
            f"link add link {net.guest_if} name {dev} type macvlan mode bridge",
            f"addr add {address}/32 dev {dev}",
            f"link set {dev} up",
            f"route add {gateway} dev {dev} table {table}",
            f"route add default via {gateway} dev {dev} table {table}",
            f"rule add from {address} table {table} priority 1000",
        ]
    subprocess.run(["ip", "-n", net.guest, "-batch", "-"], input="\n".join(batch) + "\n", text=True, check=True)
    return addresses


@contextlib.contextmanager
def bare_redirect(net: Topology) -> Iterator[None]:
    """For the baseline: the guests' port 80 redirected to the bare server, as the portal's table does."""
    script = (
        f"table ip {BARE_TABLE} {{\n  chain pre {{\n    type nat hook prerouting priority dstnat;\n"
        f'    iifname "{net.gateway_guest_if}" tcp dport 80 redirect to :{PORTAL_PORT}\n  }}\n}}\n'
    )
    subprocess.run(net.argv(net.gateway, "nft", "-f", "-"), input=script, text=True, check=True)
    try:
        yield
    finally:
        net.run(net.gateway, "nft", "delete", "table", "ip", BARE_TABLE)


def daemon_config(net: Topology, data_dir: Path) -> str:
    return f"""
[appliance]
name = "bench"
data_dir = "{data_dir}"
[console]
host = "127.0.0.1"
port = {CONSOLE_PORT}
[portal]
host = "{net.gateway_guest_ip}"
port = {PORTAL_PORT}
[portal.login]
daily_sms_budget = 100000
[portal.gateway]
driver = "nftables"
[portal.gateway.nftables]
interface = "{net.gateway_guest_if}"
[portal.sms]
provider = "smsru"
api_key = "{DEFAULT_API_ID}"
base_url = "http://{net.internet_ip}:{SMS_PORT}"
[logging]
format = "json"
"""


@dataclass
class Bench:
    net: Topology
    work: Path
    guests: list[str]
    notes: list[str] = field(default_factory=list)
    runs: int = 0
    daemon_pid: int | None = None

    @property
    def portal(self) -> str:
        return f"http://{self.net.gateway_guest_ip}:{PORTAL_PORT}"

    @contextlib.contextmanager
    def daemon(self) -> Iterator[None]:
        """`appliance run` in the gateway namespace on a fresh database, its table installed."""
        self.runs += 1
        data = self.work / f"data-{self.runs}"
        config = self.work / f"appliance-{self.runs}.toml"
        config.write_text(daemon_config(self.net, data))
        proc = self.net.start(self.net.gateway, APPLIANCE, "run", "--config", str(config), ready="appliance started")
        self.daemon_pid = proc.pid  # `ip netns exec` execs the command: the daemon's own pid
        try:
            deadline = time.monotonic() + 10
            while "appliance_portal" not in self.net.run(self.net.gateway, "nft", "list", "tables"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the daemon did not install its nftables table")
                time.sleep(0.05)
            yield
        finally:
            self.daemon_pid = None
            note = stop_process(proc, "the daemon")
            if note:
                self.notes.append(note)

    @contextlib.contextmanager
    def bare(self) -> Iterator[None]:
        proc = self.net.start(
            self.net.gateway, PYTHON, GUESTS_SCRIPT, "bare", self.net.gateway_guest_ip, str(PORTAL_PORT), ready="ready"
        )
        try:
            with bare_redirect(self.net):
                yield
        finally:
            stop_process(proc, "the bare server")

    def run_guests(self, addresses: Sequence[str], first_phone: int, **spec: Any) -> dict[str, Any]:
        """The guests' client in the guest namespace; its report."""
        guests = [(a, f"+7916{first_phone + n:07d}") for n, a in enumerate(addresses)]
        full = {"portal": self.portal, "site": f"http://{self.net.internet_ip}", "guests": guests, **spec}
        cpu_before, started = cpu_seconds(self.daemon_pid) if self.daemon_pid else 0.0, time.monotonic()
        done = subprocess.run(
            self.net.argv(self.net.guest, PYTHON, GUESTS_SCRIPT, "guests", json.dumps(full)),
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the guests' client failed: {done.stderr[-3000:]}")
        report: dict[str, Any] = json.loads(done.stdout)
        if self.daemon_pid is not None:
            report["daemon_cpu_pct"] = 100 * (cpu_seconds(self.daemon_pid) - cpu_before) / (time.monotonic() - started)
        if report["errors"]:
            self.notes.append(f"{len(report['errors'])} guests failed, e.g. {report['errors'][0]}")
        return report


# -------------------------------------------------------------------------------- the phases ---


@dataclass
class Phase:
    name: str
    report: dict[str, Any]

    def ms(self, kind: str) -> list[float]:
        return [s * 1000 for k, s in self.report["samples"] if k == kind]

    @property
    def logins(self) -> int:
        return len(self.report["flows"])

    @property
    def logins_per_s(self) -> float:
        flows = self.report["flows"]
        if not flows:
            return 0.0
        return len(flows) / (max(end for _, end in flows) - min(start for start, _ in flows))


def authorise_to_through(bench: Bench, count: int, first_phone: int) -> tuple[list[float], list[float]]:
    """(code sent → first datagram through, code sent → answer read), in ms, per guest."""
    net = bench.net
    receive = ["-m", "tests.peers.udp_probe", "receive", net.internet_ip, str(UDP_PORT), "0.05"]
    receiver = net.start(net.internet, PYTHON, *receive, ready="ready")
    # Where Topology.start put its output.
    log = net.log_dir / f"{len(net.processes) - 1:02d}-{Path(PYTHON).name}.log"
    try:
        report = bench.run_guests(
            bench.guests[:count], first_phone, inbox=str(bench.work / "sms.sock"), udp_port=UDP_PORT
        )
    finally:
        stop_process(receiver, "the UDP receiver")
    firsts = sorted(int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("first "))
    sent = sorted(report["codes_sent"])
    through, answered = [], []
    for n, (at, answer) in enumerate(sent):
        until = sent[n + 1][0] if n + 1 < len(sent) else None
        mine = [f for f in firsts if f >= at and (until is None or f < until)]
        if mine:
            through.append((mine[0] - at) / 1e6)
        answered.append((answer - at) / 1e6)
    if len(through) < len(sent):
        bench.notes.append(f"{len(sent) - len(through)} of {len(sent)} devices' datagrams never got through")
    return through, answered


# ------------------------------------------------------------------------------------ report ---


def _row(name: str, values: Sequence[float], bare: Sequence[float]) -> str:
    if not values:
        return f"  {name:<30} {'-':>6}"
    p50, p99 = percentile(values, 50), percentile(values, 99)
    line = f"  {name:<30} {len(values):>6} {p50:>7.1f} {p99:>7.1f} {max(values):>7.1f}"
    if bare:
        b50, b99 = percentile(bare, 50), percentile(bare, 99)
        line += f" | {b50:>6.1f} {b99:>6.1f} | {p50 / b50:>5.1f}x {p99 / b99:>5.1f}x"
    return line


def report_phase(phase: Phase, bare: Phase | None, guests: int) -> None:
    print(f"\n{phase.name}: {phase.logins} of {guests} guests signed in")
    print(f"  {'ms':<30} {'count':>6} {'p50':>7} {'p99':>7} {'max':>7} | bare p50 p99  | ratio p50 p99")
    for kind, title in (("probe", "OS probe (diverted, 302)"), ("page", "page (200)"), ("login", "form sent (303)")):
        print(_row(title, phase.ms(kind), bare.ms(kind) if bare else []))
    bare_rate = f" (bare server: the same requests at {bare.logins_per_s:.1f} guests/s)" if bare else ""
    print(f"  logins/s {phase.logins_per_s:.1f}{bare_rate}")
    if "daemon_cpu_pct" in phase.report:
        print(f"  daemon CPU {phase.report['daemon_cpu_pct']:.0f} % of one core (all its threads)")


def verdicts(arrivals: Phase, through: Sequence[float]) -> None:
    print()
    for kind, title in (("probe", "probes"), ("page", "pages")):
        values = arrivals.ms(kind)
        p99 = percentile(values, 99) if values else float("nan")
        verdict = "PASS" if p99 <= TARGET_P99_MS else "MISS"
        print(f"  {verdict} {title} p99 {p99:.1f} ms <= {TARGET_P99_MS:.0f} ms (arrivals)")
    p95 = percentile(through, 95) if through else float("nan")
    verdict = "PASS" if p95 <= TARGET_THROUGH_P95_MS else "MISS"
    print(f"  {verdict} code sent -> first packet through p95 {p95:.1f} ms <= {TARGET_THROUGH_P95_MS:.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--guests", type=int, default=300, help="guests (devices) at once")
    parser.add_argument("--arrival-s", type=float, default=10.0, help="the arrivals phase's guests come over this time")
    parser.add_argument("--think-s", default="0.5,2", help="a person's pause before each form, from,to seconds")
    parser.add_argument("--authorise", type=int, default=50, help="sign-ins timed to the first packet through")
    args = parser.parse_args()
    reason = netns_support.unavailable_reason()
    if reason is not None:
        print(f"bench/portal.py {reason}", file=sys.stderr)
        return 2
    think = tuple(float(x) for x in args.think_s.split(","))
    started, load_before = time.monotonic(), os.getloadavg()[0]

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:5.0f} s] {text}", flush=True)

    with netns_support.topology("bportal") as net:
        bench = Bench(net, net.log_dir, add_guests(net, max(args.guests, args.authorise)))
        sms = ["sms", str(SMS_PORT), str(bench.work / "sms.sock")]
        net.start(net.internet, PYTHON, GUESTS_SCRIPT, *sms, ready="ready")
        guests = bench.guests[: args.guests]
        arrivals_spec = {"arrival_s": args.arrival_s, "think_s": think}
        say(f"{args.guests} guests ready; baseline (bare aiohttp server)")
        with bench.bare():
            bare_arrivals = Phase("arrivals", bench.run_guests(guests, 0, **arrivals_spec))
            bare_rush = Phase("rush", bench.run_guests(guests, 0))
        inbox = {"inbox": str(bench.work / "sms.sock")}
        say("arrivals: the daemon")
        with bench.daemon():
            arrivals = Phase(
                f"arrivals ({args.guests} guests over {args.arrival_s:g} s, "
                f"{args.guests / args.arrival_s:.0f} logins/s offered; pauses {args.think_s} s)",
                bench.run_guests(guests, 0, **arrivals_spec, **inbox),
            )
        say("rush: the daemon")
        with bench.daemon():
            rush = Phase(f"rush ({args.guests} guests at once, no pauses)", bench.run_guests(guests, 1000, **inbox))
        say("authorise -> first packet through")
        with bench.daemon():
            through, answered = authorise_to_through(bench, args.authorise, 2000)

    print(f"\nguest portal: {args.guests} guests, each its own MAC and IP; nftables gateway; SQLite; 2 cores shared")
    report_phase(arrivals, bare_arrivals, args.guests)
    report_phase(rush, bare_rush, args.guests)
    print(f"\nauthorise ({len(through)} sign-ins, one at a time, UDP every 0.5 ms)")
    print(f"  {'ms':<30} {'count':>6} {'p50':>7} {'p95':>7} {'max':>7}")
    for title, values in (("code sent -> first packet", through), ("code sent -> answer read", answered)):
        if values:
            p50, p95 = percentile(values, 50), percentile(values, 95)
            print(f"  {title:<30} {len(values):>6} {p50:>7.1f} {p95:>7.1f} {max(values):>7.1f}")
    verdicts(arrivals, through)
    for note in bench.notes:
        print(f"  note: {note}")
    # Other work on the box takes CPU from the daemon and the guests alike: say how busy it was.
    print(f"\ntotal time {time.monotonic() - started:.0f} s; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
