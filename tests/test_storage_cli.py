"""`appliance db upgrade` and `appliance user …` as a person runs them: real subprocesses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from appliance.storage.db import create_engine, make_sessionmaker
from appliance.storage.migrate import head_revision
from appliance.storage.users import UserStore
from tests.gst_peer import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "Kassa-2026-winter"
NEW_PASSWORD = "Spring-shift-2027"


def write_config(tmp_path: Path, url: str, database_extra: str = "") -> Path:
    path = tmp_path / "appliance.toml"
    path.write_text(
        f'[appliance]\ndata_dir = "{tmp_path / "data"}"\n\n[database]\nurl = "{url}"\n{database_extra}',
        encoding="utf-8",
    )
    return path


def appliance(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args, "--config", str(config)],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )


def _verify(url: str, username: str, password: str) -> bool:
    async def check() -> bool:
        engine = create_engine(url)
        try:
            return await UserStore(make_sessionmaker(engine)).verify(username, password) is not None
        finally:
            await engine.dispose()

    return asyncio.run(check())


def _created_at(url: str, username: str) -> str:
    async def read() -> str:
        engine = create_engine(url)
        try:
            users = {u.username: u for u in await UserStore(make_sessionmaker(engine)).list()}
        finally:
            await engine.dispose()
        return users[username].created_at.astimezone(ZoneInfo("Europe/Moscow")).strftime("%Y-%m-%d %H:%M MSK")

    return asyncio.run(read())


def test_first_admin_from_an_empty_database(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)

    empty = appliance(config, "user", "list")
    assert empty.returncode == 0, empty.stderr
    assert "appliance user add NAME --role admin" in empty.stdout

    added = appliance(config, "user", "add", "Admin", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert "admin" in added.stdout and PASSWORD not in added.stdout + added.stderr

    listed = appliance(config, "user", "list")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["USERNAME", "ROLE", "STATUS", "CREATED", "LAST", "LOGIN"]
    # Creation time in the store's zone (Europe/Moscow by default), login never.
    assert row.split() == ["admin", "admin", "active", *_created_at(db_url, "admin").split(), "never"]

    changed = appliance(config, "user", "passwd", "admin", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert changed.returncode == 0, changed.stderr
    assert not _verify(db_url, "admin", PASSWORD)
    assert _verify(db_url, "admin", NEW_PASSWORD)

    relisted = appliance(config, "user", "list")
    assert "never" not in relisted.stdout.splitlines()[1]
    assert relisted.stdout.splitlines()[1].endswith("MSK")


def test_bad_input_exits_2_and_says_what_to_do(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    assert appliance(config, "user", "add", "admin", "--password-stdin", stdin=PASSWORD).returncode == 0

    duplicate = appliance(config, "user", "add", "ADMIN", "--password-stdin", stdin=NEW_PASSWORD)
    assert duplicate.returncode == 2
    assert "'admin' already exists" in duplicate.stderr

    weak = appliance(config, "user", "add", "kassir", "--password-stdin", stdin="qwerty12\n")
    assert weak.returncode == 2
    assert "shorter than 10 characters" in weak.stderr and "qwerty12" not in weak.stderr

    unknown = appliance(config, "user", "passwd", "ghost", "--password-stdin", stdin=NEW_PASSWORD)
    assert unknown.returncode == 2
    assert "no user named 'ghost'" in unknown.stderr and "appliance user list" in unknown.stderr

    assert appliance(config, "user", "list").stdout.count("\n") == 2  # header and admin only


def test_db_upgrade_reports_the_revision_and_repeats_safely(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    for _ in range(2):
        done = appliance(config, "db", "upgrade")
        assert done.returncode == 0, done.stderr
        assert f"revision {head_revision()}" in done.stdout


def test_input_is_checked_before_the_database(tmp_path: Path) -> None:
    # A database that cannot be reached shows that these fail on input, before connecting.
    config = write_config(tmp_path, f"postgresql+asyncpg://shop@127.0.0.1:{free_port()}/appliance")

    bad_name = appliance(config, "user", "add", "no spaces please", "--password-stdin", stdin=PASSWORD)
    assert bad_name.returncode == 2
    assert "3 to 32 characters" in bad_name.stderr

    no_terminal = appliance(config, "user", "add", "kassir")
    assert no_terminal.returncode == 2
    assert "--password-stdin" in no_terminal.stderr


@pytest.mark.parametrize(
    ("url_userinfo", "database_extra"),
    [("shop:Url-Secret-99", ""), ("shop", 'password = "Conf-Secret-77"\n')],
    ids=["password-in-url", "password-setting"],
)
def test_unreachable_postgres_exits_1_naming_the_host(tmp_path: Path, url_userinfo: str, database_extra: str) -> None:
    port = free_port()
    url = f"postgresql+asyncpg://{url_userinfo}@127.0.0.1:{port}/appliance"
    config = write_config(tmp_path, url, database_extra)

    failed = appliance(config, "db", "upgrade")

    assert failed.returncode == 1
    assert f"127.0.0.1:{port}" in failed.stderr
    assert "Check that the server is running" in failed.stderr
    for secret in ("Url-Secret-99", "Conf-Secret-77"):
        assert secret not in failed.stderr + failed.stdout
    assert "Traceback" not in failed.stderr


def test_unusable_data_dir_exits_1_with_advice(tmp_path: Path) -> None:
    config = tmp_path / "appliance.toml"
    # /proc refuses new directories, even to root.
    config.write_text('[appliance]\ndata_dir = "/proc/appliance-test"\n', encoding="utf-8")

    failed = appliance(config, "user", "list")

    assert failed.returncode == 1
    assert "/proc/appliance-test" in failed.stderr and "writable" in failed.stderr
    assert "Traceback" not in failed.stderr
