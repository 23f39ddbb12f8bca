"""The `nftables` gateway driver against the real kernel: a guest, this box and "the internet" as
network namespaces (tests/netns_support.py), the production driver hosted inside the gateway
namespace (tests/peers/nft_gateway_host.py), and `curl` run by the guest."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from appliance.config import ConfigError, parse_config
from appliance.portal.gateways import nft_ruleset, nft_state
from appliance.portal.gateways.base import Device, GatewayError, Grant
from appliance.portal.gateways.nft_ruleset import Limits, Pair, TablePlan
from appliance.portal.gateways.nftables import NftablesGateway
from appliance.portal.gateways.settings import GatewaySettings, NftablesSettings
from tests import netns_support
from tests.netns_support import PYTHON, Topology
from tests.xdist_groups import NETNS

pytestmark = NETNS

PORTAL_PORT = 8081
TABLE = "appliance_portal"
BIG_FILE_BYTES = 1_000_000
UPLOAD_PORT = 9000
HOUR = 3600
EXAMPLE_CONFIG = netns_support.REPO / "config" / "appliance.example.toml"


# ------------------------------------------------------------------------------ pure parts ---


def test_settings_refuse_an_interface_name_that_is_not_one() -> None:
    with pytest.raises(ValidationError) as caught:
        GatewaySettings.model_validate({"driver": "nftables", "nftables": {"interface": 'wlan0" accept'}})
    (error,) = caught.value.errors()
    assert error["loc"] == ("nftables", "interface")
    assert "not an interface name" in error["msg"] and "br-guest" in error["msg"]
    with pytest.raises(ValidationError):
        NftablesSettings.model_validate({"interface": "wlan0", "table": "Guest Table"})
    assert NftablesSettings.model_validate({"interface": "br-guest.10"}).interface == "br-guest.10"


def test_the_driver_needs_the_guest_interface() -> None:
    with pytest.raises(GatewayError, match=r"portal\.gateway\.nftables\.interface is not set"):
        NftablesGateway(NftablesSettings(), portal_port=PORTAL_PORT)


async def test_device_addresses_are_checked_before_they_reach_nft() -> None:
    gateway = NftablesGateway(NftablesSettings(interface="wlan0"), portal_port=PORTAL_PORT)
    grant = Grant(session_id="s", session_timeout_s=60, idle_timeout_s=60)
    for device in (Device(mac="02:00:00:00:00:01 } ; flush ruleset", ip="10.0.0.2"), Device("02:00:00:00:00:01", "x")):
        with pytest.raises(GatewayError, match="not a device address"):
            await gateway.allow(device, grant)
    with pytest.raises(GatewayError, match="at least 1 s"):
        await gateway.allow(Device("02:00:00:00:00:01", "10.0.0.2"), Grant("s", 0, 60))


async def test_a_missing_nft_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    gateway = NftablesGateway(NftablesSettings(interface="wlan0"), portal_port=PORTAL_PORT)
    with pytest.raises(GatewayError, match=r"`nft` is not installed.*apt-get install nftables"):
        await gateway.start()


def test_the_table_before_login() -> None:
    plan = TablePlan(
        table=TABLE,
        interface="br-guest",
        portal_port=8081,
        dns_servers=(ipaddress.ip_network("10.0.0.53"),),
        preauth_destinations=(ipaddress.ip_network("192.0.2.0/24"),),
    )
    lines = [line.strip() for line in nft_ruleset.table_script(plan).splitlines()]
    # A stale copy is replaced in the same transaction.
    assert lines[:3] == [f"table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{"]
    assert 'iifname "br-guest" jump nat_from_guest' in lines
    assert "tcp dport 80 redirect to :8081" in lines
    forward = lines[lines.index("chain from_guest {") : lines.index("chain to_guest {")]
    assert forward[-4:] == [
        "ip daddr @preauth4 accept",
        "tcp dport 443 reject with tcp reset",
        "drop",
        "}",
    ]
    assert "ip daddr @dns4 meta l4proto { tcp, udp } th dport 53 accept" in forward
    # Only the listed DNS server: no rule lets port 53 through to anyone else.
    assert not [line for line in forward if "dport 53" in line and "@dns4" not in line]
    unrestricted = nft_ruleset.table_script(TablePlan(table=TABLE, interface="wlan0", portal_port=80))
    assert "    meta l4proto { tcp, udp } th dport 53 accept" in unrestricted.splitlines()
    assert "preauth" not in unrestricted


def _nftables_config(**nftables: object) -> NftablesSettings:
    """The [portal.gateway.nftables] section of a file with these keys, as the appliance reads it."""
    gateway = {"driver": "nftables", "nftables": {"interface": "br-guest", **nftables}}
    return parse_config({"portal": {"gateway": gateway}}).portal.gateway.nftables


def test_settings_keep_guests_off_private_ranges_by_default_and_explain_bad_entries() -> None:
    defaults = _nftables_config()

    def blocked(address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ip in network for network in defaults.blocked_destinations)

    # Where a shop's cameras and staff hosts live (RFC 1918, CGNAT, link-local, IPv6 ULA and link-local) ...
    lan = ["10.1.2.3", "172.31.255.1", "192.168.1.64", "100.64.0.1", "169.254.1.1", "fd12:3456::1", "fe80::1"]
    assert all(blocked(a) for a in lan)
    # ... and not the internet, nor the edges of those ranges.
    assert not any(blocked(a) for a in ("8.8.8.8", "172.32.0.1", "100.128.0.1", "11.0.0.1", "2a00:1450::1"))
    assert defaults.allowed_destinations == ()
    example = tomllib.loads(EXAMPLE_CONFIG.read_text())["portal"]["gateway"]["nftables"]
    assert _nftables_config(**example).blocked_destinations == defaults.blocked_destinations, "documented as is"

    def problems(**nftables: object) -> list[str]:
        with pytest.raises(ConfigError) as caught:
            _nftables_config(**nftables)
        return caught.value.problems

    key = "portal.gateway.nftables"
    assert problems(blocked_destinations=["10.0.0.0/8", "192.168.1.5/24"]) == [
        f"{key}.blocked_destinations[1]: '192.168.1.5/24' has host bits set; write \"192.168.1.0/24\" for the whole "
        'network or "192.168.1.5" for that one address'
    ]
    (bad,) = problems(allowed_destinations=["printer.local"])
    assert bad.startswith(f"{key}.allowed_destinations[0]: 'printer.local' is not an IPv4 or IPv6 address")
    assert '"192.168.1.20"' in bad
    (everything,) = problems(blocked_destinations=["::/0"])
    assert everything.startswith(f"{key}.blocked_destinations: ::/0 is every address")
    chosen = _nftables_config(allowed_destinations=["192.168.1.30", "fd00::/64"])
    assert [str(n) for n in chosen.allowed_destinations] == ["192.168.1.30/32", "fd00::/64"]
    assert _nftables_config(blocked_destinations=[]).blocked_destinations == ()


def _chain(script: str, name: str) -> list[str]:
    lines = [line.strip() for line in script.splitlines()]
    start = lines.index(f"chain {name} {{")
    return lines[start + 1 : lines.index("}", start)]


def test_signed_in_guests_are_refused_the_blocked_networks_and_the_guest_interface() -> None:
    networks = ipaddress.ip_network
    plan = TablePlan(
        table=TABLE,
        interface="br-guest",
        portal_port=8081,
        dns_servers=(networks("192.168.1.1"),),
        preauth_destinations=(networks("192.168.1.40"),),
        blocked_destinations=(networks("192.168.0.0/16"), networks("fc00::/7")),
        allowed_destinations=(networks("192.168.1.30"), networks("fd00::30")),
    )
    script = nft_ruleset.table_script(plan)
    assert _chain(script, "destinations") == [
        # The exceptions first: the owner's, DNS to the configured resolvers, the before-login destinations.
        "ip daddr @allowed4 return",
        "ip6 daddr @allowed6 return",
        "ip daddr @dns4 meta l4proto { tcp, udp } th dport 53 return",
        "ip daddr @preauth4 return",
        # Another guest, routed back out of the guest interface: whatever the guest subnet's addresses.
        'oifname "br-guest" jump refuse',
        "ip daddr @blocked4 jump refuse",
        "ip6 daddr @blocked6 jump refuse",
    ]
    assert "set blocked4 { type ipv4_addr; flags interval; auto-merge; elements = { 192.168.0.0/16 }; }" in script
    assert "set allowed6 { type ipv6_addr; flags interval; auto-merge; elements = { fd00::30/128 }; }" in script
    # Refused so that apps give up at once: a reset for TCP, ICMP administratively prohibited otherwise.
    assert _chain(script, "refuse") == ["meta l4proto tcp reject with tcp reset", "reject with icmpx admin-prohibited"]
    # Without lists (and resolvers), the guest interface stays closed and DNS anywhere stays open.
    bare = nft_ruleset.table_script(TablePlan(table=TABLE, interface="wlan0", portal_port=80))
    assert _chain(bare, "destinations") == [
        "meta l4proto { tcp, udp } th dport 53 return",
        'oifname "wlan0" jump refuse',
    ]
    assert "blocked" not in bare and "allowed" not in bare


def test_the_destination_lists_leave_the_before_login_rules_alone() -> None:
    without = TablePlan(table=TABLE, interface="br-guest", portal_port=8081)
    with_lists = dataclasses.replace(
        without,
        blocked_destinations=(ipaddress.ip_network("10.0.0.0/8"),),
        allowed_destinations=(ipaddress.ip_network("10.1.2.3"),),
    )
    scripts = nft_ruleset.table_script(with_lists), nft_ruleset.table_script(without)
    for chain in ("nat_from_guest", "from_guest", "to_guest", "to_box"):
        assert _chain(scripts[0], chain) == _chain(scripts[1], chain), chain


def test_a_limits_class_refreshes_idle_and_counts_from_the_packet_path() -> None:
    script = nft_ruleset.limits_script(TABLE, Limits(idle_s=300, up_bytes_s=1000, down_bytes_s=2000, quota_bytes=5000))
    rules = [line.split(" ", 5)[5] for line in script.splitlines() if line.startswith("add rule") and "_from " in line]
    v4 = [r for r in rules if "ip6" not in r and "ipv6" not in r]
    assert v4 == [
        "ether saddr . ip saddr != @idle4 return",
        "meta nfproto ipv4 jump destinations",
        "ether saddr . ip saddr @class_i300_u1000_d2000_q5000_up4 drop",
        "ip saddr @class_i300_u1000_d2000_q5000_quota4 return",
        "update @idle4 { ether saddr . ip saddr timeout 300s }",
        "ether saddr . ip saddr @sent4 accept",
    ]
    assert "limit rate over 2000 bytes/second" in script and "quota over 5000 bytes" in script
    plain = nft_ruleset.limits_script(TABLE, Limits(idle_s=60))
    assert "limit" not in plain and "quota" not in plain


def test_reading_the_table_back() -> None:
    mac, ip = "02:00:00:00:00:01", "10.99.1.2"
    listing = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"map": {"name": "session4", "elem": [[{"elem": {"val": {"concat": [mac, ip]}, "expires": 59}}, {}]]}},
            {"set": {"name": "idle4", "elem": [{"elem": {"val": {"concat": [mac, ip]}, "expires": 20}}]}},
            {"set": {"name": "sent4", "elem": [{"elem": {"val": {"concat": [mac, ip]}, "counter": {"bytes": 512}}}]}},
            {"set": {"name": "received4", "elem": [{"elem": {"val": ip, "counter": {"bytes": 4096}}}]}},
            {
                "set": {
                    "name": "class_i60_q2000000_quota4",
                    "elem": [
                        {
                            "elem": {
                                "val": ip,
                                "quota": {"val": 2, "val_unit": "mbytes", "used": 1, "used_unit": "mbytes"},
                            }
                        },
                        {"elem": {"val": "10.99.1.3", "quota": {"val": 2000, "used": 2000}}},
                    ],
                }
            },
        ]
    }
    state = nft_state.parse_table(json.dumps(listing))
    pair = Pair(mac, ipaddress.ip_address(ip))
    assert state.sessions == {pair: 59}
    assert state.idle == {pair}
    assert state.sent == {pair: 512}
    assert state.received == {ipaddress.ip_address(ip): 4096}
    assert state.over_quota == {ipaddress.ip_address("10.99.1.3")}


# -------------------------------------------------------------------------- real kernel -----


@pytest.fixture(scope="module")
def net() -> Iterator[Topology]:
    reason = netns_support.unavailable_reason()
    if reason is not None:
        pytest.skip(f"nftables gateway tests: {reason}")
    with netns_support.topology("gwnft") as topology:
        www = topology.log_dir / "www"
        www.mkdir()
        (www / "index.html").write_text("INTERNET\n")
        (www / "big.bin").write_bytes(b"\0" * BIG_FILE_BYTES)
        # 80 for the web, 443 to show HTTPS is refused (not intercepted), 53 as TCP DNS, 8000 as "anything else".
        for port in (80, 443, 53, 8000):
            serve = ["-m", "http.server", str(port), "--bind", "::", "-d", str(www)]
            topology.start(topology.internet, PYTHON, *serve, ready="Serving")
        topology.start(topology.internet, PYTHON, "-m", "tests.peers.upload_sink", str(UPLOAD_PORT), ready="ready")
        # The shop's LAN: a camera's web page, and at a second address a printer the owner lets guests use.
        camera = topology.log_dir / "camera"
        camera.mkdir()
        (camera / "index.html").write_text("CAMERA\n")
        printer4, printer6 = printer(topology)
        topology.run(topology.lan, "ip", "addr", "add", f"{printer4}/24", "dev", topology.lan_if)
        topology.run(topology.lan, "ip", "-6", "addr", "add", f"{printer6}/64", "dev", topology.lan_if, "nodad")
        serve = ["-m", "http.server", "80", "--bind", "::", "-d", str(camera)]
        topology.start(topology.lan, PYTHON, *serve, ready="Serving")
        yield topology


def printer(net: Topology) -> tuple[str, str]:
    """The LAN host in allowed_destinations (IPv4, IPv6): host 9 of the LAN's networks."""
    v4 = ipaddress.ip_interface(f"{net.lan_ip}/24").network[9]
    v6 = ipaddress.ip_interface(f"{net.lan_ip6}/64").network[9]
    return str(v4), str(v6)


