"""The identity provider plug-in: a licensed identification service, or an ESIA (Gosuslugi)
partner, identifies the guest instead of the portal's own code, as Decree 758 allows when a
store buys identification from a licensed operator.

A provider is two steps of a browser redirect (the interface `IdentityProvider`):
1. `start_url(state, return_url, lang)`: where the portal sends the guest's browser, carrying a
   random `state` bound to the guest's visit and the portal's address to come back to;
2. `verify(params, state)`: the provider sent the browser back to `return_url` with its answer;
   the driver checks that the answer is the provider's, for this visit, and fresh, and says who
   the guest is: the confirmed mobile number (the person, as the identification log records
   guests) and the provider's own reference of the identification (an ESIA id, a case number).

One driver is built in, `SignedRedirect`: the provider answers with the query parameters
`state`, `phone` (E.164), `ref`, `ts` (Unix seconds) and `sig`, the hex HMAC-SHA256 of
"state\\nphone\\nref\\nts" under the key shared with it. A provider speaking another protocol
(OAuth 2.0, SAML) gets a driver of its own, or a small adapter on its side speaking this one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from appliance.logs import SECRETS
from appliance.portal.phones import PhoneRefused, parse_phone
from appliance.portal.settings import REFERENCE_PREFIX_MAX_LENGTH, ExternalIdentitySettings
from appliance.storage.models_guests import PROVIDER_ID_MAX_LENGTH

SIGNED_FIELDS: Final = ("state", "phone", "ref", "ts")
REF_MAX_LENGTH: Final = PROVIDER_ID_MAX_LENGTH - REFERENCE_PREFIX_MAX_LENGTH - 1
"""The provider's reference, kept with its prefix and a colon in the log's column."""
ANY_COUNTRY: Final = range(1, 1000)
"""The provider confirmed the number: the SMS allow-list (against pumping) has no say here."""


@dataclass(frozen=True)
class ExternalIdentity:
    phone_e164: str
    reference: str
    """The provider's reference of this identification, with the configured prefix (esia:…)."""


class IdentityRefused(Exception):
    """The answer cannot be trusted or used; the message (for the log) says why."""


class IdentityProvider(Protocol):
    name: str
    """What guests sign in with, as the button shows it."""

    def start_url(self, state: str, return_url: str, lang: str) -> str: ...

    def verify(self, params: Mapping[str, str], state: str) -> ExternalIdentity:
        """Who the answer identifies, or IdentityRefused."""
        ...


def signature(secret: str, values: Mapping[str, str]) -> str:
    """The provider's signature of an answer (also what a provider's adapter computes)."""
    message = "\n".join(values.get(name, "") for name in SIGNED_FIELDS).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SignedRedirect:
    def __init__(self, settings: ExternalIdentitySettings, clock: Callable[[], datetime] = _utcnow) -> None:
        if settings.secret is None or not settings.url:
            raise ValueError("[portal.login.external] needs url and secret")
        self.name = settings.name
        self._url = settings.url
        self._secret = settings.secret.get_secret_value()
        self._prefix = settings.reference_prefix
        self._max_age_s = settings.max_age_s
        self._clock = clock
        SECRETS.add(self._secret)

    def start_url(self, state: str, return_url: str, lang: str) -> str:
        parts = urlsplit(self._url)
        query = [*parse_qsl(parts.query), ("state", state), ("return_url", return_url), ("lang", lang)]
        return urlunsplit(parts._replace(query=urlencode(query)))

    def verify(self, params: Mapping[str, str], state: str) -> ExternalIdentity:
        values = {name: params.get(name, "") for name in SIGNED_FIELDS}
        sig = params.get("sig", "")
        if not hmac.compare_digest(values["state"].encode(), state.encode()):
            raise IdentityRefused("the answer is for another visit")
        if not hmac.compare_digest(sig.lower().encode(), signature(self._secret, values).encode()):
            raise IdentityRefused("the signature does not match (another key, or the answer was altered)")
        try:
            sent = int(values["ts"])
        except ValueError:
            raise IdentityRefused("ts is not a Unix time") from None
        age = self._clock().timestamp() - sent
        if abs(age) > self._max_age_s:
            raise IdentityRefused(f"the answer is {int(age)} s old; max_age_s is {self._max_age_s}")
        ref = values["ref"]
        if not ref or len(ref) > REF_MAX_LENGTH or not ref.isprintable():
            raise IdentityRefused(f"ref must be 1 to {REF_MAX_LENGTH} printable characters")
        try:
            phone = parse_phone(values["phone"], ANY_COUNTRY)
        except PhoneRefused as exc:
            raise IdentityRefused(f"phone is not a mobile number in E.164 ({exc.key})") from None
        return ExternalIdentity(phone.e164, f"{self._prefix}:{ref}")
