"""`appliance db upgrade` and `appliance user add|passwd|list`.

Every command brings the schema to head first (as the daemon does at start), so that a fresh
installation can create its first account straight away.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from appliance.config import Config
from appliance.redact import mask_text, mask_url
from appliance.storage.db import engine_from_config, is_sqlite, make_sessionmaker
from appliance.storage.migrate import MigrationError, current_revision, upgrade
from appliance.storage.users import UserError, UserStore, normalize_username

Job = Callable[[AsyncEngine], Awaitable[str]]

TIME_FORMAT = "%Y-%m-%d %H:%M %Z"


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _database_problem(cfg: Config, exc: BaseException) -> str:
    """What went wrong with the database, where, and what to check; never the password."""
    # The driver's own words (e.g. 'role "shop" does not exist'), without SQLAlchemy's wrapping.
    reason = str(exc.orig) if isinstance(exc, DBAPIError) else f"{type(exc).__name__}: {exc}"
    secret = cfg.database.password.get_secret_value() if cfg.database.password is not None else None
    reason = mask_text(reason, (secret,) if secret else ())
    url = make_url(cfg.database_url)
    if is_sqlite(url):
        return (
            f"cannot use the SQLite database {url.database} ({reason}). Check that {cfg.appliance.data_dir} "
            "exists, has free space and is writable by the user running the appliance."
        )
    return (
        f"cannot use the PostgreSQL database on {url.host or 'localhost'}:{url.port or 5432} "
        f"({mask_url(cfg.database_url)}): {reason}. Check that the server is running and reachable from this "
        "machine, and that [database] url and password in the configuration are right."
    )


async def _on_database(cfg: Config, job: Job) -> str:
    engine = engine_from_config(cfg)
    try:
        await upgrade(engine)
        return await job(engine)
    finally:
        await engine.dispose()


def _run(cfg: Config, job: Job, usage_errors: tuple[type[Exception], ...] = (UserError,)) -> int:
    """Run `job` on the migrated database and print what it returns; `usage_errors` are the
    caller's mistakes (exit 2), the database's problems exit 1."""
    try:
        print(asyncio.run(_on_database(cfg, job)))
    except usage_errors as exc:
        _fail(str(exc))
        return EXIT_USAGE
    except MigrationError as exc:
        _fail(str(exc))
        return EXIT_FAILURE
    except (OSError, SQLAlchemyError) as exc:
        _fail(_database_problem(cfg, exc))
        return EXIT_FAILURE
    return EXIT_OK


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not sys.stdin.isatty():
        raise UserError("there is no terminal to ask for the password; pipe it in and add --password-stdin")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat the password: ") != first:
        raise UserError("the two passwords differ; run the command again")
    return first


def _store(engine: AsyncEngine) -> UserStore:
    return UserStore(make_sessionmaker(engine))


def db_upgrade(cfg: Config) -> int:
    async def job(engine: AsyncEngine) -> str:
        revision = await current_revision(engine)
        return f"Database {mask_url(cfg.database_url)} is at schema revision {revision} (latest)."

    return _run(cfg, job)


def user_add(cfg: Config, username: str, role: str = "viewer", password_stdin: bool = False) -> int:
    try:
        # Check the name before asking for a password that would be thrown away.
        name = normalize_username(username)
        password = _read_password(password_stdin)
    except UserError as exc:
        _fail(str(exc))
        return EXIT_USAGE

    async def job(engine: AsyncEngine) -> str:
        user = await _store(engine).add(name, password, role)
        return f"Created the {user.role} account {user.username!r}."

    return _run(cfg, job)


def user_passwd(cfg: Config, username: str, password_stdin: bool = False) -> int:
    try:
        password = _read_password(password_stdin)
    except UserError as exc:
        _fail(str(exc))
        return EXIT_USAGE

    async def job(engine: AsyncEngine) -> str:
        await _store(engine).set_password(username, password)
        return f"Changed the password of {username.lower()!r}."

    return _run(cfg, job)


def _local(moment: datetime | None, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime(TIME_FORMAT) if moment is not None else "never"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)
    )


def user_list(cfg: Config) -> int:
    zone = ZoneInfo(cfg.appliance.timezone)

    async def job(engine: AsyncEngine) -> str:
        users = await _store(engine).list()
        if not users:
            return "No staff accounts yet. Create the first one with: appliance user add NAME --role admin"
        rows = [
            (
                u.username,
                u.role,
                "disabled" if u.disabled else "active",
                _local(u.created_at, zone),
                _local(u.last_login_at, zone),
            )
            for u in users
        ]
        return _table(("USERNAME", "ROLE", "STATUS", "CREATED", "LAST LOGIN"), rows)

    return _run(cfg, job)