def _start_host(net: Topology, control: Path, portal_port: int) -> subprocess.Popen[bytes]:
    return net.start(
        net.gateway,
        PYTHON,
        "-m",
        "tests.peers.nft_gateway_host",
        "--control",
        str(control),
        "--interface",
        net.gateway_guest_if,
        "--portal-port",
        str(portal_port),
        "--table",
        TABLE,
        *(option for address in printer(net) for option in ("--allow", address)),
        ready="ready",
    )


@pytest.fixture(scope="module")
def host(net: Topology) -> Path:
    control = net.log_dir / "gateway.sock"
    _start_host(net, control, PORTAL_PORT)
    return control


class GatewayClient:
    """The hosted driver's methods, called over its control socket."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def call(self, method: str, **body: Any) -> dict[str, Any]:
        async with self.session.post(f"http://gateway/{method}", json=body) as resp:
            answer: dict[str, Any] = await resp.json()
        if resp.status != 200:
            raise GatewayError(answer["error"])
        return answer

    async def allow(
        self, mac: str, ip: str, session_s: int = HOUR, idle_s: int = HOUR, **limits: int
    ) -> dict[str, Any]:
        grant = {"session_id": "test", "session_timeout_s": session_s, "idle_timeout_s": idle_s, **limits}
        return await self.call("allow", mac=mac, ip=ip, **grant)

    async def revoke(self, mac: str, ip: str) -> None:
        await self.call("revoke", mac=mac, ip=ip)

    async def status(self, mac: str, ip: str) -> dict[str, Any]:
        result: dict[str, Any] = (await self.call("status", mac=mac, ip=ip))["result"]
        return result


@contextlib.asynccontextmanager
async def _client(control: Path) -> AsyncIterator[GatewayClient]:
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(control))) as session:
        yield GatewayClient(session)


@pytest.fixture
async def gw(host: Path) -> AsyncIterator[GatewayClient]:
    """The hosted driver, freshly started: its table installed (replacing the previous test's)."""
    async with _client(host) as client:
        await client.call("start")
        yield client


def guest_mac(net: Topology) -> str:
    return net.mac(net.guest, net.guest_if)


async def fetch(net: Topology, url: str, *options: str, max_time_s: float = 3.0) -> str:
    """What the guest's curl got: the body, or "exit N" (7: refused or reset, 28: timed out)."""
    result = await net.curl(url, "-g", *options, max_time_s=max_time_s)
    return result.stdout.strip() if result.returncode == 0 else f"exit {result.returncode}"


async def eventually(net: Topology, url: str, expected: str, within_s: float) -> float:
    """Seconds until the guest's curl of `url` gives `expected`; fails after `within_s`."""
    started = time.monotonic()
    got = ""
    while time.monotonic() - started < within_s:
        got = await fetch(net, url, max_time_s=1)
        if got == expected:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url}: still {got!r} after {within_s} s, expected {expected!r}")


