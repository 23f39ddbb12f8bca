"""The `radius` gateway driver against real RADIUS clients: FreeRADIUS's radclient and pyrad's
client, over UDP on 127.0.0.1, with the logins and accounting in SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import make_mocked_request
from pyrad import client as pyrad_client
from pyrad import packet
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from appliance.config import ConfigError, parse_config
from appliance.portal.gateways.base import Device, GatewayError, Grant
from appliance.portal.gateways.radius import RadiusGateway, chilli_password, load_dictionary, log_end_reason
from appliance.portal.gateways.radius_attributes import accept_attributes, mikrotik_rate_limit
from appliance.portal.gateways.settings import RadiusSettings
from appliance.storage.db import create_engine, make_sessionmaker
from appliance.storage.guests import DeviceKey, GuestStore
from appliance.storage.migrate import upgrade
from appliance.storage.models_gateway import RadiusAccounting, RadiusLogin
from tests.gst_peer import free_port
from tests.portal_support import log_session

SECRET = "test-radius-secret-7f3a9c"
MAC = "aa:bb:cc:dd:ee:01"
OTHER_MAC = "aa:bb:cc:dd:ee:02"
CHALLENGE = "00112233445566778899aabbccddeeff"
GRANT = Grant("sess-0001", session_timeout_s=3600, idle_timeout_s=900, down_kbit_s=2000, up_kbit_s=500)
DICT = load_dictionary()
RADCLIENT = shutil.which("radclient")
needs_radclient = pytest.mark.skipif(RADCLIENT is None, reason="radclient missing: apt-get install freeradius-utils")


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def settings(**over: Any) -> RadiusSettings:
    data: dict[str, Any] = {
        "host": "127.0.0.1",
        "auth_port": free_port(socket.SOCK_DGRAM),
        "acct_port": free_port(socket.SOCK_DGRAM),
        "dialect": "wispr",
        "login_url": "http://10.1.0.1:3990/logon?username={username}&password={password}&userurl={landing}",
        "landing_url": "http://10.1.0.2:8081/welcome?from=wifi",
        "clients": [{"name": "chilli", "addresses": ["127.0.0.1"], "secret": SECRET}],
        **over,
    }
    return RadiusSettings.model_validate(data)


@dataclass
class Rig:
    gw: RadiusGateway
    settings: RadiusSettings
    clock: Clock
    sessions: async_sessionmaker[AsyncSession]

    async def login(self, mac: str = MAC, grant: Grant = GRANT) -> tuple[str, str]:
        """What the portal does for an identified guest: the browser's login URL, as user and password."""
        url = await self.gw.allow(Device(mac, "10.1.0.5"), grant)
        query = parse_qs(urlsplit(url).query)
        return query["username"][0], query["password"][0]

    def client(self, secret: str = SECRET, *, timeout: float = 5.0, retries: int = 2) -> pyrad_client.Client:
        return pyrad_client.Client(
            server="127.0.0.1",
            authport=self.settings.auth_port,
            acctport=self.settings.acct_port,
            secret=secret.encode(),
            dict=DICT,
            retries=retries,
            timeout=timeout,
        )

    async def access(
        self,
        username: str,
        password: str,
        mac: str | None = MAC,
        *,
        secret: str = SECRET,
        message_authenticator: bool = True,
        timeout: float = 5.0,
    ) -> packet.Packet | None:
        """An Access-Request as a gateway sends it; None when the server does not answer."""
        c = self.client(secret, timeout=timeout, retries=1 if timeout < 5 else 2)
        req = c.CreateAuthPacket(User_Name=username, message_authenticator=message_authenticator)
        req["User-Password"] = req.PwCrypt(password)
        if mac is not None:
            req["Calling-Station-Id"] = mac.upper().replace(":", "-")  # CoovaChilli's way of writing it
        req["NAS-Identifier"] = "chilli-test"
        return await _send(c, req)

    async def accounting(self, *, secret: str = SECRET, timeout: float = 5.0, **attrs: Any) -> packet.Packet | None:
        c = self.client(secret, timeout=timeout, retries=1 if timeout < 5 else 2)
        req = c.CreateAcctPacket()
        for name, value in attrs.items():
            req[name.replace("_", "-")] = value
        return await _send(c, req)

    async def rows(self) -> list[RadiusAccounting]:
        async with self.sessions() as s:
            return list((await s.scalars(select(RadiusAccounting).order_by(RadiusAccounting.id))).all())


async def _send(c: pyrad_client.Client, req: packet.Packet) -> packet.Packet | None:
    try:
        return await asyncio.to_thread(c.SendPacket, req)
    except pyrad_client.Timeout:
        return None
    finally:
        c._CloseSocket()  # pyrad's client has no public close


