"""The `nftables` driver: this box is the guest network's gateway and lets identified devices
through its own nftables table (layout and reasons in nft_ruleset).

Every change is one `nft -f -` transaction run as an asyncio subprocess. Changes that arrive while
one is being applied are merged into the next transaction, so a crowd logging in at once costs a
few nft runs, not one each. Which grant each device holds is remembered here, because removing a
map element safely needs its current value (see nft_ruleset); start() replaces the table and
forgets it all, so memory and table agree (after a restart, devices must be allowed again).

status() reads the element counters: bytes_in is what the device received (downloads), bytes_out
what it sent. Counters vanish with their elements, so the last counts read (by status(), or by
revoke() just before it removes them) are what status() reports once a session is over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web

from appliance.portal.gateways import commands, nft_ruleset, nft_state
from appliance.portal.gateways.addresses import normalise_mac
from appliance.portal.gateways.base import Device, DeviceStatus, GatewayError, Grant
from appliance.portal.gateways.neighbours import canonical_ip, mac_for
from appliance.portal.gateways.nft_ruleset import Limits, Pair, TablePlan
from appliance.portal.gateways.settings import NftablesSettings

log = logging.getLogger(__name__)

NFT_INSTALL_HINT = "install nftables (apt-get install nftables)"
STATUS_MAX_AGE_S = 0.5
"""status() answers from one listing of the table for this long: a sweep over every guest costs
one nft run, not one per guest."""
EXPIRED_GRACE_S = 2.0
"""A grant is forgotten this long after its session ended: the kernel has removed its elements."""
REMEMBERED_COUNTS = 10_000
"""Last byte counts kept for devices whose elements are gone (status() after the end of a session)."""
_IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


@dataclass
class _Held:
    limits: Limits
    ends_at: float
    """time.monotonic() when the session element expires."""


@dataclass
class _Change:
    pair: Pair
    grant: tuple[Limits, int] | None
    """Limits and session seconds to grant; None to withdraw."""
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class NftablesGateway:
    name = "nftables"

    def __init__(self, settings: NftablesSettings, *, portal_port: int) -> None:
        if settings.interface is None:
            raise GatewayError(
                'portal.gateway.nftables.interface is not set: name the guest network\'s interface, e.g. "br-guest"'
            )
        self._plan = TablePlan(
            table=settings.table,
            interface=settings.interface,
            portal_port=settings.portal_port or portal_port,
            dns_servers=settings.dns_servers,
            preauth_destinations=settings.preauth_destinations,
            blocked_destinations=settings.blocked_destinations,
            allowed_destinations=settings.allowed_destinations,
        )
        self._settings = settings
        self._held: dict[Pair, _Held] = {}
        self._classes: set[str] = set()
        self._queue: list[_Change] = []
        self._drainer: asyncio.Task[None] | None = None
        self._nft_lock = asyncio.Lock()
        self._listing: tuple[float, nft_state.TableState] | None = None
        self._last_counts: OrderedDict[Pair, tuple[int, int]] = OrderedDict()

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        async with self._nft_lock:
            await _nft(nft_ruleset.table_script(self._plan))
            self._forget()
        log.info(
            "guest gateway table installed",
            extra={"table": self._plan.table, "interface": self._plan.interface, "portal_port": self._plan.portal_port},
        )
        if await asyncio.to_thread(_forwarding_off):
            log.warning(
                "IP forwarding is off: guests let through still cannot reach the internet; "
                "set net.ipv4.ip_forward=1 (systemd/README.md)"
            )

    async def stop(self) -> None:
        async with self._nft_lock:
            await _nft(nft_ruleset.remove_script(self._plan.table))
            self._forget()

    def _forget(self) -> None:
        self._held.clear()
        self._classes.clear()
        self._listing = None

    # --- the portal's questions ----------------------------------------------------------------

    async def identify(self, request: web.Request) -> Device | None:
        # The TCP peer's address, and the MAC the kernel saw for it on the guest interface: nothing
        # the browser sends (headers, form fields) is looked at.
        ip = canonical_ip(request.remote or "")
        if ip is None:
            return None
        mac = await mac_for(ip, self._plan.interface)
        return Device(mac=mac, ip=str(ip)) if mac is not None else None

    async def allow(self, device: Device, grant: Grant) -> str | None:
        if grant.session_timeout_s < 1 or grant.idle_timeout_s < 1:
            raise GatewayError(
                f"session and idle timeouts must be at least 1 s (got {grant.session_timeout_s} s and "
                f"{grant.idle_timeout_s} s)"
            )
        await self._submit(_Change(_pair(device), (self._limits(grant), grant.session_timeout_s)))
        return None

    async def revoke(self, device: Device) -> None:
        await self._submit(_Change(_pair(device), None))

    async def status(self, device: Device) -> DeviceStatus:
        pair = _pair(device)
        state = await self._state()
        expires_in = state.sessions.get(pair)
        authorised = expires_in is not None and pair in state.idle and pair.ip not in state.over_quota
        self._remember_counts(state, pair)
        bytes_in, bytes_out = self._last_counts.get(pair, (0, 0))
        return DeviceStatus(
            device=device,
            authorised=authorised,
            expires_utc=datetime.now(UTC) + timedelta(seconds=expires_in) if expires_in is not None else None,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
        )

    def portal_routes(self) -> web.RouteTableDef | None:
        return None

    def _remember_counts(self, state: nft_state.TableState, pair: Pair) -> None:
        """Keeps a device's counts for when its elements are gone (status() after the session)."""
        if pair in state.sent:  # then the address's received counter is this device's too
            self._last_counts[pair] = (state.received.get(pair.ip, 0), state.sent[pair])
            self._last_counts.move_to_end(pair)
            while len(self._last_counts) > REMEMBERED_COUNTS:
                self._last_counts.popitem(last=False)

    # --- changes -------------------------------------------------------------------------------

    def _limits(self, grant: Grant) -> Limits:
        s = self._settings
        up = grant.up_kbit_s or s.up_kbit_s
        down = grant.down_kbit_s or s.down_kbit_s
        quota = grant.quota_bytes or (s.quota_mb * 1_000_000 if s.quota_mb else None)
        return Limits(
            idle_s=grant.idle_timeout_s,
            up_bytes_s=up * 125 if up else None,
            down_bytes_s=down * 125 if down else None,
            quota_bytes=quota,
        )

    async def _submit(self, change: _Change) -> None:
        self._queue.append(change)
        if self._drainer is None or self._drainer.done():
            # A task of its own: a caller that goes away (a closed portal request) must not cancel
            # a transaction half-way, nor leave the others' changes waiting.
            self._drainer = asyncio.create_task(self._drain(), name="nftables-changes")
        await change.done

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                async with self._nft_lock:
                    await self._apply_batch(batch)
            finally:
                # Whatever ended the drain (the loop shutting down), no caller waits for ever.
                for change in batch:
                    _settle(change, GatewayError("the gateway stopped before the change was made"))

    async def _apply_batch(self, batch: list[_Change]) -> None:
        try:
            await self._apply(batch)
        except GatewayError as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
                return
            # One bad change must not fail the others: apply them one by one.
            for change in batch:
                try:
                    await self._apply([change])
                except GatewayError as single:
                    _settle(change, single)

    async def _apply(self, batch: list[_Change]) -> None:
        """One transaction for the whole batch; memory is updated only once nft has committed it."""
        now = time.monotonic()
        held = {p: h for p, h in self._held.items() if h.ends_at + EXPIRED_GRACE_S > now}
        classes = set(self._classes)
        lines: list[str] = []
        withdrawn: list[Pair] = []
        table = self._plan.table
        for change in batch:
            # An address belongs to one device at a time: a new owner's grant ends the old one's.
            for other in [p for p in held if p == change.pair or (change.grant is not None and p.ip == change.pair.ip)]:
                lines += nft_ruleset.withdraw_lines(table, other, held.pop(other).limits)
                withdrawn.append(other)
            if change.grant is not None:
                limits, session_s = change.grant
                if limits.name not in classes:
                    lines.append(nft_ruleset.limits_script(table, limits))
                    classes.add(limits.name)
                lines += nft_ruleset.grant_lines(table, change.pair, limits, session_s)
                held[change.pair] = _Held(limits, now + session_s)
        if withdrawn:
            # The counters go with the elements: read them last, for the identification log.
            state = await self._read_state()
            for pair in withdrawn:
                self._remember_counts(state, pair)
        if lines:
            await _nft("\n".join(lines) + "\n")
        self._held, self._classes, self._listing = held, classes, None
        for change in batch:
            _settle(change, None)

    async def _state(self) -> nft_state.TableState:
        if self._listing is not None and time.monotonic() - self._listing[0] < STATUS_MAX_AGE_S:
            return self._listing[1]
        return await self._read_state()

    async def _read_state(self) -> nft_state.TableState:
        state = nft_state.parse_table(await _run_nft(["-j", "list", "table", "inet", self._plan.table], None))
        self._listing = (time.monotonic(), state)
        return state