def web(net: Topology, port: int = 80, path: str = "") -> str:
    return f"http://{net.internet_ip}:{port}/{path}"


def gateway_ruleset(net: Topology) -> str:
    return net.run(net.gateway, "nft", "list", "ruleset")


@pytest.mark.slow
async def test_before_login_the_web_is_the_portal_and_https_is_refused_at_once(
    net: Topology, gw: GatewayClient
) -> None:
    assert await fetch(net, web(net)) == "PORTAL"
    assert await fetch(net, f"http://[{net.internet_ip6}]/") == "PORTAL"
    https = await net.curl(web(net, 443), max_time_s=5)
    assert https.returncode == 7, "443 must be refused with a reset, neither dropped nor intercepted"
    assert https.elapsed_s < 2
    assert await fetch(net, web(net, 53)) == "INTERNET", "DNS (here over TCP) is let through before login"
    assert await fetch(net, web(net, 8000), max_time_s=1) == "exit 28", "anything else is dropped"
    # This box itself: the portal, and nothing else (a closed port would answer with a reset).
    assert await fetch(net, f"http://{net.gateway_guest_ip}:{PORTAL_PORT}/") == "PORTAL"
    assert await fetch(net, f"http://{net.gateway_guest_ip}:22/", max_time_s=1) == "exit 28"