@asynccontextmanager
async def rig_on(engine: AsyncEngine, **over: Any) -> AsyncIterator[Rig]:
    s = settings(**over)
    clock = Clock()
    sessions = make_sessionmaker(engine)
    gw = RadiusGateway(s, sessions, locale="ru", retention_days=183, clock=clock)
    await gw.start()
    try:
        yield Rig(gw, s, clock, sessions)
    finally:
        await gw.stop()


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'appliance.db'}")
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def rig(sqlite_engine: AsyncEngine) -> AsyncIterator[Rig]:
    async with rig_on(sqlite_engine) as r:
        yield r


async def _radclient(rig: Rig, kind: str, attrs: str, secret: str = SECRET) -> dict[str, str]:
    """Run FreeRADIUS's radclient; the attributes of the answer by name (fails if none came)."""
    assert RADCLIENT is not None
    port = rig.settings.auth_port if kind == "auth" else rig.settings.acct_port
    proc = await asyncio.create_subprocess_exec(
        RADCLIENT,
        *("-r", "2", "-t", "3", "-x", f"127.0.0.1:{port}", kind, secret),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    stdout, _ = await asyncio.wait_for(proc.communicate(attrs.encode()), 30)
    received = stdout.decode().split("Received ", 1)
    assert len(received) == 2, f"no answer: {stdout.decode()}"
    lines = received[1].splitlines()
    out = {"_code": lines[0].split()[0]}
    for line in lines[1:]:
        name, sep, value = line.strip().partition(" = ")
        if sep:
            out[name] = value.strip('"')
    return out


def _reply(pkt: packet.Packet | None) -> dict[str, list[Any]]:
    assert pkt is not None, "the server did not answer"
    return {k: pkt[k] for k in pkt.keys() if isinstance(k, str)}  # noqa: SIM118 - keys() decodes the names


# ------------------------------------------------------------------ access: accept / reject ---


@needs_radclient
async def test_radclient_gets_accept_with_the_grant_in_wispr_attributes(rig: Rig) -> None:
    user, password = await rig.login()
    answer = await _radclient(
        rig,
        "auth",
        f'User-Name = "{user}", User-Password = "{password}", Calling-Station-Id = "AA-BB-CC-DD-EE-01", '
        "Message-Authenticator = 0x00\n",
    )
    assert answer["_code"] == "Access-Accept"
    assert answer["Session-Timeout"] == "3600"
    assert answer["Idle-Timeout"] == "900"
    assert answer["Acct-Interim-Interval"] == "300"
    assert answer["WISPr-Bandwidth-Max-Down"] == "2000000"
    assert answer["WISPr-Bandwidth-Max-Up"] == "500000"


@needs_radclient
async def test_radclient_gets_mikrotik_rate_and_quota_with_gigawords(sqlite_engine: AsyncEngine) -> None:
    async with rig_on(sqlite_engine, dialect="mikrotik") as rig:
        user, password = await rig.login(grant=Grant("s2", 1800, 600, 4000, 1000, quota_bytes=10 * 10**9))
        answer = await _radclient(
            rig,
            "auth",
            f'User-Name = "{user}", User-Password = "{password}", Calling-Station-Id = "AA:BB:CC:DD:EE:01"\n',
        )
    assert answer["_code"] == "Access-Accept"
    assert answer["Session-Timeout"] == "1800"
    assert answer["Mikrotik-Rate-Limit"] == "1000k/4000k"  # the router's rx (guest upload) first
    total = int(answer["Mikrotik-Total-Limit-Gigawords"]) * 2**32 + int(answer["Mikrotik-Total-Limit"])
    assert total == 10 * 10**9


async def test_login_from_another_device_is_rejected(rig: Rig) -> None:
    user, password = await rig.login(MAC)
    answer = _reply(await rig.access(user, password, mac=OTHER_MAC))
    assert answer["Reply-Message"] == ["Вход не выполнен. Откройте страницу Wi-Fi и войдите ещё раз."]
    # ... and the refusal does not spend the login: its own device still gets in.
    assert (await rig.access(user, password, mac=MAC)).code == packet.AccessAccept  # type: ignore[union-attr]


@pytest.mark.parametrize("mac", [None, "not-a-mac"])
async def test_login_without_a_usable_calling_station_id_is_rejected(rig: Rig, mac: str | None) -> None:
    user, password = await rig.login()
    c = rig.client()
    req = c.CreateAuthPacket(code=packet.AccessRequest, User_Name=user)
    req["User-Password"] = req.PwCrypt(password)
    if mac is not None:
        req["Calling-Station-Id"] = mac
    reply = await _send(c, req)
    assert reply is not None and reply.code == packet.AccessReject


async def test_wrong_password_and_unknown_login_are_rejected(rig: Rig) -> None:
    user, password = await rig.login()
    wrong = await rig.access(user, password[:-1] + ("x" if password[-1] != "x" else "y"))
    unknown = await rig.access("g0000000000000000", password)
    assert wrong is not None and wrong.code == packet.AccessReject
    assert unknown is not None and unknown.code == packet.AccessReject


async def test_a_login_not_used_in_time_is_rejected(rig: Rig) -> None:
    user, password = await rig.login()
    rig.clock.advance(rig.settings.login_ttl_s + 1)
    reply = await rig.access(user, password)
    assert reply is not None and reply.code == packet.AccessReject


async def test_a_used_login_reauthenticates_with_the_time_left_until_the_session_ends(rig: Rig) -> None:
    user, password = await rig.login()
    first = await rig.access(user, password)
    assert first is not None and first.code == packet.AccessAccept
    rig.clock.advance(1000)  # past the login's validity, within the session
    again = await rig.access(user, password)
    assert again is not None and again.code == packet.AccessAccept
    assert again["Session-Timeout"] == [3600 - 1000]
    rig.clock.advance(2600)
    over = await rig.access(user, password)
    assert over is not None and over.code == packet.AccessReject


async def test_a_revoked_login_is_rejected(rig: Rig) -> None:
    user, password = await rig.login()
    assert (await rig.access(user, password)).code == packet.AccessAccept  # type: ignore[union-attr]
    await rig.gw.revoke(Device(MAC, "10.1.0.5"))  # no coa_port: revoking only refuses what comes next
    reply = await rig.access(user, password)
    assert reply is not None and reply.code == packet.AccessReject
    assert not (await rig.gw.status(Device(MAC, "10.1.0.5"))).authorised


async def test_chap_is_rejected_since_the_password_is_only_stored_hashed(rig: Rig) -> None:
    user, password = await rig.login()
    c = rig.client()
    req = c.CreateAuthPacket(code=packet.AccessRequest, User_Name=user)
    challenge = b"0123456789abcdef"
    req["CHAP-Challenge"] = challenge
    req["CHAP-Password"] = b"\x01" + hashlib.md5(b"\x01" + password.encode() + challenge).digest()
    req["Calling-Station-Id"] = MAC
    reply = await _send(c, req)
    assert reply is not None and reply.code == packet.AccessReject


# ------------------------------------------------------------ who gets no answer at all ---


async def test_a_gateway_that_is_not_configured_gets_no_answer(sqlite_engine: AsyncEngine) -> None:
    clients = [{"name": "elsewhere", "addresses": ["10.99.0.1"], "secret": SECRET}]
    async with rig_on(sqlite_engine, clients=clients) as rig:
        user, password = await rig.login()
        assert await rig.access(user, password, timeout=1.0) is None
        assert await rig.accounting(Acct_Status_Type="Start", Acct_Session_Id="x", timeout=1.0) is None
        assert await rig.rows() == []


async def test_a_wrong_secret_gets_no_answer(rig: Rig) -> None:
    user, password = await rig.login()
    wrong = "another-secret-of-the-same-size"
    assert await rig.access(user, password, secret=wrong, timeout=1.0) is None
    assert await rig.accounting(secret=wrong, Acct_Status_Type="Start", Acct_Session_Id="y", timeout=1.0) is None
    assert await rig.rows() == []
    # The right secret still works: nothing was spent or blocked.
    assert (await rig.access(user, password)).code == packet.AccessAccept  # type: ignore[union-attr]


async def test_a_gateway_that_signed_once_must_always_sign(rig: Rig) -> None:
    user, password = await rig.login()
    unsigned_first = await rig.access(user, password, message_authenticator=False)
    assert unsigned_first is not None and unsigned_first.code == packet.AccessAccept
    assert (await rig.access(user, password)).code == packet.AccessAccept  # type: ignore[union-attr]
    assert await rig.access(user, password, message_authenticator=False, timeout=1.0) is None


async def test_a_required_message_authenticator_is_required(sqlite_engine: AsyncEngine) -> None:
    clients = [{"name": "mt", "addresses": ["127.0.0.1"], "secret": SECRET, "require_message_authenticator": True}]
    async with rig_on(sqlite_engine, clients=clients) as rig:
        user, password = await rig.login()
        assert await rig.access(user, password, message_authenticator=False, timeout=1.0) is None
        assert (await rig.access(user, password)).code == packet.AccessAccept  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- accounting ---


async def test_accounting_start_interim_stop_are_stored_against_the_session(db_engine: AsyncEngine) -> None:
    async with rig_on(db_engine) as rig:
        user, password = await rig.login()
        assert (await rig.access(user, password)).code == packet.AccessAccept  # type: ignore[union-attr]
        common = {
            "User_Name": user,
            "Acct_Session_Id": "5f0a1b2c00000001",
            "Calling_Station_Id": "AA-BB-CC-DD-EE-01",
            "Framed_IP_Address": "10.1.0.5",
            "NAS_Identifier": "chilli-test",
        }
        start = await rig.accounting(Acct_Status_Type="Start", **common)
        interim = await rig.accounting(
            Acct_Status_Type="Interim-Update",
            Acct_Session_Time=300,
            Acct_Input_Octets=1_000,
            Acct_Output_Octets=50_000,
            **common,
        )
        status = await rig.gw.status(Device(MAC, "10.1.0.5"))
        stop = await rig.accounting(
            Acct_Status_Type="Stop",
            Acct_Session_Time=900,
            Acct_Input_Octets=7,
            Acct_Input_Gigawords=1,
            Acct_Output_Octets=123,
            Acct_Output_Gigawords=2,
            Acct_Terminate_Cause="Idle-Timeout",
            **common,
        )
        assert all(r is not None and r.code == packet.AccountingResponse for r in (start, interim, stop))
        rows = await rig.rows()
        after_stop = await rig.gw.status(Device(MAC, "10.1.0.5"))
    assert [r.status for r in rows] == ["start", "interim", "stop"]
    assert {(r.session_id, r.mac, r.ip, r.nas_name, r.nas_identifier) for r in rows} == {
        ("sess-0001", MAC, "10.1.0.5", "chilli", "chilli-test")
    }
    assert (rows[1].input_octets, rows[1].output_octets, rows[1].session_time_s) == (1_000, 50_000, 300)
    assert (rows[2].input_octets, rows[2].output_octets) == (2**32 + 7, 2 * 2**32 + 123)
    assert (rows[2].session_time_s, rows[2].terminate_cause) == (900, "Idle-Timeout")
    # The device's traffic as the portal shows it: downloaded is what the gateway output to it.
    assert status.authorised and (status.bytes_in, status.bytes_out) == (50_000, 1_000)
    assert not after_stop.authorised and after_stop.bytes_in == 2 * 2**32 + 123


async def _log_row(rig: Rig, start: datetime) -> GuestStore:
    """The identification log row the portal opened for GRANT's session, as it does before `allow`."""
    guests = GuestStore(rig.sessions)
    guest_id = await guests.guest_for_phone("+79161234567", start)
    await guests.start_session(log_session(GRANT.session_id, guest_id, start, DeviceKey(MAC, "10.1.0.5"), "radius"))
    return guests


async def test_accounting_writes_time_and_volume_into_the_identification_log(db_engine: AsyncEngine) -> None:
    async with rig_on(db_engine) as rig:
        start = rig.clock.now.replace(microsecond=0)
        guests = await _log_row(rig, start)
        user, password = await rig.login()
        assert (await rig.access(user, password)).code == packet.AccessAccept  # type: ignore[union-attr]
        common = {"User_Name": user, "Acct_Session_Id": "c0ffee01", "Calling_Station_Id": "AA-BB-CC-DD-EE-01"}
        await rig.accounting(Acct_Status_Type="Start", **common)
        await rig.accounting(
            Acct_Status_Type="Interim-Update", Acct_Input_Octets=1_000, Acct_Output_Octets=50_000, **common
        )
        during = await guests.session(GRANT.session_id)
        rig.clock.advance(1000)
        stop = {"Acct_Input_Octets": 7, "Acct_Input_Gigawords": 1, "Acct_Output_Octets": 123, **common}
        stop["Acct_Output_Gigawords"] = 1
        stopped_at = int((start + timedelta(seconds=900)).timestamp())
        await rig.accounting(
            Acct_Status_Type="Stop", Acct_Terminate_Cause="Idle-Timeout", Event_Timestamp=stopped_at, **stop
        )
        # A retransmission with another cause and a stale interim change nothing.
        rig.clock.advance(60)
        await rig.accounting(Acct_Status_Type="Stop", Acct_Terminate_Cause="Session-Timeout", **stop)
        await rig.accounting(Acct_Status_Type="Interim-Update", Acct_Input_Octets=5, **common)
        after = await guests.session(GRANT.session_id)
    assert during is not None and during.session.stop_utc is None
    assert (during.session.bytes_in, during.session.bytes_out) == (50_000, 1_000)
    assert after is not None
    row = after.session
    assert (row.bytes_in, row.bytes_out) == (2**32 + 123, 2**32 + 7), "downloaded is what the gateway output"
    assert (row.stop_utc, row.end_reason) == (start + timedelta(seconds=900), "gateway")


async def test_a_stop_after_the_portal_ended_the_session_adds_its_traffic_only(rig: Rig) -> None:
    start = rig.clock.now
    guests = await _log_row(rig, start)
    user, password = await rig.login()
    assert (await rig.access(user, password)).code == packet.AccessAccept  # type: ignore[union-attr]
    revoked_at = start + timedelta(seconds=30)
    await guests.end_session(GRANT.session_id, "revoked", revoked_at)
    rig.clock.advance(40)
    await rig.accounting(
        Acct_Status_Type="Stop",
        User_Name=user,
        Acct_Session_Id="c0ffee02",
        Acct_Output_Octets=9_999,
        Acct_Terminate_Cause="Admin-Reset",
    )
    view = await guests.session(GRANT.session_id)
    assert view is not None
    assert (view.session.end_reason, view.session.stop_utc, view.session.bytes_in) == ("revoked", revoked_at, 9_999)


async def test_a_stop_reported_with_a_clock_in_the_future_ends_when_it_arrived(rig: Rig) -> None:
    start = rig.clock.now.replace(microsecond=0)
    guests = await _log_row(rig, start)
    user, _ = await rig.login()
    rig.clock.advance(120)
    future = int((rig.clock.now + timedelta(days=400)).timestamp())
    await rig.accounting(Acct_Status_Type="Stop", User_Name=user, Acct_Session_Id="x", Event_Timestamp=future)
    view = await guests.session(GRANT.session_id)
    assert view is not None and view.session.stop_utc == rig.clock.now


@pytest.mark.parametrize(
    ("cause", "reason"),
    [
        ("Session-Timeout", "session_timeout"),
        ("User-Request", "logout"),
        ("Idle-Timeout", "gateway"),
        ("Admin-Reboot", "gateway"),
        (None, "gateway"),
    ],
)
def test_terminate_causes_become_the_logs_end_reasons(cause: str | None, reason: str) -> None:
    assert log_end_reason(cause) == reason


async def test_a_login_on_its_way_to_the_gateway_keeps_the_device_authorised(rig: Rig) -> None:
    # Between allow() and the gateway's Access-Request the guest's browser is still travelling:
    # the sweeper must not end the session as closed by the gateway.
    await rig.login()
    assert (await rig.gw.status(Device(MAC, "10.1.0.5"))).authorised
    rig.clock.advance(rig.settings.login_ttl_s + 1)
    assert not (await rig.gw.status(Device(MAC, "10.1.0.5"))).authorised, "never presented: over"
    await rig.login()
    await rig.gw.revoke(Device(MAC, "10.1.0.5"))
    assert not (await rig.gw.status(Device(MAC, "10.1.0.5"))).authorised, "revoked before use: over"


@needs_radclient
async def test_radclient_accounting_start_is_stored(rig: Rig) -> None:
    user, _ = await rig.login()
    answer = await _radclient(
        rig,
        "acct",
        f'Acct-Status-Type = Start, User-Name = "{user}", Acct-Session-Id = "mt-81a00001", '
        'Calling-Station-Id = "AA:BB:CC:DD:EE:01", Framed-IP-Address = 10.5.50.9, Event-Timestamp = 1764300000\n',
    )
    assert answer["_code"] == "Accounting-Response"
    [row] = await rig.rows()
    assert (row.status, row.acct_session_id, row.session_id, row.ip) == (
        "start",
        "mt-81a00001",
        "sess-0001",
        "10.5.50.9",
    )
    assert row.event_utc == datetime.fromtimestamp(1764300000, UTC)


async def test_a_gateway_restart_ends_the_sessions_it_had(rig: Rig) -> None:
    user, password = await rig.login()
    assert (await rig.access(user, password)).code == packet.AccessAccept  # type: ignore[union-attr]
    await rig.accounting(Acct_Status_Type="Start", User_Name=user, Acct_Session_Id="a1")
    assert (await rig.gw.status(Device(MAC, "10.1.0.5"))).authorised
    reply = await rig.accounting(Acct_Status_Type="Accounting-On", NAS_Identifier="chilli-test")
    assert reply is not None and reply.code == packet.AccountingResponse
    assert [r.status for r in await rig.rows()] == ["start", "accounting-on"]
    assert not (await rig.gw.status(Device(MAC, "10.1.0.5"))).authorised


async def test_accounting_of_an_unknown_login_is_kept_without_a_session(rig: Rig) -> None:
    reply = await rig.accounting(Acct_Status_Type="Start", Acct_Session_Id="z1", User_Name="somebody")
    assert reply is not None and reply.code == packet.AccountingResponse
    [row] = await rig.rows()
    assert (row.username, row.session_id) == ("somebody", None)


async def test_a_retransmitted_request_is_answered_again_and_stored_once(rig: Rig) -> None:
    c = rig.client()
    req = c.CreateAcctPacket()
    req["Acct-Status-Type"] = "Start"
    req["Acct-Session-Id"] = "dup-1"
    raw = req.RequestPacket()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        answers = []
        for _ in range(2):  # the same bytes from the same port: a resend of a lost answer
            sock.sendto(raw, ("127.0.0.1", rig.settings.acct_port))
            answers.append(await asyncio.to_thread(sock.recv, 4096))
    assert answers[0] == answers[1]
    assert req.VerifyReply(req.CreateReply(packet=answers[0]), answers[0])
    assert len(await rig.rows()) == 1


async def test_accounting_is_not_acknowledged_when_it_cannot_be_stored(rig: Rig, sqlite_engine: AsyncEngine) -> None:
    async with sqlite_engine.begin() as conn:
        await conn.exec_driver_sql("DROP TABLE radius_accounting")
    reply = await rig.accounting(Acct_Status_Type="Start", Acct_Session_Id="lost", timeout=1.0)
    assert reply is None  # the gateway keeps the record and resends it later


# ------------------------------------------------------------------- revoke: Disconnect ---


@dataclass
class StandInNas(asyncio.DatagramProtocol):
    """The dynamic-authorisation side of a gateway (RFC 5176), answering as configured."""

    secret: bytes
    answer: int | None = packet.DisconnectACK
    received: list[packet.CoAPacket] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        req = packet.CoAPacket(secret=self.secret, dict=DICT, packet=data)
        if not req.VerifyCoARequest():
            return
        self.received.append(req)
        if self.answer is None or self.transport is None:
            return
        reply = req.CreateReply()
        reply.code = self.answer
        if self.answer == packet.DisconnectNAK:
            reply["Error-Cause"] = "Session-Context-Not-Found"
        self.transport.sendto(reply.ReplyPacket(), addr)


@asynccontextmanager
async def stand_in_nas(answer: int | None) -> AsyncIterator[tuple[StandInNas, int]]:
    port = free_port(socket.SOCK_DGRAM)
    transport, nas = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: StandInNas(SECRET.encode(), answer), local_addr=("127.0.0.1", port)
    )
    try:
        yield nas, port
    finally:
        transport.close()