def _settle(change: _Change, error: GatewayError | None) -> None:
    if change.done.done():  # the caller was cancelled
        return
    if error is None:
        change.done.set_result(None)
    else:
        change.done.set_exception(error)


def _pair(device: Device) -> Pair:
    # Checked, not trusted: both values are written into nft commands.
    mac, ip = normalise_mac(device.mac), canonical_ip(device.ip)
    if mac is None or ip is None:
        raise GatewayError(f"not a device address: MAC {device.mac!r}, IP {device.ip!r}")
    return Pair(mac, ip)


async def _nft(script: str) -> None:
    await _run_nft(["-f", "-"], script)


async def _run_nft(args: list[str], stdin: str | None) -> str:
    try:
        return await commands.run(["nft", *args], stdin=stdin, install_hint=NFT_INSTALL_HINT)
    except commands.CommandFailed as exc:
        if "Operation not permitted" in exc.stderr:
            raise GatewayError(
                "nftables refused the change: the service needs CAP_NET_ADMIN (run it as root, or grant "
                "AmbientCapabilities=CAP_NET_ADMIN in its systemd unit, as systemd/appliance.service does)"
            ) from None
        if "No such file or directory" in exc.stderr:
            raise GatewayError(
                "the guest table is missing or incomplete: the gateway was not started, or something else changed "
                "it; restarting the service installs it again"
            ) from None
        raise GatewayError(f"nftables refused the change: {exc.stderr}") from None


def _forwarding_off() -> bool:
    try:
        return _IP_FORWARD.read_text().strip() == "0"
    except OSError:
        return False