@pytest.mark.slow
async def test_allow_lets_the_device_through_and_revoke_sends_it_back(net: Topology, gw: GatewayClient) -> None:
    mac = guest_mac(net)
    assert (await gw.allow(mac, net.guest_ip))["result"] is None, "nftables needs no further step in the browser"
    assert await fetch(net, web(net)) == "INTERNET"
    assert await fetch(net, web(net, 443)) == "INTERNET", "after login nothing is intercepted"
    assert await fetch(net, f"http://[{net.internet_ip6}]/") == "PORTAL", "only the IPv4 pair was allowed"
    status = await gw.status(mac, net.guest_ip)
    assert status["authorised"] is True and status["expires_utc"] is not None
    await gw.revoke(mac, net.guest_ip)
    assert await fetch(net, web(net)) == "PORTAL"
    assert (await gw.status(mac, net.guest_ip))["authorised"] is False
    await gw.revoke(mac, net.guest_ip)  # again: nothing left to remove is not an error


UDP_PROBE = """
import errno, socket, sys
address = sys.argv[1]
probe = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM)
probe.settimeout(2)
probe.connect((address, 554))
probe.send(b"OPTIONS rtsp://camera/ RTSP/1.0")
try:
    probe.recv(1)
except TimeoutError:
    print("timeout")
except OSError as error:
    print(errno.errorcode[error.errno])
"""
"""A datagram to port 554 from the guest, and the error the kernel reports for it: ECONNREFUSED
(the host answered "port unreachable": it was reached), EHOSTUNREACH or EACCES (this box refused
it: ICMP administratively prohibited, IPv4 or IPv6), or timeout."""


