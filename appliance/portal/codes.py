"""One-time codes: drawn at random, stored as a keyed hash, compared in constant time.

Why HMAC-SHA256 with a per-install key and not argon2: a 6-digit code has only a million values,
so any hash of it, however slow, is reversed offline in moments by whoever has the hash; a slow
hash would only cost the small box CPU on every attempt. What protects a code is that it lives
5 minutes and allows 5 tries, and that the stored digest is useless without the key, which lives
in a file of its own (`<data_dir>/keys/portal-codes.key`, owner-only), not in the database or its
backups. The digest also covers the request id, so equal codes of two requests look unrelated.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Final

from appliance.evidence.keys import (
    KEYS_DIRNAME,
    KeyFileError,
    ensure_keys_dir,
    read_private_file,
    write_private_file,
)

KEY_FILENAME: Final = "portal-codes.key"
KEY_BYTES: Final = 32
CODE_KEY_RISK: Final = "the one-time codes stored in the database could be recovered"


def new_code(length: int) -> str:
    """`length` random decimal digits (leading zeros kept)."""
    return f"{secrets.randbelow(10**length):0{length}d}"


def new_id() -> str:
    """A random id for a code request or a session: 128 bits as 32 hex characters."""
    return secrets.token_hex(16)


class CodeHasher:
    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise ValueError(f"the code key must have at least {KEY_BYTES} bytes")
        self._key = key

    def digest(self, request_id: str, code: str) -> str:
        return hmac.new(self._key, f"{request_id}:{code}".encode(), hashlib.sha256).hexdigest()

    def matches(self, request_id: str, code: str, digest: str) -> bool:
        return hmac.compare_digest(self.digest(request_id, code).encode(), digest.encode())


def token_digest(token: str) -> str:
    """SHA-256 of a random cookie token (256 bits: no key needed to make it unguessable)."""
    return hashlib.sha256(token.encode()).hexdigest()


def load_or_create_code_key(data_dir: Path) -> bytes:
    path = data_dir / KEYS_DIRNAME / KEY_FILENAME
    try:
        ensure_keys_dir(path.parent)
        if not path.exists():
            write_private_file(path, secrets.token_bytes(KEY_BYTES))
        key = read_private_file(path, CODE_KEY_RISK)
    except OSError as exc:
        raise KeyFileError(
            f"cannot use the portal's code key {path} ({exc.strerror}); check that {data_dir} is writable by the "
            "user running the appliance"
        ) from None
    if len(key) < KEY_BYTES:
        raise KeyFileError(f"{path} is damaged (too short); delete it and restart: a new key is made")
    return key
