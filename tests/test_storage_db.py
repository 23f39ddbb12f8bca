"""Engines, migrations and the UTC datetime type, on SQLite and the real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.storage.db import SQLITE_BUSY_TIMEOUT_MS, create_engine
from appliance.storage.migrate import (
    MigrationError,
    current_revision,
    head_revision,
    migration_options,
    upgrade,
)
from appliance.storage.models import Base, UTCDateTime


def _schema_diff(metadata: MetaData) -> object:
    def compare(conn: Connection) -> object:
        return compare_metadata(MigrationContext.configure(conn, opts=migration_options(conn)), metadata)

    return compare


async def test_sqlite_engine_makes_data_dir_and_sets_pragmas(tmp_path: Path) -> None:
    db_file = tmp_path / "not" / "yet" / "appliance.db"
    engine = create_engine(f"sqlite+aiosqlite:///{db_file}")
    try:
        async with engine.connect() as conn:
            values = {
                pragma: (await conn.exec_driver_sql(f"PRAGMA {pragma}")).scalar()
                for pragma in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
    finally:
        await engine.dispose()
    assert db_file.is_file()
    # synchronous: 1 is NORMAL.
    assert values == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
        "synchronous": 1,
    }


async def test_postgres_password_stays_out_of_the_url() -> None:
    secret = "Sup3r-secret-pw"
    engine = create_engine("postgresql+asyncpg://shop@db.example:5432/appliance", password=secret)
    try:
        shown = [str(engine.url), repr(engine), engine.url.render_as_string(hide_password=False)]
    finally:
        await engine.dispose()
    assert all(secret not in s for s in shown)
    assert "shop@db.example:5432/appliance" in str(engine.url)


async def test_upgrade_from_empty_reaches_head(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        assert await current_revision(engine) is None
        await upgrade(engine)
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    assert {"users", "alembic_version"} <= tables


async def test_second_upgrade_changes_nothing_and_keeps_rows(db_engine: AsyncEngine) -> None:
    async with db_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (username, password_hash, role, created_at, disabled) "
                "VALUES ('kept', 'x', 'viewer', :now, false)"
            ),
            {"now": datetime.now(UTC)},
        )
    await upgrade(db_engine)
    assert await current_revision(db_engine) == head_revision()
    async with db_engine.connect() as conn:
        assert (await conn.execute(text("SELECT username FROM users"))).scalars().all() == ["kept"]


async def test_concurrent_upgrades_apply_each_migration_once(db_url: str) -> None:
    # Several processes (or appliances sharing a server) starting at once, each with its own engine.
    engines = [create_engine(db_url) for _ in range(3)]
    try:
        await asyncio.gather(*(upgrade(e) for e in engines))
        assert await current_revision(engines[0]) == head_revision()
        async with engines[0].connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM alembic_version"))).scalar() == 1
    finally:
        for e in engines:
            await e.dispose()


async def test_migrations_produce_exactly_the_models_schema(db_engine: AsyncEngine) -> None:
    async with db_engine.connect() as conn:
        assert await conn.run_sync(_schema_diff(Base.metadata)) == []


def _constraint_names(conn: Connection) -> dict[str, set[str]]:
    insp = inspect(conn)
    names: dict[str, set[str]] = {}
    for table in Base.metadata.tables:
        found = {insp.get_pk_constraint(table)["name"]}
        for reflect in (
            insp.get_unique_constraints,
            insp.get_check_constraints,
            insp.get_foreign_keys,
            insp.get_indexes,
        ):
            found |= {c["name"] for c in reflect(table)}  # type: ignore[operator]
        names[table] = found
    return names


async def test_constraints_carry_the_models_names(db_engine: AsyncEngine) -> None:
    # Alembic's comparison skips check constraints and some names; later migrations on SQLite's
    # batch mode find constraints by name, so the names must be the conventional ones.
    expected = {
        name: {c.name for c in table.constraints} | {i.name for i in table.indexes}
        for name, table in Base.metadata.tables.items()
    }
    async with db_engine.connect() as conn:
        assert await conn.run_sync(_constraint_names) == expected


async def test_schema_comparison_notices_a_model_change(db_engine: AsyncEngine) -> None:
    # The check above must be able to fail: a model column without a migration shows up.
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["users"].append_column(Column("nickname", String(40)))
    async with db_engine.connect() as conn:
        diff = await conn.run_sync(_schema_diff(changed))
    assert [(d[0], d[3].name) for d in diff] == [("add_column", "nickname")]  # type: ignore[index]


async def test_database_from_a_newer_version_is_refused(db_engine: AsyncEngine) -> None:
    async with db_engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(MigrationError, match=r"'9999'.*newer version"):
        await upgrade(db_engine)


_moments = Table("moments", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime))


async def test_utc_datetime_round_trip(db_url: str) -> None:
    moscow_evening = datetime(2026, 11, 27, 23, 40, 5, 123456, tzinfo=timezone(timedelta(hours=3)))
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_moments.metadata.create_all)
            await conn.execute(insert(_moments), [{"id": 1, "at": moscow_evening}, {"id": 2, "at": None}])
        async with engine.connect() as conn:
            rows = {i: at for i, at in await conn.execute(select(_moments.c.id, _moments.c.at))}
    finally:
        await engine.dispose()
    assert rows[1] == moscow_evening
    assert rows[1].tzinfo == UTC
    assert rows[1].hour == 20
    assert rows[2] is None


async def test_utc_datetime_refuses_naive_values(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_moments.metadata.create_all)
        async with engine.begin() as conn:
            with pytest.raises(StatementError, match="naive datetime"):
                await conn.execute(insert(_moments), {"id": 1, "at": datetime(2026, 11, 27, 23, 40)})
    finally:
        await engine.dispose()