async def udp_probe(net: Topology, address: str) -> str:
    result = await net.exec(net.guest, PYTHON, "-c", UDP_PROBE, address)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.slow
async def test_a_signed_in_guest_reaches_the_internet_but_not_the_shops_lan(net: Topology, gw: GatewayClient) -> None:
    mac, ip = guest_mac(net), net.guest_ip
    camera, (printer4, _) = f"http://{net.lan_ip}/", printer(net)
    assert await fetch(net, camera) == "PORTAL", "before login, as any web address"
    await gw.allow(mac, ip)
    assert await fetch(net, web(net)) == "INTERNET"
    assert await fetch(net, f"http://{printer4}/") == "CAMERA", "in allowed_destinations"
    assert await udp_probe(net, printer4) == "ECONNREFUSED"
    await asyncio.sleep(0.6)  # status() answers from a listing at most 0.5 s old
    sent = (await gw.status(mac, ip))["bytes_out"]

    refused = await net.curl(camera, max_time_s=5)
    assert refused.returncode == 7, f"the camera's web page must be refused with a reset: {refused}"
    assert refused.elapsed_s < 2
    assert await udp_probe(net, net.lan_ip) == "EHOSTUNREACH", "other protocols: ICMP administratively prohibited"
    await asyncio.sleep(0.6)
    after = await gw.status(mac, ip)
    assert after["authorised"] is True, "a refused packet does not end the session"
    assert after["bytes_out"] == sent, "refused packets are not counted as the guest's traffic"


@pytest.mark.slow
async def test_over_ipv6_the_shops_lan_is_refused_too(net: Topology, gw: GatewayClient) -> None:
    _, printer6 = printer(net)
    await gw.allow(guest_mac(net), net.guest_ip6)
    assert await fetch(net, f"http://[{net.internet_ip6}]/") == "INTERNET"
    assert await fetch(net, f"http://[{printer6}]/") == "CAMERA"
    refused = await net.curl(f"http://[{net.lan_ip6}]/", "-g", max_time_s=5)
    assert refused.returncode == 7 and refused.elapsed_s < 2, refused
    assert await udp_probe(net, net.lan_ip6) == "EACCES", "ICMPv6 administratively prohibited"


@pytest.mark.slow
async def test_the_box_does_not_route_a_guest_back_to_the_guest_network(net: Topology, gw: GatewayClient) -> None:
    # Another guest subnet behind the guest interface (a second SSID's, a routed access point's), with
    # public-looking addresses no list holds: reached only by routing back out of the guest interface.
    other_guests = "192.0.2.0/24"
    net.run(net.gateway, "ip", "route", "add", other_guests, "via", net.guest_ip, "dev", net.gateway_guest_if)
    try:
        await gw.allow(guest_mac(net), net.guest_ip)
        refused = await net.curl("http://192.0.2.10/", max_time_s=5)
        assert refused.returncode == 7 and refused.elapsed_s < 2, refused
        await gw.call("stop")
        # Without the table the box routes it (and the packet is lost on the guest network).
        assert await fetch(net, "http://192.0.2.10/", max_time_s=1) == "exit 28"
    finally:
        net.run(net.gateway, "ip", "route", "del", other_guests)


@pytest.mark.slow
async def test_ipv6_pairs_are_allowed_like_ipv4_ones(net: Topology, gw: GatewayClient) -> None:
    await gw.allow(guest_mac(net), net.guest_ip6)
    assert await fetch(net, f"http://[{net.internet_ip6}]/") == "INTERNET"
    assert await fetch(net, web(net)) == "PORTAL", "only the IPv6 pair was allowed"
    await gw.revoke(guest_mac(net), net.guest_ip6)
    assert await fetch(net, f"http://[{net.internet_ip6}]/") == "PORTAL"


