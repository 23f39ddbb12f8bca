"""The appliance's VAPID key (RFC 8292): created once at first start, readable by its owner only.

Browsers bind each push subscription to the public key the page gave them, and push services
accept a message only when its VAPID token is signed by that key. So the key must outlive
restarts (a new one would silence every subscribed phone until it subscribes again), and
whoever can read it could push notifications to the owner's phones as this appliance. It lives
beside the evidence key, with the same file rules (appliance/evidence/keys.py).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from appliance.evidence.keys import (
    KEYS_DIRNAME,
    KeyFileError,
    ensure_keys_dir,
    read_private_file,
    write_private_file,
)

VAPID_KEY_FILENAME: Final = "vapid-p256.pem"
_RISK: Final = "anyone who copied it could send notifications to the owner's phones as this appliance"


def vapid_key_path(data_dir: Path) -> Path:
    return data_dir / KEYS_DIRNAME / VAPID_KEY_FILENAME


def _parse(path: Path, data: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(
            f"{path} is not a readable PEM private key ({exc}); move it away and restart to create a new one "
            "(every phone then has to turn alerts on again on the console's Push page)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"{path} is not a P-256 key as Web Push needs; move it away and restart to create one")
    return key


def load_or_create_vapid_key(data_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The key from `<data_dir>/keys/vapid-p256.pem`, created (0600) on first use."""
    path = vapid_key_path(data_dir)
    try:
        ensure_keys_dir(path.parent)
        if not path.exists():
            pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            write_private_file(path, pem)
        return _parse(path, read_private_file(path, _RISK))
    except OSError as exc:
        raise KeyFileError(
            f"cannot use the Web Push key {path} ({exc.strerror}); check that {data_dir} exists and is "
            "writable by the user running the appliance"
        ) from None


def application_server_key(key: ec.EllipticCurvePrivateKey) -> str:
    """The public key as `PushManager.subscribe()` takes it: the uncompressed point, base64url without padding."""
    raw = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def vapid_signer(key: ec.EllipticCurvePrivateKey) -> Vapid02:
    """What pywebpush signs each request's `Authorization: vapid t=…, k=…` header with."""
    return Vapid02(private_key=key)
