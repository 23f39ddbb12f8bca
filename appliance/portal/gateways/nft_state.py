"""Reading the guest table back: `nft -j list table inet <table>` into who is let through, until
when, and how many bytes each device sent and received (pure; see nft_ruleset for the layout)."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from appliance.portal.gateways.nft_ruleset import IPAddress, Pair

# nft writes quotas with the unit it finds readable; its units are binary.
_UNITS = {"bytes": 1, "kbytes": 1024, "mbytes": 1024**2, "gbytes": 1024**3, "tbytes": 1024**4}


@dataclass
class TableState:
    sessions: dict[Pair, int] = field(default_factory=dict)
    """Seconds until each device's session element expires."""
    idle: set[Pair] = field(default_factory=set)
    sent: dict[Pair, int] = field(default_factory=dict)
    received: dict[IPAddress, int] = field(default_factory=dict)
    over_quota: set[IPAddress] = field(default_factory=set)


def _pair(value: Any) -> Pair:
    mac, ip = value["concat"]
    return Pair(str(mac).lower(), ipaddress.ip_address(ip))


def _elements(body: dict[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
    """(key, attributes) of each element; a map's element is [element, value]."""
    out = []
    for item in body.get("elem", []):
        element = item[0] if isinstance(item, list) else item
        if isinstance(element, dict) and "elem" in element:
            attrs = element["elem"]
            out.append((attrs["val"], attrs))
        else:
            out.append((element, {}))
    return out


def _bytes(quota: dict[str, Any], what: str) -> int:
    return int(quota.get(what, 0)) * _UNITS.get(str(quota.get(f"{what}_unit", "bytes")), 1)


def parse_table(listing: str) -> TableState:
    state = TableState()
    for entry in json.loads(listing).get("nftables", []):
        body = entry.get("set") or entry.get("map")
        if body is None:
            continue
        kind = str(body["name"])[:-1]  # the name without its family digit (see nft_ruleset)
        for key, attrs in _elements(body):
            if kind == "session":
                state.sessions[_pair(key)] = int(attrs.get("expires", 0))
            elif kind == "idle":
                state.idle.add(_pair(key))
            elif kind == "sent":
                state.sent[_pair(key)] = int(attrs.get("counter", {}).get("bytes", 0))
            elif kind == "received":
                state.received[ipaddress.ip_address(key)] = int(attrs.get("counter", {}).get("bytes", 0))
            elif (
                kind.endswith("_quota")
                and (quota := attrs.get("quota"))
                and _bytes(quota, "used") >= _bytes(quota, "val")
            ):
                state.over_quota.add(ipaddress.ip_address(key))
    return state
