"""The appliance's Ed25519 key file: created once, owner-only, refused when others can read it."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.evidence.keys import (
    KeyFileError,
    KeyFileMissing,
    key_path,
    load_key,
    load_or_create_key,
    public_key_fingerprint,
    public_key_pem,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    # The most permissive umask a service could run with: the key must still be owner-only.
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_first_use_creates_an_owner_only_key(tmp_path: Path, loose_umask: None) -> None:
    data_dir = tmp_path / "data"
    key = load_or_create_key(data_dir)
    path = key_path(data_dir)
    assert path == data_dir / "keys" / "appliance-ed25519.pem"
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    # The same key on every later start, and for commands that only read it.
    assert public_key_fingerprint(load_or_create_key(data_dir)) == public_key_fingerprint(key)
    assert public_key_fingerprint(load_key(data_dir)) == public_key_fingerprint(key)


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_or_create_key(tmp_path)
    path = key_path(tmp_path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match=rf"mode 644.*`chmod 600 {path}`"):
        load_or_create_key(tmp_path)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key(tmp_path)
    path.chmod(0o600)
    load_key(tmp_path)


def test_keys_directory_open_to_others_is_refused(tmp_path: Path) -> None:
    load_or_create_key(tmp_path)
    key_path(tmp_path).parent.chmod(0o755)
    with pytest.raises(KeyFileError, match="chmod 700"):
        load_or_create_key(tmp_path)


def test_symlink_in_place_of_the_key_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    load_or_create_key(elsewhere)
    load_or_create_key(tmp_path)
    path = key_path(tmp_path)
    path.unlink()
    path.symlink_to(key_path(elsewhere))
    with pytest.raises(KeyFileError):
        load_key(tmp_path)


def test_damaged_key_is_refused_not_replaced(tmp_path: Path) -> None:
    load_or_create_key(tmp_path)
    path = key_path(tmp_path)
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyFileError, match="restore it from a backup"):
        load_or_create_key(tmp_path)
    assert b"garbage" in path.read_bytes()


def test_missing_key_is_not_created_by_load_key(tmp_path: Path) -> None:
    with pytest.raises(KeyFileMissing, match="created when the appliance first starts"):
        load_key(tmp_path)
    assert not key_path(tmp_path).exists()


def test_processes_starting_together_end_up_with_one_key(tmp_path: Path) -> None:
    start = threading.Barrier(4)
    fingerprints: list[str] = []

    def first_start() -> None:
        start.wait()
        fingerprints.append(public_key_fingerprint(load_or_create_key(tmp_path)))

    threads = [threading.Thread(target=first_start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fingerprints) == 4 and len(set(fingerprints)) == 1
    assert public_key_fingerprint(load_key(tmp_path)) == fingerprints[0]


def test_fingerprint_and_public_pem(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert public_key_fingerprint(key) == hashlib.sha256(raw).hexdigest()
    assert public_key_fingerprint(key.public_key()) == public_key_fingerprint(key)
    pem = public_key_pem(key)
    assert b"PRIVATE" not in pem
    public = serialization.load_pem_public_key(pem)
    assert isinstance(public, Ed25519PublicKey)
    public.verify(key.sign(b"export"), b"export")