@pytest.mark.slow
async def test_the_session_ends_at_its_timeout(net: Topology, gw: GatewayClient) -> None:
    allowed_at = time.monotonic()
    await gw.allow(guest_mac(net), net.guest_ip, session_s=2)
    assert await fetch(net, web(net)) == "INTERNET"
    await eventually(net, web(net), "PORTAL", within_s=8)
    assert time.monotonic() - allowed_at >= 1.5
    assert (await gw.status(guest_mac(net), net.guest_ip))["authorised"] is False


@pytest.mark.slow
async def test_an_active_device_stays_and_an_idle_one_is_sent_back(net: Topology, gw: GatewayClient) -> None:
    await gw.allow(guest_mac(net), net.guest_ip, session_s=HOUR, idle_s=2)
    # Twice the idle timeout of steady use: every request refreshes the idle element.
    busy_until = time.monotonic() + 4
    while time.monotonic() < busy_until:
        assert await fetch(net, web(net)) == "INTERNET"
        await asyncio.sleep(0.5)
    await asyncio.sleep(2.5)
    assert await fetch(net, web(net)) == "PORTAL"
    status = await gw.status(guest_mac(net), net.guest_ip)
    assert status["authorised"] is False and status["expires_utc"] is not None, "idle, with session time left"


@pytest.mark.slow
async def test_status_counts_the_devices_bytes_both_ways(net: Topology, gw: GatewayClient) -> None:
    mac, ip = guest_mac(net), net.guest_ip
    await gw.allow(mac, ip)
    assert (await gw.status(mac, ip))["bytes_in"] == 0
    totals = []
    for _ in range(2):
        assert await fetch(net, web(net, path="big.bin"), "-o", "/dev/null", "-w", "%{size_download}") == str(
            BIG_FILE_BYTES
        )
        await asyncio.sleep(0.6)  # status() answers from a listing at most 0.5 s old
        status = await gw.status(mac, ip)
        totals.append((status["bytes_in"], status["bytes_out"]))
    (in1, out1), (in2, out2) = totals
    assert BIG_FILE_BYTES < in1 < 1.2 * BIG_FILE_BYTES, "received: the file and its headers"
    assert 2 * BIG_FILE_BYTES < in2 < 2.4 * BIG_FILE_BYTES
    assert 0 < out1 < out2 < in1, "sent: requests and acknowledgements"
    # A third download, then revoke at once: the counts at the moment of revoking are kept.
    assert await fetch(net, web(net, path="big.bin"), "-o", "/dev/null") == ""
    await gw.revoke(mac, ip)
    after = await gw.status(mac, ip)
    assert after["authorised"] is False
    assert 3 * BIG_FILE_BYTES < after["bytes_in"] < 3.6 * BIG_FILE_BYTES
    assert after["bytes_out"] > out2


@pytest.mark.slow
async def test_the_pair_is_bound_a_cloned_ip_on_another_mac_gets_the_portal(net: Topology, gw: GatewayClient) -> None:
    real = guest_mac(net)
    await gw.allow(real, net.guest_ip)
    assert await fetch(net, web(net)) == "INTERNET"
    other = "02:00:00:00:99:99"
    try:
        _set_guest_mac(net, other)
        assert await fetch(net, web(net)) == "PORTAL"
        identified = json.loads(await fetch(net, f"http://{net.gateway_guest_ip}:{PORTAL_PORT}/whoami"))
        assert identified == {"mac": other, "ip": net.guest_ip, "gateway_ref": None}, "the MAC seen on the wire"
    finally:
        _set_guest_mac(net, real)
    assert await fetch(net, web(net)) == "INTERNET"


def _set_guest_mac(net: Topology, mac: str) -> None:
    net.run(net.guest, "ip", "link", "set", net.guest_if, "address", mac)
    # What a second device with the same IP would cause: the box learns the new MAC at once.
    net.run(net.gateway, "ip", "neigh", "flush", "dev", net.gateway_guest_if)


