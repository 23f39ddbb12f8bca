"""The appliance's Ed25519 signing key: created once at first start, readable by its owner only.

The key signs the evidence chain heads (and later, exports). Whoever can read it can forge
signatures, so a key file that group or others can read is refused rather than used: the
signatures made with it would prove nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import uuid
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEYS_DIRNAME: Final = "keys"
KEY_FILENAME: Final = "appliance-ed25519.pem"
KEY_FILE_MODE: Final = 0o600
KEYS_DIR_MODE: Final = 0o700
# Permission bits that let anyone but the owner in.
_NOT_OWNER_BITS: Final = stat.S_IRWXG | stat.S_IRWXO


class KeyFileError(Exception):
    """The key cannot be used; the message says why and what to do."""


class KeyFileMissing(KeyFileError):
    pass


def key_path(data_dir: Path) -> Path:
    return data_dir / KEYS_DIRNAME / KEY_FILENAME


SIGNATURE_RISK: Final = "signatures made with the appliance key could be forged"


def _refuse_if_open(path: Path, mode: int, fix: str, risk: str = SIGNATURE_RISK) -> None:
    if mode & _NOT_OWNER_BITS:
        raise KeyFileError(
            f"{path} is accessible to other users (mode {stat.S_IMODE(mode):o}), so {risk}; "
            f"run `{fix} {path}` and check who could have copied it"
        )


def ensure_keys_dir(directory: Path) -> None:
    """The keys folder (also of the VAPID key, appliance/alerts/vapid.py), owner-only."""
    try:
        directory.mkdir(mode=KEYS_DIR_MODE, parents=True)
    except FileExistsError:
        pass
    else:
        # mkdir's mode is reduced by the umask; set it exactly.
        directory.chmod(KEYS_DIR_MODE)
    _refuse_if_open(directory, directory.stat().st_mode, f"chmod {KEYS_DIR_MODE:o}")


def read_private_file(path: Path, risk: str = SIGNATURE_RISK) -> bytes:
    """The bytes of an owner-only regular file; `risk` says what others reading it could do."""
    # O_NOFOLLOW: a symlink planted in place of the key is refused, not followed.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise KeyFileError(f"{path} is not a regular file; move it away and restart to create a new key")
        _refuse_if_open(path, mode, f"chmod {KEY_FILE_MODE:o}", risk)
        return f.read()


def _read(path: Path) -> Ed25519PrivateKey:
    data = read_private_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(
            f"{path} is not a readable PEM private key ({exc}); restore it from a backup. Creating a new key "
            "would make the existing signatures unverifiable with it"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 key; restore the appliance's key")
    return key


def load_key(data_dir: Path) -> Ed25519PrivateKey:
    """The existing key, or KeyFileMissing (for commands that must not create one)."""
    path = key_path(data_dir)
    try:
        return _read(path)
    except FileNotFoundError:
        raise KeyFileMissing(
            f"the appliance key {path} does not exist; it is created when the appliance first starts"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot read the appliance key {path} ({exc.strerror}); check its owner") from None


def write_private_file(path: Path, pem: bytes) -> None:
    """Write a new key so that the file appears complete or not at all, and never replaces another."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, KEY_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), KEY_FILE_MODE)
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        # link() fails if the key exists: a process that started at the same moment keeps its key.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_or_create_key(data_dir: Path) -> Ed25519PrivateKey:
    """The appliance's key from `<data_dir>/keys/appliance-ed25519.pem`, created (0600) on first use."""
    path = key_path(data_dir)
    try:
        ensure_keys_dir(path.parent)
        if not path.exists():
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            write_private_file(path, pem)
        return _read(path)
    except OSError as exc:
        raise KeyFileError(
            f"cannot use the appliance key {path} ({exc.strerror}); check that {data_dir} exists and is "
            "writable by the user running the appliance"
        ) from None


def public_key_fingerprint(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Lowercase hex SHA-256 of the 32 raw public key bytes: how people and records name the key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_key_pem(key: Ed25519PrivateKey) -> bytes:
    """The public key as a SubjectPublicKeyInfo PEM, to hand over with exports."""
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
