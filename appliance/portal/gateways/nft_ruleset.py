"""The nftables text the guest gateway feeds to `nft -f -`: pure functions from settings and grants.

The table (family inet, so IPv4 and IPv6 share it) holds, for the guest interface:

- before login: TCP port 80 redirected to the portal; DNS and the configured destinations let
  through; TCP 443 refused with a reset (a browser gives up at once, nothing is intercepted); the
  rest dropped. Towards this box itself only the portal, DNS, DHCP and ICMP.
- after login, where a device may go (`destinations`): anywhere but the blocked networks (the
  shop's LAN: cameras, recorder, staff computers), save the allowed exceptions, the DNS servers and
  the before-login destinations; nor back out of the guest interface (another guest routed through
  this box: whatever its addresses, the guest subnet is blocked). Refused, not dropped: a TCP
  reset or ICMP administratively prohibited, so the guest's app gives up at once instead of
  waiting for a timeout. Guests on the same Wi-Fi segment reach each other without this box:
  that takes the access point's client isolation.
- after login, per device (its MAC . IP pair, as the kernel saw them):
  * `session4/6`: the pair, with the session timeout as the element's timeout. Its value is a jump
    to the chain of the device's *limits class*: grants with equal idle timeout, rates and quota
    share one chain and its sets, created on first use (`limits_script`).
  * `idle4/6`: the pair again, with the idle timeout. The class chain refreshes the element from
    the packet path (`update @idle4 { … timeout Ns }`) on every packet the device sends, so an
    active device keeps it while an idle one's element runs out and the device is back to the
    before-login rules. A packet passes only while both elements exist.
  * `sent4/6` and `received4/6`: sets with a counter per element, the device's bytes for status()
    and the identification log. Traffic towards a device is matched in the forward hook, before
    any link-layer header exists, so that direction is keyed by the IP alone (`downlink4/6` holds
    the jump to the class chain for it).
  * per class, optional: a rate limit per direction and a quota shared by both directions, as sets
    whose every element carries its own `limit`/`quota` state.

Every element a grant adds has the session timeout, so nothing outlives the session but the idle
element, which `grant_lines` and `withdraw_lines` clear first. Elements are removed with the
"add, then delete" idiom: adding an existing element is a no-op and deleting a missing one is an
error, so the pair works whether or not the element has expired meanwhile, in one transaction.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

FAMILIES = ("4", "6")
_ADDR_TYPE = {"4": "ipv4_addr", "6": "ipv6_addr"}
_L3 = {"4": "ip", "6": "ip6"}
# Each element of a rate set has a token bucket of its own; nft's byte buckets hold a second's worth.
_RATE = "flags timeout; limit rate over"


@dataclass(frozen=True)
class TablePlan:
    """What the table is built from (the settings, with defaults resolved)."""

    table: str
    interface: str
    portal_port: int
    dns_servers: tuple[IPNetwork, ...] = ()
    """Empty: any DNS server."""
    preauth_destinations: tuple[IPNetwork, ...] = ()
    blocked_destinations: tuple[IPNetwork, ...] = ()
    """Where a device must not go after login."""
    allowed_destinations: tuple[IPNetwork, ...] = ()
    """Exceptions to blocked_destinations."""


@dataclass(frozen=True)
class Limits:
    """What a grant holds a device to. Devices with equal limits share a class chain."""

    idle_s: int
    up_bytes_s: int | None = None
    down_bytes_s: int | None = None
    quota_bytes: int | None = None

    @property
    def name(self) -> str:
        parts = [f"i{self.idle_s}"]
        for tag, value in (("u", self.up_bytes_s), ("d", self.down_bytes_s), ("q", self.quota_bytes)):
            if value is not None:
                parts.append(f"{tag}{value}")
        return "class_" + "_".join(parts)


@dataclass(frozen=True)
class Pair:
    """A device as the sets key it."""

    mac: str
    ip: IPAddress

    @property
    def family(self) -> str:
        return str(self.ip.version)

    @property
    def concat(self) -> str:
        return f"{self.mac} . {self.ip}"


def _by_family(networks: Iterable[IPNetwork], family: str) -> list[str]:
    return [str(n) for n in networks if str(n.version) == family]


def _address_set(name: str, family: str, networks: list[str]) -> str:
    kind, elements = _ADDR_TYPE[family], ", ".join(networks)
    return f"  set {name}{family} {{ type {kind}; flags interval; auto-merge; elements = {{ {elements} }}; }}"


def _address_sets(plan: TablePlan) -> tuple[list[str], dict[str, list[str]]]:
    """The address sets of the plan, and per set name the rule fronts matching a destination in it
    (one per family that has elements)."""
    sets: list[str] = []
    matches: dict[str, list[str]] = {}
    named = (
        ("dns", plan.dns_servers),
        ("preauth", plan.preauth_destinations),
        ("allowed", plan.allowed_destinations),
        ("blocked", plan.blocked_destinations),
    )
    for name, networks in named:
        matches[name] = []
        for fam in FAMILIES:
            if members := _by_family(networks, fam):
                sets.append(_address_set(name, fam, members))
                matches[name].append(f"{_L3[fam]} daddr @{name}{fam}")
    return sets, matches


def table_script(plan: TablePlan) -> str:
    """Creates the table, replacing any copy left behind (a crash) in the same transaction."""
    t, iface, port = plan.table, f'"{plan.interface}"', plan.portal_port
    sets, matches = _address_sets(plan)
    for fam in FAMILIES:
        kind = _ADDR_TYPE[fam]
        sets += [
            f"  map session{fam} {{ type ether_addr . {kind} : verdict; flags timeout; }}",
            # `dynamic`: the packet path adds to it (update), not only the control plane.
            f"  set idle{fam} {{ type ether_addr . {kind}; flags dynamic, timeout; }}",
            f"  set sent{fam} {{ type ether_addr . {kind}; flags timeout; counter; }}",
            f"  map downlink{fam} {{ type {kind} : verdict; flags timeout; }}",
            f"  set received{fam} {{ type {kind}; flags timeout; counter; }}",
        ]
    dns = [f"{m} meta l4proto {{ tcp, udp }} th dport 53" for m in matches["dns"]] or [
        "meta l4proto { tcp, udp } th dport 53"
    ]
    preauth = matches["preauth"]
    # After login the DNS servers and the before-login destinations stay reachable, wherever they are.
    exceptions = [*matches["allowed"], *dns, *preauth]
    lines = [
        f"table inet {t}",
        f"delete table inet {t}",
        f"table inet {t} {{",
        *sets,
        "  chain guest_nat {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        f"    iifname {iface} jump nat_from_guest",
        "  }",
        "  chain nat_from_guest {",
        "    ether saddr . ip saddr @session4 ether saddr . ip saddr @idle4 accept",
        "    ether saddr . ip6 saddr @session6 ether saddr . ip6 saddr @idle6 accept",
        *(f"    {m} accept" for m in preauth),
        f"    tcp dport 80 redirect to :{port}",
        "  }",
        "  chain guest_forward {",
        "    type filter hook forward priority filter; policy accept;",
        f"    iifname {iface} jump from_guest",
        f"    oifname {iface} jump to_guest",
        "  }",
        "  chain from_guest {",
        "    ether saddr . ip saddr vmap @session4",
        "    ether saddr . ip6 saddr vmap @session6",
        *(f"    {m} accept" for m in [*dns, *preauth]),
        "    tcp dport 443 reject with tcp reset",
        "    drop",
        "  }",
        "  chain to_guest {",
        "    ip daddr vmap @downlink4",
        "    ip6 daddr vmap @downlink6",
        "    ct state established,related accept",
        "    drop",
        "  }",
        # Jumped to by the limits class chains, for a device that holds a grant (see limits_script).
        "  chain destinations {",
        *(f"    {m} return" for m in exceptions),
        f"    oifname {iface} jump refuse",
        *(f"    {m} jump refuse" for m in matches["blocked"]),
        "  }",
        "  chain refuse {",
        "    meta l4proto tcp reject with tcp reset",
        "    reject with icmpx admin-prohibited",
        "  }",
        "  chain guest_input {",
        "    type filter hook input priority filter; policy accept;",
        f"    iifname {iface} jump to_box",
        "  }",
        "  chain to_box {",
        "    ct state established,related accept",
        f"    tcp dport {port} accept",
        "    meta l4proto { tcp, udp } th dport 53 accept",
        "    udp dport { 67, 547 } accept",
        "    meta l4proto { icmp, ipv6-icmp } accept",
        "    drop",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def remove_script(table: str) -> str:
    """Removes the table; no error if it is already gone."""
    return f"table inet {table}\ndelete table inet {table}\n"


def limits_script(table: str, limits: Limits) -> str:
    """The chains (and rate and quota sets) of one limits class."""
    n = limits.name
    sets: list[str] = []
    from_rules: list[str] = []
    to_rules: list[str] = []
    for fam in FAMILIES:
        kind, l3 = _ADDR_TYPE[fam], _L3[fam]
        pair = f"ether saddr . {l3} saddr"
        # Where it goes is checked before anything is counted or refreshed: a refused packet
        # neither keeps a device active nor spends its rate or quota.
        from_rules += [f"{pair} != @idle{fam} return", f"meta nfproto ipv{fam} jump destinations"]
        if limits.up_bytes_s is not None:
            sets.append(f"{n}_up{fam} {{ type ether_addr . {kind}; {_RATE} {limits.up_bytes_s} bytes/second; }}")
            from_rules.append(f"{pair} @{n}_up{fam} drop")
        if limits.down_bytes_s is not None:
            sets.append(f"{n}_down{fam} {{ type {kind}; {_RATE} {limits.down_bytes_s} bytes/second; }}")
            to_rules.append(f"{l3} daddr @{n}_down{fam} drop")
        if limits.quota_bytes is not None:
            # One element per device counts both directions; past it, back to the before-login rules.
            sets.append(f"{n}_quota{fam} {{ type {kind}; flags timeout; quota over {limits.quota_bytes} bytes; }}")
            from_rules.append(f"{l3} saddr @{n}_quota{fam} return")
            to_rules.append(f"{l3} daddr @{n}_quota{fam} drop")
        from_rules += [f"update @idle{fam} {{ {pair} timeout {limits.idle_s}s }}", f"{pair} @sent{fam} accept"]
        # Counted last, so that what a rate limit or the quota dropped is not counted as received.
        to_rules.append(f"{l3} daddr @received{fam}")
    lines = [
        *(f"add set inet {table} {spec}" for spec in sets),
        f"add chain inet {table} {n}_from",
        *(f"add rule inet {table} {n}_from {rule}" for rule in from_rules),
        f"add chain inet {table} {n}_to",
        *(f"add rule inet {table} {n}_to {rule}" for rule in to_rules),
    ]
    return "\n".join(lines) + "\n"


def _elements(pair: Pair, limits: Limits) -> list[tuple[str, str, str]]:
    """(set, key, value) of every element a device with these limits has; value is a map's verdict."""
    fam, n = pair.family, limits.name
    elements = [
        (f"session{fam}", pair.concat, f"jump {n}_from"),
        (f"idle{fam}", pair.concat, ""),
        (f"sent{fam}", pair.concat, ""),
        (f"downlink{fam}", str(pair.ip), f"jump {n}_to"),
        (f"received{fam}", str(pair.ip), ""),
    ]
    if limits.up_bytes_s is not None:
        elements.append((f"{n}_up{fam}", pair.concat, ""))
    if limits.down_bytes_s is not None:
        elements.append((f"{n}_down{fam}", str(pair.ip), ""))
    if limits.quota_bytes is not None:
        elements.append((f"{n}_quota{fam}", str(pair.ip), ""))
    return elements