async def _revoke_with(sqlite_engine: AsyncEngine, answer: int | None) -> tuple[StandInNas, GatewayError | None]:
    async with stand_in_nas(answer) as (nas, coa_port):
        clients = [{"name": "mt", "addresses": ["127.0.0.1"], "secret": SECRET, "coa_port": coa_port}]
        async with rig_on(sqlite_engine, clients=clients, coa_timeout_s=1.0) as rig:
            user, password = await rig.login()
            assert (await rig.access(user, password)).code == packet.AccessAccept  # type: ignore[union-attr]
            await rig.accounting(
                Acct_Status_Type="Start", User_Name=user, Acct_Session_Id="mt-0007", Framed_IP_Address="10.5.50.9"
            )
            try:
                await rig.gw.revoke(Device(MAC, "10.1.0.5"))
            except GatewayError as exc:
                return nas, exc
            finally:
                assert (await rig.access(user, password)).code == packet.AccessReject  # type: ignore[union-attr]
    return nas, None


async def test_revoke_sends_a_disconnect_request_the_gateway_acknowledges(sqlite_engine: AsyncEngine) -> None:
    nas, error = await _revoke_with(sqlite_engine, packet.DisconnectACK)
    assert error is None
    [req] = nas.received
    assert req.code == packet.DisconnectRequest
    assert req["Acct-Session-Id"] == ["mt-0007"] and req["Framed-IP-Address"] == ["10.5.50.9"]
    assert req["User-Name"][0].startswith("g")