@pytest.mark.slow
async def test_identify_takes_the_mac_from_the_neighbour_table_not_from_the_client(
    net: Topology, gw: GatewayClient
) -> None:
    mac = guest_mac(net)
    claims = ("-H", "X-Client-MAC: de:ad:be:ef:00:01", "-H", "X-Forwarded-For: 10.99.1.77")
    direct = await fetch(net, f"http://{net.gateway_guest_ip}:{PORTAL_PORT}/whoami?mac=de:ad:be:ef:00:01", *claims)
    assert json.loads(direct) == {"mac": mac, "ip": net.guest_ip, "gateway_ref": None}
    # Through the port 80 redirect, as a phone's captive-portal check arrives.
    assert json.loads(await fetch(net, web(net, path="whoami"))) == {
        "mac": mac,
        "ip": net.guest_ip,
        "gateway_ref": None,
    }
    over_v6 = await fetch(net, f"http://[{net.gateway_guest_ip6}]:{PORTAL_PORT}/whoami")
    assert json.loads(over_v6) == {"mac": mac, "ip": net.guest_ip6, "gateway_ref": None}
    # A client that is not on the guest segment has no MAC there: not identified.
    from_outside = await net.curl(f"http://{net.gateway_inet_ip}:{PORTAL_PORT}/whoami", ns=net.internet)
    assert from_outside.returncode == 0 and json.loads(from_outside.stdout) is None


@pytest.mark.slow
async def test_a_download_rate_limit_slows_the_device(net: Topology, gw: GatewayClient) -> None:
    mac, ip = guest_mac(net), net.guest_ip
    url = web(net, path="big.bin")
    await gw.allow(mac, ip)
    free = await net.curl(url, "-o", "/dev/null", max_time_s=10)
    # 2000 kbit/s = 250 kB/s: nft's bucket lets a second's worth through at once, then the rate.
    await gw.allow(mac, ip, down_kbit_s=2000)
    limited = await net.curl(url, "-o", "/dev/null", max_time_s=20)
    assert free.returncode == 0 and limited.returncode == 0
    assert free.elapsed_s < 1.0
    assert limited.elapsed_s > 1.5, f"1 MB at 250 kB/s took {limited.elapsed_s:.2f} s"


@pytest.mark.slow
async def test_an_upload_rate_limit_slows_the_device_and_uploads_count_as_sent(
    net: Topology, gw: GatewayClient
) -> None:
    mac, ip = guest_mac(net), net.guest_ip
    upload = net.log_dir / "upload.bin"
    upload.write_bytes(b"\1" * BIG_FILE_BYTES)
    options = ("--data-binary", f"@{upload}", "-H", "Content-Type: application/octet-stream")
    await gw.allow(mac, ip)
    free = await net.curl(web(net, UPLOAD_PORT), *options, max_time_s=10)
    await gw.allow(mac, ip, up_kbit_s=2000)
    limited = await net.curl(web(net, UPLOAD_PORT), *options, max_time_s=20)
    assert free.stdout.strip() == limited.stdout.strip() == str(BIG_FILE_BYTES)
    assert free.elapsed_s < 1.0
    assert limited.elapsed_s > 1.5, f"1 MB at 250 kB/s took {limited.elapsed_s:.2f} s"
    sent = (await gw.status(mac, ip))["bytes_out"]
    assert BIG_FILE_BYTES < sent < 1.2 * BIG_FILE_BYTES


@pytest.mark.slow
async def test_past_its_quota_the_device_is_cut_off(net: Topology, gw: GatewayClient) -> None:
    mac, ip = guest_mac(net), net.guest_ip
    await gw.allow(mac, ip, quota_bytes=300_000)
    assert await fetch(net, web(net)) == "INTERNET"
    cut = await net.curl(web(net, path="big.bin"), "-o", "/dev/null", "-w", "%{size_download}", max_time_s=3)
    assert cut.returncode != 0 and int(cut.stdout) < 400_000
    await asyncio.sleep(0.6)
    status = await gw.status(mac, ip)
    assert status["authorised"] is False
    assert 250_000 < status["bytes_in"] < 400_000
    assert await fetch(net, web(net), max_time_s=1) != "INTERNET"


@pytest.mark.slow
async def test_a_new_owner_of_an_address_replaces_the_old_pair(net: Topology, gw: GatewayClient) -> None:
    first, second, ip = "02:00:00:00:00:a1", "02:00:00:00:00:a2", "10.99.1.50"
    await gw.allow(first, ip, session_s=600)
    await gw.allow(first, ip, session_s=900, idle_s=120, up_kbit_s=512)  # again, other limits: replaced
    assert (await gw.status(first, ip))["authorised"] is True
    await gw.allow(second, ip)
    await asyncio.sleep(0.6)
    assert (await gw.status(first, ip))["authorised"] is False
    assert (await gw.status(second, ip))["authorised"] is True


@pytest.mark.slow
async def test_many_logins_at_once_all_get_through(net: Topology, gw: GatewayClient) -> None:
    devices = [(f"02:00:00:00:01:{n:02x}", f"10.99.1.{100 + n}") for n in range(60)]
    started = time.monotonic()
    await asyncio.gather(*(gw.allow(mac, ip, idle_s=300 + n % 3) for n, (mac, ip) in enumerate(devices)))
    elapsed = time.monotonic() - started
    listing = net.run(net.gateway, "nft", "list", "map", "inet", TABLE, "session4")
    assert all(f"{mac} . {ip}" in listing for mac, ip in devices)
    statuses = await asyncio.gather(*(gw.status(mac, ip) for mac, ip in devices))
    assert all(s["authorised"] for s in statuses)
    print(f"\n60 concurrent allow() calls: {elapsed * 1000:.0f} ms in all")


