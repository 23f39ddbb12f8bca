"""Keeping secrets out of everything a person or a log collector reads."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# user:password@ inside any URL-looking text, so that messages from libraries (FFmpeg, aiohttp)
# that echo a camera URL are masked too, not only the URLs we format ourselves.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@")
_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|passwd|pwd|token|key|secret|api_id)=)[^&\s]*")


def mask_url(url: str) -> str:
    """The URL with its password (and secret-looking query values) replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_text(url)
    if parts.password is None:
        return mask_text(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username}:{MASK}@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return mask_text(urlunsplit(parts._replace(netloc=netloc)))


def mask_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Free text with URL passwords, secret query values and the given literal secrets masked."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{MASK}", text)
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text