@pytest.mark.parametrize(("answer", "said"), [(packet.DisconnectNAK, "Session-Context-Not-Found"), (None, "no answer")])
async def test_revoke_reports_a_disconnect_the_gateway_did_not_confirm(
    sqlite_engine: AsyncEngine, answer: int | None, said: str
) -> None:
    nas, error = await _revoke_with(sqlite_engine, answer)
    assert nas.received, "the Disconnect-Request was not sent"
    assert error is not None and said in str(error) and "coa_port" in str(error)


# ------------------------------------------------------------------------ the portal's side ---


async def test_identify_takes_the_redirects_claim_and_challenge(rig: Rig) -> None:
    req = make_mocked_request("GET", f"/?res=notyet&mac=AA-BB-CC-DD-EE-01&ip=10.1.0.5&challenge={CHALLENGE.upper()}")
    assert await rig.gw.identify(req) == Device(MAC, "10.1.0.5", CHALLENGE)
    assert await rig.gw.identify(make_mocked_request("GET", "/?mac=zz&ip=10.1.0.5")) is None
    bad_challenge = await rig.gw.identify(make_mocked_request("GET", "/?mac=aabbccddee01&challenge=xyz"))
    assert bad_challenge == Device(MAC, "", None)


async def test_login_url_is_the_template_with_encoded_values(rig: Rig) -> None:
    url = await rig.gw.allow(Device(MAC, "10.1.0.5"), GRANT)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "10.1.0.1:3990", "/logon")
    query = parse_qs(parts.query)
    assert query["userurl"] == ["http://10.1.0.2:8081/welcome?from=wifi"]
    assert len(query["password"][0]) >= 16 and query["username"][0] != query["password"][0]
    async with rig.sessions() as s:
        [login] = (await s.scalars(select(RadiusLogin))).all()
    assert query["password"][0] not in (login.password_sha256, repr(login))  # only a digest is stored


