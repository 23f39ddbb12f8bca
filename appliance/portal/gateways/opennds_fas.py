"""openNDS's forwarding-authentication (FAS) formats, as openNDS 9.x writes and reads them. Pure.

- Level 1: `?fas=` is base64 of "name=value, name=value, ..." (clientip, clientmac, hid, gatewayname,
  gatewayaddress, originurl, ...). Anyone can write that, so nothing in it is proof of anything,
  except that `hid` (sha256 of the client's secret token) is what the router will check: the
  portal answers `tok = sha256(hid + faskey)` and the router lets in only the client whose hid
  that is, whatever MAC the query claimed.
- Level 3: the same string encrypted with AES-256-CBC under faskey (`?fas=...&iv=...`), as
  PHP's openssl_encrypt does it: the key is faskey's bytes padded with NULs to 32 (longer keys
  cut), the IV is the 16 characters of `iv` taken as bytes, and the ciphertext is base64-encoded
  twice. Without faskey nobody can write one that decrypts to well-formed parameters.
- Level 3's authmon: the router polls the FAS with `auth_get`; the FAS answers "*" followed by
  URL-encoded entries "rhid minutes up_kbit down_kbit up_quota_kB down_quota_kB custom".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from appliance.portal.gateways.addresses import normalise_ip, normalise_mac
from appliance.portal.gateways.base import Grant

SEPARATOR: Final = ", "
AES_KEY_BYTES: Final = 32
IV_LENGTH: Final = 16
HID_PATTERN: Final = re.compile(r"^[0-9a-f]{64}$")
MAX_FAS_LENGTH: Final = 8192


class FasError(ValueError):
    """The parameters are not what openNDS sends (forged, cut, or another faskey)."""


@dataclass(frozen=True)
class FasParams:
    hid: str
    clientmac: str
    clientip: str
    gatewayname: str
    gatewayaddress: str
    authdir: str | None
    originurl: str | None


def rhid(hid: str, faskey: str) -> str:
    """What the router expects back as `tok`: sha256 of the hid and faskey, in hex."""
    return hashlib.sha256((hid + faskey).encode()).hexdigest()


def gateway_hash(gatewayname: str) -> str:
    """The `gatewayhash` authmon sends: sha256 of the (URL-encoded) gateway name, in hex."""
    return hashlib.sha256(gatewayname.encode()).hexdigest()


def _b64(text: str) -> bytes:
    # Query parsing turns an unencoded "+" of base64 into a space; openNDS does not encode it.
    try:
        return base64.b64decode(text.replace(" ", "+"), validate=True)
    except (binascii.Error, ValueError):
        raise FasError("not base64") from None


def parse_fields(text: str) -> FasParams:
    fields: dict[str, str] = {}
    for item in text.split(SEPARATOR):
        name, sep, value = item.partition("=")
        if sep and name not in fields:
            fields[name] = value
    hid = fields.get("hid", "").lower()
    mac = normalise_mac(fields.get("clientmac", ""))
    ip = normalise_ip(fields.get("clientip", ""))
    if not HID_PATTERN.match(hid) or mac is None or ip is None or not fields.get("gatewayaddress"):
        raise FasError("hid, clientmac, clientip or gatewayaddress missing or malformed")
    return FasParams(
        hid=hid,
        clientmac=mac,
        clientip=ip,
        gatewayname=fields.get("gatewayname", ""),
        gatewayaddress=fields["gatewayaddress"],
        authdir=fields.get("authdir"),
        originurl=unquote(fields["originurl"]) if "originurl" in fields else None,
    )


def decode_level1(fas: str) -> FasParams:
    if len(fas) > MAX_FAS_LENGTH:
        raise FasError("too long")
    try:
        return parse_fields(_b64(fas).decode())
    except UnicodeDecodeError:
        raise FasError("not text") from None


def _aes_key(faskey: str) -> bytes:
    return faskey.encode()[:AES_KEY_BYTES].ljust(AES_KEY_BYTES, b"\0")


def decrypt_level3(fas: str, iv: str, faskey: str) -> FasParams:
    if len(fas) > MAX_FAS_LENGTH or len(iv.encode()) != IV_LENGTH:
        raise FasError("fas too long or iv not 16 characters")
    ciphertext = _b64(_b64(fas).decode("ascii", errors="replace"))
    if not ciphertext or len(ciphertext) % 16:
        raise FasError("not whole AES blocks")
    decryptor = Cipher(algorithms.AES(_aes_key(faskey)), modes.CBC(iv.encode())).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
        return parse_fields(plain.decode())
    except (ValueError, UnicodeDecodeError):
        raise FasError("does not decrypt with this faskey") from None


def authmon_entry(rhid_hex: str, grant: Grant, custom: str) -> str:
    """One line of the auth list: what `ndsctl auth` gets for this client (0 is 'no limit').

    openNDS has one quota per direction; the grant's total is put on each, so a guest can move up
    to the quota each way. Its idle timeout is the router's own authidletimeout."""
    minutes = max(1, math.ceil(grant.session_timeout_s / 60))
    quota_kb = 0 if grant.quota_bytes is None else max(1, math.ceil(grant.quota_bytes / 1024))
    fields = (rhid_hex, minutes, grant.up_kbit_s or 0, grant.down_kbit_s or 0, quota_kb, quota_kb, custom)
    return " ".join(str(f) for f in fields)


def auth_list(entries: list[str]) -> str:
    return " ".join(["*", *(quote(e, safe="") for e in entries)])


def acked_rhids(payload: str) -> set[str]:
    """The rhids of an authmon ack list ("* rhid rhid ..."), in whatever lines or spaces it comes."""
    return {word for word in payload.split() if HID_PATTERN.match(word)}
