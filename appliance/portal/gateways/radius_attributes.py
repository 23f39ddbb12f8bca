"""What an Access-Accept tells the gateway about a guest's access, in the attributes its vendor reads.

Pure: a grant in, RADIUS attribute names and values out (names from radius_dictionary). Every
dialect carries the standard timeouts; rates and a volume quota only where the vendor defines an
attribute for them. What a dialect cannot say is reported, so the driver can warn that the limit
is not enforced, instead of silently dropping it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from appliance.portal.gateways.base import Grant
from appliance.portal.gateways.settings import RadiusDialect

GIGAWORD: Final = 1 << 32
"""RADIUS integers are 32 bits: byte counts above 4 GiB go as count mod 2^32 plus a 'gigawords' attribute."""
INT32_MAX: Final = GIGAWORD - 1

Attribute = tuple[str, int | str]


@dataclass(frozen=True)
class AcceptAttributes:
    attributes: tuple[Attribute, ...]
    not_expressed: tuple[str, ...]
    """Parts of the grant this dialect has no attribute for: 'rates', 'quota'."""


def _bits(kbit_s: int | None) -> int | None:
    return None if kbit_s is None else min(kbit_s * 1000, INT32_MAX)


def _wispr_rates(grant: Grant) -> list[Attribute]:
    out: list[Attribute] = []
    if (up := _bits(grant.up_kbit_s)) is not None:
        out.append(("WISPr-Bandwidth-Max-Up", up))
    if (down := _bits(grant.down_kbit_s)) is not None:
        out.append(("WISPr-Bandwidth-Max-Down", down))
    return out


def _split_octets(total: int, octets: str, gigawords: str) -> list[Attribute]:
    high, low = divmod(total, GIGAWORD)
    out: list[Attribute] = [(octets, low)]
    if high:
        out.append((gigawords, min(high, INT32_MAX)))
    return out


def mikrotik_rate_limit(up_kbit_s: int | None, down_kbit_s: int | None) -> str:
    """RouterOS 'rx/tx' from the router's side, so the guest's upload first; 0 is unlimited."""
    return f"{up_kbit_s or 0}k/{down_kbit_s or 0}k"


def accept_attributes(grant: Grant, dialect: RadiusDialect, *, interim_s: int) -> AcceptAttributes:
    """The Access-Accept attributes for `grant` (its session timeout already what is left of it)."""
    attrs: list[Attribute] = [
        ("Session-Timeout", grant.session_timeout_s),
        ("Idle-Timeout", grant.idle_timeout_s),
        ("Acct-Interim-Interval", interim_s),
    ]
    has_rates = grant.up_kbit_s is not None or grant.down_kbit_s is not None
    quota = grant.quota_bytes
    missing: list[str] = []
    if dialect == "standard":
        missing += ["rates"] if has_rates else []
        missing += ["quota"] if quota is not None else []
    elif dialect == "wispr":
        attrs += _wispr_rates(grant)
        missing += ["quota"] if quota is not None else []
    elif dialect == "chillispot":
        attrs += _wispr_rates(grant)
        if quota is not None:
            attrs += _split_octets(quota, "ChilliSpot-Max-Total-Octets", "ChilliSpot-Max-Total-Gigawords")
    elif dialect == "mikrotik":
        if has_rates:
            attrs.append(("Mikrotik-Rate-Limit", mikrotik_rate_limit(grant.up_kbit_s, grant.down_kbit_s)))
        if quota is not None:
            attrs += _split_octets(quota, "Mikrotik-Total-Limit", "Mikrotik-Total-Limit-Gigawords")
    return AcceptAttributes(tuple(attrs), tuple(missing))
