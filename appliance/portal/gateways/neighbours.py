"""Which MAC address an IP address on the guest network belongs to: the kernel's neighbour table
(ARP for IPv4, NDP for IPv6), read over netlink. It holds what this box saw on the wire when the
guest's packets arrived, so it cannot be talked into a MAC the browser claims. One question is one
netlink round trip (no `ip` process per portal request) on a non-blocking socket: the kernel has
answered by the time the request is sent, so the answer is read at once, on the event loop. (A
worker thread cost every probe and page a trip through the thread pool, which under a crowd of
guests meant waiting for the loop again: bench/portal.py.)
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import itertools
import socket
import struct

from appliance.portal.gateways.base import GatewayError

_RTM_NEWNEIGH = 28
_RTM_GETNEIGH = 30
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 0x1
_NDA_DST = 1
_NDA_LLADDR = 2
# Entries whose link-layer address was seen and still stands (a STALE entry is the last MAC seen
# for the address, just not re-confirmed lately). INCOMPLETE and FAILED ones have no address.
_NUD_REACHABLE, _NUD_STALE, _NUD_DELAY, _NUD_PROBE, _NUD_PERMANENT = 0x02, 0x04, 0x08, 0x10, 0x80
_KNOWN = _NUD_REACHABLE | _NUD_STALE | _NUD_DELAY | _NUD_PROBE | _NUD_PERMANENT

_NLMSGHDR = struct.Struct("=LHHLL")
_NDMSG = struct.Struct("=BBHiHBB")
_RTATTR = struct.Struct("=HH")
_ERRNO = struct.Struct("=i")
_REPLY_TIMEOUT_S = 2.0

_sequence = itertools.count(1)


def _align(n: int) -> int:
    return (n + 3) & ~3


def get_request(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, ifindex: int, seq: int) -> bytes:
    """RTM_GETNEIGH for one address on one interface (the kernel's `ip neigh get`)."""
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    dst = _RTATTR.pack(_RTATTR.size + len(ip.packed), _NDA_DST) + ip.packed
    body = _NDMSG.pack(family, 0, 0, ifindex, 0, 0, 0) + dst
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), _RTM_GETNEIGH, _NLM_F_REQUEST, seq, 0) + body


def parse_reply(data: bytes, seq: int) -> str | None:
    """The MAC in the kernel's answer to `get_request`; None if the address has no usable entry."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, msg_seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            break
        payload = data[offset + _NLMSGHDR.size : offset + length]
        offset += _align(length)
        if msg_seq != seq:
            continue
        if kind == _NLMSG_ERROR:
            (code,) = _ERRNO.unpack_from(payload)
            if code in (0, -errno.ENOENT):
                return None
            raise OSError(-code, f"neighbour table: {errno.errorcode.get(-code, -code)}")
        if kind == _RTM_NEWNEIGH:
            return _mac_of(payload)
    return None


def _mac_of(payload: bytes) -> str | None:
    _family, _pad1, _pad2, _ifindex, state, _flags, _type = _NDMSG.unpack_from(payload)
    if not state & _KNOWN:
        return None
    offset = _NDMSG.size
    while offset + _RTATTR.size <= len(payload):
        length, kind = _RTATTR.unpack_from(payload, offset)
        if length < _RTATTR.size:
            break
        value = payload[offset + _RTATTR.size : offset + length]
        offset += _align(length)
        if kind == _NDA_LLADDR and len(value) == 6 and any(value):
            return value.hex(":")
    return None


async def _lookup(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, interface: str) -> str | None:
    try:
        ifindex = socket.if_nametoindex(interface)
    except OSError:
        raise GatewayError(
            f"the guest interface {interface!r} does not exist; check portal.gateway.nftables.interface (`ip link`)"
        ) from None
    seq = next(_sequence) & 0xFFFFFFFF
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.setblocking(False)
        sock.send(get_request(ip, ifindex, seq))
        async with asyncio.timeout(_REPLY_TIMEOUT_S):
            return parse_reply(await asyncio.get_running_loop().sock_recv(sock, 65536), seq)


def canonical_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a socket peer names, with an IPv4 client on a dual-stack socket (::ffff:a.b.c.d)
    as the IPv4 address it is; None if it is not an address."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


async def mac_for(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, interface: str) -> str | None:
    """The MAC (aa:bb:cc:dd:ee:ff) the box last saw using `ip` on `interface`; None if it has not
    seen one there (the address is not on the guest segment)."""
    try:
        return await _lookup(ip, interface)
    except TimeoutError:
        raise GatewayError(f"cannot read the neighbour table: no answer within {_REPLY_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise GatewayError(f"cannot read the neighbour table: {exc}") from None
