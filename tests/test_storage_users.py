"""Staff accounts in UserStore, on SQLite and the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.storage.db import make_sessionmaker
from appliance.storage.models import User
from appliance.storage.users import (
    InvalidUsername,
    UnknownUser,
    UserError,
    UserExists,
    UserStore,
    WeakPassword,
    normalize_username,
)

GOOD_PASSWORD = "correct horse battery"


class CountingHasher(PasswordHasher):
    """A real argon2 hasher with cheap parameters (tests stay fast) that counts its verifications."""

    def __init__(self, time_cost: int = 1) -> None:
        super().__init__(time_cost=time_cost, memory_cost=8, parallelism=1)
        self.verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verifications += 1
        return super().verify(hash, password)


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def store(db_engine: AsyncEngine, hasher: CountingHasher) -> UserStore:
    return UserStore(make_sessionmaker(db_engine), hasher)


async def _stored_hash(engine: AsyncEngine, username: str) -> str:
    async with make_sessionmaker(engine)() as session:
        return (await session.scalars(select(User.password_hash).where(User.username == username))).one()


async def test_added_user_logs_in_and_the_login_is_recorded(store: UserStore, db_engine: AsyncEngine) -> None:
    before = datetime.now(UTC)
    added = await store.add("Anna.K", GOOD_PASSWORD, role="admin")
    assert (added.username, added.role, added.disabled) == ("anna.k", "admin", False)
    assert added.last_login_at is None
    assert before <= added.created_at <= datetime.now(UTC)

    user = await store.verify("ANNA.k", GOOD_PASSWORD)
    assert user is not None and user.id == added.id
    assert user.last_login_at is not None and user.last_login_at.tzinfo == UTC
    (listed,) = await store.list()
    assert listed.last_login_at == user.last_login_at
    assert listed.created_at == added.created_at

    stored = await _stored_hash(db_engine, "anna.k")
    assert stored.startswith("$argon2id$") and GOOD_PASSWORD not in stored


async def test_wrong_password_fails_and_records_nothing(store: UserStore) -> None:
    await store.add("boris", GOOD_PASSWORD)
    assert await store.verify("boris", GOOD_PASSWORD + "!") is None
    assert await store.verify("boris", "") is None
    (user,) = await store.list()
    assert user.last_login_at is None


async def test_unknown_user_costs_a_verification_too(store: UserStore, hasher: CountingHasher) -> None:
    await store.add("boris", GOOD_PASSWORD)
    assert await store.verify("nobody", GOOD_PASSWORD) is None
    assert await store.verify("nobody", GOOD_PASSWORD) is None
    # Same work as a wrong password, so response time does not tell which names exist.
    assert hasher.verifications == 2


async def test_disabled_user_cannot_log_in_until_enabled(store: UserStore) -> None:
    await store.add("cashier", GOOD_PASSWORD)
    await store.set_disabled("cashier", True)
    assert await store.verify("cashier", GOOD_PASSWORD) is None
    (user,) = await store.list()
    assert user.disabled and user.last_login_at is None
    await store.set_disabled("cashier", False)
    assert await store.verify("cashier", GOOD_PASSWORD) is not None
    with pytest.raises(UnknownUser):
        await store.set_disabled("ghost", True)


async def test_hash_is_upgraded_when_parameters_change(db_engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(db_engine)
    await UserStore(sessions, CountingHasher(time_cost=1)).add("dina", GOOD_PASSWORD)
    old_hash = await _stored_hash(db_engine, "dina")
    stronger = CountingHasher(time_cost=2)
    assert stronger.check_needs_rehash(old_hash)

    assert await UserStore(sessions, stronger).verify("dina", GOOD_PASSWORD) is not None
    new_hash = await _stored_hash(db_engine, "dina")
    assert new_hash != old_hash and not stronger.check_needs_rehash(new_hash)
    assert ",t=2," in new_hash
    assert await UserStore(sessions, stronger).verify("dina", GOOD_PASSWORD) is not None
    assert await _stored_hash(db_engine, "dina") == new_hash


async def test_usernames_are_unique_regardless_of_case(store: UserStore) -> None:
    await store.add("admin", GOOD_PASSWORD, role="admin")
    with pytest.raises(UserExists, match="'admin' already exists"):
        await store.add("ADMIN", "another good password")
    assert await store.count() == 1
    assert await store.verify("admin", GOOD_PASSWORD) is not None


@pytest.mark.parametrize(
    ("password", "hint"),
    [("Tiny9pw", "shorter than 10"), ("Elena.Mart", "same as the username"), ("", "shorter than 10")],
)
async def test_weak_passwords_are_refused_with_advice(store: UserStore, password: str, hint: str) -> None:
    with pytest.raises(WeakPassword, match=hint) as caught:
        await store.add("elena.mart", password)
    assert password not in str(caught.value) or not password
    assert await store.count() == 0


@pytest.mark.parametrize("name", ["ab", "a" * 33, "with space", "имя", "semi;colon", "", "tab\t"])
def test_invalid_usernames_are_refused(name: str) -> None:
    with pytest.raises(InvalidUsername, match="3 to 32 characters"):
        normalize_username(name)


async def test_store_accepts_username_edges_only(store: UserStore) -> None:
    for name in ("abc", "a" * 32, "shop-1.night_shift"):
        await store.add(name, GOOD_PASSWORD)
    with pytest.raises(InvalidUsername):
        await store.add("a" * 33, GOOD_PASSWORD)
    assert [u.username for u in await store.list()] == ["a" * 32, "abc", "shop-1.night_shift"]
    assert await store.count() == 3


async def test_unknown_role_is_refused(store: UserStore) -> None:
    with pytest.raises(UserError, match="unknown role 'root'"):
        await store.add("fedor", GOOD_PASSWORD, role="root")


async def test_password_change(store: UserStore) -> None:
    await store.add("galina", GOOD_PASSWORD)
    await store.set_password("Galina", "a brand new passphrase")
    assert await store.verify("galina", GOOD_PASSWORD) is None
    assert await store.verify("galina", "a brand new passphrase") is not None
    with pytest.raises(WeakPassword):
        await store.set_password("galina", "tiny")
    with pytest.raises(UnknownUser, match="no user named 'ghost'"):
        await store.set_password("ghost", GOOD_PASSWORD)
    assert await store.verify("galina", "a brand new passphrase") is not None


async def test_list_is_sorted_and_times_are_aware_utc(store: UserStore) -> None:
    for name in ("zoya", "ivan", "maria"):
        await store.add(name, GOOD_PASSWORD)
    users = await store.list()
    assert [u.username for u in users] == ["ivan", "maria", "zoya"]
    assert all(u.created_at.utcoffset() == timedelta(0) for u in users)