async def test_chilli_encoding_needs_the_redirects_challenge(sqlite_engine: AsyncEngine) -> None:
    async with rig_on(sqlite_engine, password_encoding="chilli", uam_secret="uam-secret-1") as rig:
        with pytest.raises(GatewayError, match="challenge"):
            await rig.gw.allow(Device(MAC, "10.1.0.5"), GRANT)
        url = await rig.gw.allow(Device(MAC, "10.1.0.5", CHALLENGE), GRANT)
    hidden = parse_qs(urlsplit(url).query)["password"][0]
    assert all(c in "0123456789abcdef" for c in hidden)


PERL_HOTSPOTLOGIN = r"""
use Digest::MD5 qw(md5);
my ($challenge, $uamsecret, $password) = @ARGV;
my $hexchal = pack "H*", $challenge;
my $newchal = $uamsecret eq "" ? $hexchal : md5($hexchal, $uamsecret);
while (length($newchal) < length($password)) { $newchal .= $newchal; }
print unpack "H*", substr($password ^ $newchal, 0, length($password));
"""


@pytest.mark.skipif(shutil.which("perl") is None, reason="perl missing")
@pytest.mark.parametrize(("uam_secret", "password"), [("uam-secret-1", "Q2xhcmEgbGVhcm5z"), (None, "a" * 40)])
def test_chilli_password_matches_coovachillis_own_login_script(uam_secret: str | None, password: str) -> None:
    # The PAP branch of CoovaChilli's doc/hotspotlogin.cgi, run by perl: what chilli decodes.
    expected = subprocess.run(
        ["perl", "-e", PERL_HOTSPOTLOGIN, CHALLENGE, uam_secret or "", password],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert chilli_password(password, CHALLENGE, uam_secret) == expected


async def test_start_reports_a_port_in_use_with_the_key_to_change(sqlite_engine: AsyncEngine) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        gw = RadiusGateway(settings(acct_port=port), make_sessionmaker(sqlite_engine), locale="en", retention_days=183)
        with pytest.raises(GatewayError, match="acct_port"):
            await gw.start()
        await gw.stop()


async def test_purge_deletes_what_is_older_than_the_retention(db_engine: AsyncEngine) -> None:
    async with rig_on(db_engine) as rig:
        await rig.login()
        await rig.accounting(Acct_Status_Type="Start", Acct_Session_Id="old")
        store = rig.gw._store
        assert await store.purge(datetime.now(UTC) - timedelta(days=1)) == 0
        assert await store.purge(datetime.now(UTC) + timedelta(seconds=5)) == 2
        assert await rig.rows() == []


async def test_a_driver_without_gateways_or_login_address_refuses_to_build(sqlite_engine: AsyncEngine) -> None:
    with pytest.raises(GatewayError, match=r"radius\.clients") as info:
        RadiusGateway(RadiusSettings(), make_sessionmaker(sqlite_engine), locale="en", retention_days=183)
    assert "radius.login_url" in str(info.value)


# ----------------------------------------------------------------- attributes per dialect ---


FULL = Grant("s", 7200, 600, down_kbit_s=8000, up_kbit_s=2000, quota_bytes=5 * 2**32 + 17)
TIMEOUTS = (("Session-Timeout", 7200), ("Idle-Timeout", 600), ("Acct-Interim-Interval", 120))


def test_standard_dialect_carries_only_timeouts_and_says_what_it_drops() -> None:
    got = accept_attributes(FULL, "standard", interim_s=120)
    assert got.attributes == TIMEOUTS
    assert got.not_expressed == ("rates", "quota")


def test_wispr_dialect_carries_rates_in_bits_per_second() -> None:
    got = accept_attributes(FULL, "wispr", interim_s=120)
    assert got.attributes == (*TIMEOUTS, ("WISPr-Bandwidth-Max-Up", 2_000_000), ("WISPr-Bandwidth-Max-Down", 8_000_000))
    assert got.not_expressed == ("quota",)


def test_chillispot_dialect_splits_the_quota_into_gigawords() -> None:
    got = accept_attributes(FULL, "chillispot", interim_s=120)
    assert dict(got.attributes)["ChilliSpot-Max-Total-Octets"] == 17
    assert dict(got.attributes)["ChilliSpot-Max-Total-Gigawords"] == 5
    assert dict(got.attributes)["WISPr-Bandwidth-Max-Down"] == 8_000_000
    assert got.not_expressed == ()


def test_mikrotik_dialect_rate_limit_is_upload_first_and_zero_is_unlimited() -> None:
    got = dict(accept_attributes(FULL, "mikrotik", interim_s=120).attributes)
    assert got["Mikrotik-Rate-Limit"] == "2000k/8000k"
    assert (got["Mikrotik-Total-Limit"], got["Mikrotik-Total-Limit-Gigawords"]) == (17, 5)
    assert mikrotik_rate_limit(None, 512) == "0k/512k"


def test_no_limits_mean_no_limit_attributes_in_any_dialect() -> None:
    plain = Grant("s", 60, 60)
    for dialect in ("standard", "wispr", "chillispot", "mikrotik"):
        got = accept_attributes(plain, dialect, interim_s=60)  # type: ignore[arg-type]
        assert [name for name, _ in got.attributes] == ["Session-Timeout", "Idle-Timeout", "Acct-Interim-Interval"]
        assert got.not_expressed == ()


def test_a_small_quota_has_no_gigawords_and_rates_are_capped_to_32_bits() -> None:
    got = dict(accept_attributes(Grant("s", 60, 60, 10**7, None, 1000), "chillispot", interim_s=60).attributes)
    assert got["ChilliSpot-Max-Total-Octets"] == 1000 and "ChilliSpot-Max-Total-Gigawords" not in got
    assert got["WISPr-Bandwidth-Max-Down"] == 2**32 - 1


# ------------------------------------------------------------------------------- settings ---

CLIENT = {"name": "gw", "addresses": ["10.1.0.1"], "secret": SECRET}


@pytest.mark.parametrize(
    ("radius", "said"),
    [
        ({"login_url": "http://10.1.0.1/login?u={user}&p={password}"}, "login_url: unknown placeholder {user}"),
        ({"login_url": "http://10.1.0.1/login?username={username}"}, "must carry {username} and {password}"),
        ({"login_url": "ftp://10.1.0.1/{username}{password}"}, "not an http:// or https:// address"),
        ({"clients": [{**CLIENT, "secret": "short"}]}, "clients[0]: secret: too short"),
        ({"clients": [{"name": "gw", "addresses": ["10.1.0.1"]}]}, "clients[0]: secret: required"),
        (
            {"clients": [{"name": "gw", "addresses": ["10.1.0.1"], "secret_env": "NO_SUCH_VARIABLE_HERE"}]},
            "secret_env: the environment variable NO_SUCH_VARIABLE_HERE is not set",
        ),
        ({"clients": [{**CLIENT, "secret_file": "/etc/hostname"}]}, "give only one of secret, secret_file, secret_env"),
        ({"clients": [CLIENT, {**CLIENT, "name": "gw2", "addresses": ["10.1.0.0/24"]}]}, "gw and gw2 both cover"),
        ({"auth_port": 1813}, "auth_port and acct_port are the same"),
        ({"dialect": "cisco"}, "portal.gateway.radius.dialect"),
    ],
)
def test_bad_radius_settings_name_the_key_and_the_fix(radius: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"portal": {"gateway": {"radius": radius}}})
    assert said in str(info.value)
    assert SECRET not in str(info.value)


def test_choosing_radius_without_its_essentials_is_refused_by_check_config() -> None:
    with pytest.raises(ConfigError, match=r"radius\.clients: no gateway configured"):
        parse_config({"portal": {"gateway": {"driver": "radius"}}})
    radius = {"clients": [CLIENT], "login_url": settings().login_url}
    cfg = parse_config({"portal": {"gateway": {"driver": "radius", "radius": radius}}})
    assert cfg.portal.gateway.radius.clients[0].secret is not None
    assert cfg.portal.gateway.radius.clients[0].secret.get_secret_value() == SECRET
