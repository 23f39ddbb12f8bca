"""Staff console accounts: creation, password changes and login checks.

Passwords are hashed with argon2id; hashing and verifying take tens of milliseconds of CPU, so
they run in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import builtins
import re
import secrets
from typing import Final

from argon2 import Parameters, PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.storage.models import ROLES, USERNAME_MAX_LENGTH, User, utcnow

USERNAME_MIN_LENGTH: Final = 3
USERNAME_PATTERN: Final = re.compile(rf"[a-z0-9._-]{{{USERNAME_MIN_LENGTH},{USERNAME_MAX_LENGTH}}}")
MIN_PASSWORD_LENGTH: Final = 10

# argon2id, 64 MiB, 3 passes, 4 lanes: RFC 9106's recommendation for machines that cannot give
# 2 GiB to every login (a small box in a shop). Hashes made with other parameters are upgraded
# to these at the next successful login.
DEFAULT_HASH_PARAMETERS: Final[Parameters] = profiles.RFC_9106_LOW_MEMORY


class UserError(Exception):
    """Bad input about an account; the message tells the person what to do instead."""


class InvalidUsername(UserError):
    pass


class WeakPassword(UserError):
    pass


class UserExists(UserError):
    pass


class UnknownUser(UserError):
    pass


def normalize_username(username: str) -> str:
    """The stored (lowercase) form of a username, or InvalidUsername."""
    name = username.lower()
    if not USERNAME_PATTERN.fullmatch(name):
        raise InvalidUsername(
            f"{username!r} is not a valid username: use {USERNAME_MIN_LENGTH} to {USERNAME_MAX_LENGTH} "
            "characters from a-z, 0-9, dot, underscore and hyphen"
        )
    return name


def check_password(username: str, password: str) -> None:
    """Raise WeakPassword if the password is not acceptable for this user (it is never echoed)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(
            f"the password is shorter than {MIN_PASSWORD_LENGTH} characters; choose a longer one "
            "(a few unrelated words are long and easy to remember)"
        )
    if password.lower() == username.lower():
        raise WeakPassword("the password is the same as the username; choose a different one")


class UserStore:
    """Accounts in the `users` table, reached through a session factory."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], hasher: PasswordHasher | None = None) -> None:
        self._sessions = sessions
        self._hasher = hasher or PasswordHasher.from_parameters(DEFAULT_HASH_PARAMETERS)
        self._dummy_hash: str | None = None

    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def _matches(self, password_hash: str, password: str) -> bool:
        try:
            return await asyncio.to_thread(self._hasher.verify, password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _dummy(self) -> str:
        # A hash with the current parameters, so that a login with an unknown name costs as much
        # as one with a wrong password and does not reveal which names exist.
        if self._dummy_hash is None:
            self._dummy_hash = await self._hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    async def add(self, username: str, password: str, role: str = "viewer") -> User:
        name = normalize_username(username)
        if role not in ROLES:
            raise UserError(f"unknown role {role!r}; use one of: {', '.join(ROLES)}")
        check_password(name, password)
        user = User(
            username=name, password_hash=await self._hash(password), role=role, created_at=utcnow(), disabled=False
        )
        async with self._sessions() as session:
            session.add(user)
            try:
                await session.commit()
            except IntegrityError:
                raise UserExists(
                    f"a user named {name!r} already exists (names ignore case); choose another name, "
                    "or change that user's password instead"
                ) from None
        return user

    async def _change(self, username: str, **values: object) -> None:
        async with self._sessions.begin() as session:
            changed = await session.scalar(
                update(User).where(User.username == username.lower()).values(**values).returning(User.id)
            )
        if changed is None:
            raise UnknownUser(f"there is no user named {username!r}; list them with `appliance user list`")

    async def set_password(self, username: str, password: str) -> None:
        check_password(username, password)
        await self._change(username, password_hash=await self._hash(password))

    async def set_disabled(self, username: str, disabled: bool) -> None:
        await self._change(username, disabled=disabled)

    async def list(self) -> builtins.list[User]:
        async with self._sessions() as session:
            return builtins.list(await session.scalars(select(User).order_by(User.username)))

    async def count(self) -> int:
        async with self._sessions() as session:
            return await session.scalar(select(func.count()).select_from(User)) or 0

    async def verify(self, username: str, password: str) -> User | None:
        """The user if the password is right and the account enabled, else None. Records the login."""
        async with self._sessions() as session:
            user = await session.scalar(select(User).where(User.username == username.lower()))
        if user is None:
            await self._matches(await self._dummy(), password)
            return None
        if not await self._matches(user.password_hash, password) or user.disabled:
            return None
        user.last_login_at = utcnow()
        if self._hasher.check_needs_rehash(user.password_hash):
            user.password_hash = await self._hash(password)
        async with self._sessions.begin() as session:
            await session.execute(
                update(User)
                .where(User.id == user.id)
                .values(last_login_at=user.last_login_at, password_hash=user.password_hash)
            )
        return user
