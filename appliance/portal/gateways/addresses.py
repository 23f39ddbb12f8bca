"""MAC and IP addresses as gateways write them, in the one form the portal stores and compares."""

from __future__ import annotations

import ipaddress
import re

_SEPARATORS = re.compile(r"[-:.]")
_HEX12 = re.compile(r"^[0-9a-f]{12}$")


def normalise_mac(value: str) -> str | None:
    """aa:bb:cc:dd:ee:ff from AA-BB-CC-DD-EE-FF (CoovaChilli), AA:BB:.. (MikroTik), aabb.ccdd.eeff
    or aabbccddeeff; None if it is not a MAC address."""
    digits = _SEPARATORS.sub("", value.strip().lower())
    if not _HEX12.match(digits):
        return None
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def normalise_ip(value: str) -> str | None:
    """The address in its canonical text form; None if it is not an IPv4 or IPv6 address."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None