def _element(key: str, timeout: str, value: str) -> str:
    return f"{{ {key}{timeout}{f' : {value}' if value else ''} }}"


def withdraw_lines(table: str, pair: Pair, limits: Limits) -> list[str]:
    """Removes a device's elements as granted with `limits`, whether or not they have expired."""
    lines: list[str] = []
    for name, key, value in _elements(pair, limits):
        lines.append(f"add element inet {table} {name} {_element(key, '', value)}")
        lines.append(f"delete element inet {table} {name} {{ {key} }}")
    return lines


def grant_lines(table: str, pair: Pair, limits: Limits, session_s: int) -> list[str]:
    """Adds a device's elements (its previous grant, if any, withdrawn first)."""
    lines: list[str] = []
    for name, key, value in _elements(pair, limits):
        if not value:
            # A set element can outlive a grant (idle is refreshed past the session's end); a map
            # element cannot, and its placeholder would need the old verdict (see withdraw_lines).
            lines.append(f"add element inet {table} {name} {{ {key} }}")
            lines.append(f"delete element inet {table} {name} {{ {key} }}")
        timeout = min(limits.idle_s, session_s) if name.startswith("idle") else session_s
        lines.append(f"add element inet {table} {name} {_element(key, f' timeout {timeout}s', value)}")
    return lines