@pytest.mark.slow
async def test_stop_removes_the_table(net: Topology, gw: GatewayClient) -> None:
    assert f"table inet {TABLE}" in gateway_ruleset(net)
    await gw.call("stop")
    assert TABLE not in gateway_ruleset(net)
    await gw.call("stop")  # again: already gone is fine
    assert await fetch(net, web(net)) == "INTERNET", "without the table the box is a plain router again"


@pytest.mark.slow
async def test_start_replaces_the_table_a_crashed_gateway_left(net: Topology, gw: GatewayClient) -> None:
    crashed_control = net.log_dir / "crashed.sock"
    crashed = _start_host(net, crashed_control, PORTAL_PORT + 1)
    async with _client(crashed_control) as other:
        await other.call("start")
        await other.allow(guest_mac(net), net.guest_ip)
    net.stop(crashed, signal.SIGKILL)
    assert await fetch(net, web(net)) == "INTERNET", "the dead gateway's table is still in force"
    assert f"redirect to :{PORTAL_PORT + 1}" in gateway_ruleset(net)
    await gw.call("start")
    ruleset = gateway_ruleset(net)
    assert ruleset.count(f"table inet {TABLE}") == 1
    assert f"redirect to :{PORTAL_PORT}" in ruleset and f":{PORTAL_PORT + 1}" not in ruleset
    assert guest_mac(net) not in ruleset
    assert await fetch(net, web(net)) == "PORTAL"


@pytest.mark.slow
async def test_allow_to_first_packet_through(net: Topology, gw: GatewayClient) -> None:
    """allow() → the first of the guest's packets (a datagram every 0.5 ms) to reach the internet."""
    mac, ip = guest_mac(net), net.guest_ip
    receiver = await asyncio.create_subprocess_exec(
        *net.argv(net.internet, PYTHON, "-m", "tests.peers.udp_probe", "receive", net.internet_ip, "9999", "0.05"),
        stdout=asyncio.subprocess.PIPE,
        cwd=netns_support.REPO,
    )
    assert receiver.stdout is not None
    sender = net.start(net.guest, PYTHON, "-m", "tests.peers.udp_probe", "send", net.internet_ip, "9999", "0.0005")
    try:
        assert (await asyncio.wait_for(receiver.stdout.readline(), 10)).strip() == b"ready"
        through_ms, call_ms = [], []
        for _ in range(50):
            answer = await gw.allow(mac, ip)
            while True:  # a stamp from before this allow (a stall of the sender) is not this one
                first = int((await asyncio.wait_for(receiver.stdout.readline(), 5)).split()[1])
                if first >= answer["started_ns"]:
                    break
            through_ms.append((first - answer["started_ns"]) / 1e6)
            call_ms.append((answer["finished_ns"] - answer["started_ns"]) / 1e6)
            await gw.revoke(mac, ip)
            await asyncio.sleep(0.1)  # silence, so that the next arrival is a first one
    finally:
        net.stop(sender)
        receiver.kill()
        await receiver.wait()
    p50, p95 = _percentile(through_ms, 50), _percentile(through_ms, 95)
    print(
        f"\nallow() → first packet through, 50 allows: p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(through_ms):.1f} ms"
        f"; allow() call p50 {_percentile(call_ms, 50):.1f} ms"
    )
    # The target is well under 100 ms; the bound here leaves room for a machine busy with other tests.
    assert p95 < 500


def _percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def test_without_cap_net_admin_the_error_says_so() -> None:
    missing = [tool for tool in ("unshare", "setpriv", "nft") if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        pytest.skip(f"needs root and {', '.join(missing) or 'util-linux'} to drop CAP_NET_ADMIN in a fresh namespace")
    script = (
        "import asyncio\n"
        "from appliance.portal.gateways.nftables import NftablesGateway\n"
        "from appliance.portal.gateways.settings import NftablesSettings\n"
        "asyncio.run(NftablesGateway(NftablesSettings(interface='lo'), portal_port=8081).start())\n"
    )
    # A fresh network namespace (the host's ruleset is never at stake), without CAP_NET_ADMIN.
    run = subprocess.run(
        [
            "unshare",
            "--net",
            "setpriv",
            "--bounding-set=-net_admin",
            "--inh-caps=-net_admin",
            "--",
            sys.executable,
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=netns_support.REPO,
    )
    assert run.returncode != 0
    assert "GatewayError" in run.stderr and "needs CAP_NET_ADMIN" in run.stderr
