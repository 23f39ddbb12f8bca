"""Helpers for the web app tests: a real SQLite user store, real HTTP servers and clients."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.config import Config, parse_config
from appliance.storage.db import create_engine, make_sessionmaker
from appliance.storage.migrate import upgrade
from appliance.storage.users import UserStore

# Real argon2id, with cheap parameters so that a test with a dozen logins stays fast.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)

ADMIN = "anna"
ADMIN_PASSWORD = "correct horse battery"

_CSRF_INPUT = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]+)">')


def make_config(tmp_path: Path, **appliance: Any) -> Config:
    return parse_config(
        {
            "appliance": {"data_dir": str(tmp_path), "name": "Магазин у дома", **appliance},
            "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'appliance.db'}"},
        }
    )


@asynccontextmanager
async def user_store(cfg: Config, *, with_admin: bool = True) -> AsyncIterator[UserStore]:
    engine = create_engine(cfg.database_url)
    try:
        await upgrade(engine)
        users = UserStore(make_sessionmaker(engine), hasher=FAST_HASHER)
        if with_admin:
            await users.add(ADMIN, ADMIN_PASSWORD, role="admin")
        yield users
    finally:
        await engine.dispose()


@asynccontextmanager
async def serve(
    app: web.Application, *, server_ssl: ssl.SSLContext | None = None, source_ip: str | None = None
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """A real listener on 127.0.0.1 and a client; `source_ip` picks the client's loopback address."""
    server = TestServer(app)
    await server.start_server(ssl=server_ssl)
    connector = aiohttp.TCPConnector(local_addr=(source_ip, 0)) if source_ip else None
    client = TestClient(server, connector=connector)
    try:
        await client.start_server()
        yield client
    finally:
        await client.close()


def csrf_token(html: str) -> str:
    match = _CSRF_INPUT.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


async def login(
    client: TestClient[web.Request, web.Application],
    username: str = ADMIN,
    password: str = ADMIN_PASSWORD,
    **kwargs: Any,
) -> aiohttp.ClientResponse:
    """Open the login form (for its CSRF cookie and field), then send it; redirects not followed."""
    form = await client.get("/login")
    token = csrf_token(await form.text())
    return await client.post(
        "/login",
        data={"csrf_token": token, "username": username, "password": password},
        allow_redirects=False,
        **kwargs,
    )


def self_signed_server_context(tmp_path: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


def assert_security_headers(headers: Any) -> None:
    """Every response of either app carries these."""
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
