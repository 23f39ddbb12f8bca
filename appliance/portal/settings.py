"""`[portal.login]`: how guests identify themselves on the guest Wi-Fi (Decree 758).

The law sets two numbers here: the identification log is kept six months at least, and a guest is
identified (a confirmed phone number or an ID checked by staff) before the device gets through.
Everything else (code length, limits, session lengths) is the owner's choice within safe bounds.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from appliance.portal.gateways.settings import resolve_secret
from appliance.settings_base import StrictModel

LoginMethod = Literal["sms", "call", "voucher", "external"]

DEFAULT_METHODS: Final[tuple[LoginMethod, ...]] = ("sms", "voucher")
LEGAL_MIN_RETENTION_DAYS: Final = 183
"""Decree 758 / Law 97-FZ: the users' data and the time and volume of the service are kept six months."""
SSID_MAX_BYTES: Final = 32
"""IEEE 802.11: a network name (SSID) is at most 32 bytes."""
MAX_RETENTION_DAYS: Final = 1096
"""152-FZ: personal data goes once its purpose is over; three years is far beyond any lawful request."""


EXTERNAL_SECRET_MIN_LENGTH: Final = 32
REFERENCE_PREFIX_MAX_LENGTH: Final = 16


class ExternalIdentitySettings(StrictModel):
    """`[portal.login.external]`: a licensed identification service or an ESIA (Gosuslugi) partner
    that identifies guests on its own page and sends them back with a signed answer (method
    "external"; the contract is in docs/portal.md and appliance/portal/identity_provider.py)."""

    name: str = Field("", max_length=60, description="What guests sign in with, shown on the button (e.g. Госуслуги).")
    url: str = Field(
        "",
        max_length=1000,
        description="The provider's https page that identifies a guest; the portal adds state, return_url and lang "
        "to its query. Guests reach it before login: allow its address on the gateway (walled garden).",
    )
    reference_prefix: str = Field(
        "ext",
        pattern=rf"^[a-z][a-z0-9-]{{0,{REFERENCE_PREFIX_MAX_LENGTH - 1}}}$",
        description="Written before the provider's reference of each identification in the log (e.g. esia).",
    )
    secret: SecretStr | None = Field(
        None,
        description=f"The key shared with the provider that signs its answers; at least {EXTERNAL_SECRET_MIN_LENGTH} "
        "characters.",
    )
    secret_file: Path | None = None
    secret_env: str | None = None
    max_age_s: int = Field(
        300, ge=30, le=900, description="Seconds an answer of the provider stays valid (clocks may differ this much)."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v:
            return v
        parts = urlsplit(v)
        host = parts.hostname or ""
        if parts.scheme == "https" and host and not parts.username:
            return v
        if parts.scheme == "http" and _loopback(host):
            return v  # a provider's test double on this computer
        raise ValueError(f"write the provider's page as https://name/path (got {v!r})")

    @model_validator(mode="after")
    def _resolve(self) -> ExternalIdentitySettings:
        secret = resolve_secret(self, "secret")
        if secret is not None and len(secret.get_secret_value()) < EXTERNAL_SECRET_MIN_LENGTH:
            raise ValueError(
                f"secret: too short; use the key the provider gave, at least {EXTERNAL_SECRET_MIN_LENGTH} characters"
            )
        return self

    def problems(self) -> list[str]:
        """What is missing for the method "external" to work."""
        missing = [key for key, value in (("name", self.name), ("url", self.url)) if not value]
        if self.secret is None:
            missing.append("secret")
        return [f'external.{key}: required with the method "external"' for key in missing]


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LoginSettings(StrictModel):
    methods: list[LoginMethod] = Field(
        default_factory=lambda: list(DEFAULT_METHODS),
        min_length=1,
        description="Ways a guest may identify: sms (a one-time code by SMS), call (the guest calls a number, "
        "where the SMS provider offers it), voucher (a code staff issue after checking an ID), external (a licensed "
        "identification service or an ESIA partner, see [portal.login.external]).",
    )
    external: ExternalIdentitySettings = Field(
        default_factory=ExternalIdentitySettings,
        description="The identity provider of the method external.",
    )
    allowed_country_codes: list[int] = Field(
        default_factory=lambda: [7],
        min_length=1,
        description="Country calling codes whose mobile numbers may get codes (7: Russia and Kazakhstan). "
        "A short list keeps SMS pumping to premium foreign numbers out.",
    )
    code_length: int = Field(6, ge=4, le=8, description="Digits of a one-time code.")
    code_ttl_s: int = Field(300, ge=60, le=900, description="Seconds a code stays valid.")
    code_attempts: int = Field(5, ge=1, le=5, description="Wrong entries after which a code stops working.")
    resend_after_s: int = Field(
        60,
        ge=10,
        le=600,
        description="Pause before another code may go to the same number or device; doubles with each further "
        "code within limit_window_min (60, 120, 240 s ...).",
    )
    codes_per_number: int = Field(3, ge=1, le=20, description="Codes one phone number may get within limit_window_min.")
    codes_per_device: int = Field(
        5, ge=1, le=50, description="Codes one device (MAC address) may ask for within limit_window_min."
    )
    codes_per_ip: int = Field(10, ge=1, le=200, description="Codes one IP address may ask for within limit_window_min.")
    limit_window_min: int = Field(60, ge=5, le=1440, description="The window of the three limits above, in minutes.")
    daily_sms_budget: int = Field(
        300,
        ge=1,
        le=100_000,
        description="Most codes (SMS and calls) sent per day, store time; when reached the owner is alerted and "
        "guests are asked for a voucher. Kept in the database, so a restart does not reset it.",
    )
    session_timeout_min: int = Field(
        240, ge=5, le=1440, description="Longest access after one login, in minutes (keep it below the DHCP lease)."
    )
    idle_timeout_min: int = Field(
        30,
        ge=1,
        le=1440,
        description="Access ends after this many minutes without traffic (where the gateway can tell).",
    )
    remember_days: int = Field(
        30,
        ge=0,
        le=90,
        description="A device identified once may log in again without a new code for this many days; 0: never.",
    )
    log_retention_days: int = Field(
        LEGAL_MIN_RETENTION_DAYS,
        le=MAX_RETENTION_DAYS,
        description=f"Days the identification log is kept before it is deleted; at least {LEGAL_MIN_RETENTION_DAYS} "
        "(six months, Decree 758).",
    )
    consent_version: str = Field(
        "2025-09-01",
        pattern=r"^[A-Za-z0-9._-]{1,32}$",
        description="Version of the consent texts; recorded with each login. Change it when the texts change.",
    )
    operator_name: str = Field(
        "",
        max_length=200,
        description="The legal entity that processes the guests' data, as named in the consent "
        "(e.g. ООО «Ромашка», ИНН 7700000000); empty: the store name.",
    )
    operator_address: str = Field(
        "", max_length=300, description="The operator's address for withdrawing consent, shown in the consent text."
    )
    wifi_name: str = Field(
        "",
        max_length=32,
        description="The guest network's name (SSID) as phones list it, printed on vouchers (e.g. Ромашка-Гости). "
        'Empty: vouchers say "the guest Wi-Fi".',
    )
    public_url: str = Field(
        "",
        description="The portal's https address with a trusted certificate (e.g. https://wifi.shop.example), for the "
        "RFC 8908 API and DHCP option 114. Empty: pages link to the address the guest reached; phones then rely on "
        "their probes.",
    )

    @field_validator("log_retention_days")
    @classmethod
    def _legal_minimum(cls, v: int) -> int:
        if v < LEGAL_MIN_RETENTION_DAYS:
            raise ValueError(
                f"the identification log must be kept at least six months (Decree 758); "
                f"set {LEGAL_MIN_RETENTION_DAYS} or more (got {v})"
            )
        return v

    @field_validator("methods")
    @classmethod
    def _unique_methods(cls, v: list[LoginMethod]) -> list[LoginMethod]:
        if len(set(v)) != len(v):
            raise ValueError("a method is listed twice; list each of sms, call, voucher, external once")
        return v

    @field_validator("allowed_country_codes")
    @classmethod
    def _country_codes(cls, v: list[int]) -> list[int]:
        bad = [c for c in v if not 1 <= c <= 999]
        if bad:
            raise ValueError(f"country calling codes are 1 to 999 (got {bad}); e.g. 7 for Russia")
        return v

    @field_validator("wifi_name")
    @classmethod
    def _ssid(cls, v: str) -> str:
        v = v.strip()
        size = len(v.encode())
        if size > SSID_MAX_BYTES:
            raise ValueError(
                f"a Wi-Fi network name is at most {SSID_MAX_BYTES} bytes (got {size}; a Cyrillic letter takes 2); "
                "write it exactly as the access point broadcasts it"
            )
        return v

    @field_validator("public_url")
    @classmethod
    def _https(cls, v: str) -> str:
        if not v:
            return v
        parts = urlsplit(v)
        if parts.scheme != "https" or not parts.hostname or parts.username or parts.query or parts.fragment:
            raise ValueError(
                "write the portal's address as https://name.example (RFC 8908 needs TLS with a trusted "
                "certificate), or leave it empty"
            )
        return v.rstrip("/")

    @model_validator(mode="after")
    def _external_complete(self) -> LoginSettings:
        if "external" in self.methods and (problems := self.external.problems()):
            raise ValueError("; ".join(problems) + " (see [portal.login.external] in the example configuration)")
        return self

    @model_validator(mode="after")
    def _idle_within_session(self) -> LoginSettings:
        if self.idle_timeout_min > self.session_timeout_min:
            raise ValueError(
                f"idle_timeout_min ({self.idle_timeout_min}) is longer than session_timeout_min "
                f"({self.session_timeout_min}); make it shorter"
            )
        return self

    @property
    def session_timeout_s(self) -> int:
        return self.session_timeout_min * 60

    @property
    def idle_timeout_s(self) -> int:
        return self.idle_timeout_min * 60
