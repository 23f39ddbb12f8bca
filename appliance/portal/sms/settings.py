"""`[portal.sms]`: the SMS provider that sends guests their one-time codes.

One provider at a time: SMS.ru or SMSC.ru (HTTP APIs), any other HTTP API described by a
template (`[portal.sms.http]`), or a USB modem driven by Gammu SMSD through its files spool
(`[portal.sms.gammu]`). The provider's key and password may be inline, in a file (`*_file`) or
in an environment variable (`*_env`); they are registered with the log filter at start.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from appliance.settings_base import StrictModel

Provider = Literal["none", "smsru", "smsc", "http", "gammu"]

DEFAULT_BASE_URLS: Final[dict[str, str]] = {"smsru": "https://sms.ru", "smsc": "https://smsc.ru"}

TEMPLATE_FIELDS: Final = ("phone", "phone_digits", "text", "sender", "api_key")
"""What `{name}` in a template is replaced with: the number as +79991234567, the same without the
plus, the message, the sender name and the API key."""
TEMPLATE_FIELD = re.compile(r"\{(" + "|".join(TEMPLATE_FIELDS) + r")\}")
UNKNOWN_FIELD = re.compile(r"\{([a-z_]+)\}")

# Alphanumeric sender names are at most 11 characters (GSM 03.38); operators register them.
SENDER_PATTERN: Final = r"^[A-Za-z0-9 ._-]{1,11}$"


def _http_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what}: not an http:// or https:// address (got {value!r}); write e.g. https://sms.ru")
    return value


def _template(value: str, what: str) -> str:
    unknown = sorted({m for m in UNKNOWN_FIELD.findall(value) if m not in TEMPLATE_FIELDS})
    if unknown:
        raise ValueError(
            f"{what}: unknown placeholder {{{unknown[0]}}}; use {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
        )
    return value


class HttpTemplateSettings(StrictModel):
    """Any SMS gateway with an HTTP API: how to call it and how to tell that it took the message."""

    method: Literal["GET", "POST"] = Field("POST", description="HTTP method of the request.")
    url: str = Field(
        "",
        max_length=2000,
        description="Address, with placeholders {phone} {phone_digits} {text} {sender} {api_key} "
        "(URL-encoded where they are put), e.g. https://gw.example/send?to={phone_digits}&key={api_key}.",
    )
    body: str = Field(
        "",
        max_length=4000,
        description="Body of a POST (empty: none), with the same placeholders, escaped for body_type.",
    )
    body_type: Literal["form", "json", "text"] = Field(
        "form",
        description="form: application/x-www-form-urlencoded (placeholders URL-encoded); json: application/json "
        "(placeholders JSON-escaped, write them inside quotes); text: text/plain, as is.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description='Extra request headers, placeholders allowed, e.g. { Authorization = "Bearer {api_key}" }.',
    )
    success_pattern: str = Field(
        "",
        max_length=200,
        description="A regular expression the answer must contain for the message to count as sent, "
        'e.g. "\\"status\\": *\\"ok\\"". Empty: any 2xx answer counts.',
    )
    id_pattern: str = Field(
        "",
        max_length=200,
        description="A regular expression whose first group is the provider's message id (kept with the login).",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v:
            _http_url(v, "url")
        return _template(v, "url")

    @field_validator("body")
    @classmethod
    def _body(cls, v: str) -> str:
        return _template(v, "body")

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", name):
                raise ValueError(f"headers: {name!r} is not a header name; use letters, digits and '-'")
            if "\n" in value or "\r" in value:
                raise ValueError(f"headers.{name}: a header value cannot span lines")
            _template(value, f"headers.{name}")
        return v

    @field_validator("success_pattern", "id_pattern")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression ({exc}); check brackets and backslashes") from None
        return v

    @model_validator(mode="after")
    def _where_things_go(self) -> HttpTemplateSettings:
        if self.body and self.method == "GET":
            raise ValueError('body: a GET request carries no body; set method = "POST" or put the fields in url')
        return self

    def uses(self, field: str) -> bool:
        """Whether a placeholder appears anywhere in the request."""
        return any(f"{{{field}}}" in part for part in (self.url, self.body, *self.headers.values()))


class GammuSettings(StrictModel):
    """A USB modem driven by Gammu SMSD with its files backend (`Service = files`)."""

    outbox_dir: Path = Field(
        Path("/var/spool/gammu/outbox"),
        description="Gammu SMSD's OutboxPath. A relative path is taken inside data_dir. The appliance's user must "
        "be able to write there (and systemd's ReadWritePaths must list it).",
    )
    priority: str = Field("A", pattern=r"^[A-Z]$", description="Gammu's priority letter for codes (A is sent first).")
    flash: bool = Field(False, description="Send codes as flash SMS (shown at once, not stored on the phone).")


class SmsSettings(StrictModel):
    provider: Provider = Field(
        "none",
        description="none: no SMS (guests use vouchers); smsru: SMS.ru; smsc: SMSC.ru; http: another gateway "
        "described in [portal.sms.http]; gammu: a USB modem through Gammu SMSD ([portal.sms.gammu]).",
    )
    api_key: SecretStr | None = Field(
        None,
        description="SMS.ru: the api_id from the account's home page; SMSC.ru: an API key (instead of "
        "login and password); http: what {api_key} stands for.",
    )
    api_key_file: Path | None = None
    api_key_env: str | None = None
    login: str | None = Field(None, max_length=64, description="SMSC.ru login (with password, when no api_key).")
    password: SecretStr | None = Field(None, description="SMSC.ru password (or its API password).")
    password_file: Path | None = None
    password_env: str | None = None
    sender: str | None = Field(
        None,
        pattern=SENDER_PATTERN,
        description="Sender name registered with the provider (up to 11 letters/digits); empty: the provider's "
        "default. An unregistered name makes the provider refuse every message.",
    )
    base_url: str | None = Field(
        None,
        description="The provider's API address; empty: https://sms.ru or https://smsc.ru. Change it only for a "
        "reserve server (e.g. https://www2.smsc.ru) or a test stand-in.",
    )
    connect_timeout_s: float = Field(5.0, gt=0, le=60, description="How long to wait for the provider to answer.")
    timeout_s: float = Field(
        10.0, gt=0, le=120, description="Longest time one send may take; then the guest is told to try again."
    )
    http: HttpTemplateSettings = HttpTemplateSettings()
    gammu: GammuSettings = GammuSettings()

    @field_validator("base_url")
    @classmethod
    def _base(cls, v: str | None) -> str | None:
        return None if v is None else _http_url(v, "base_url").rstrip("/")

    @model_validator(mode="after")
    def _resolve(self) -> SmsSettings:
        # config.py imports this module, so its secret reader is imported when a file is validated.
        from appliance.config import _read_secret

        object.__setattr__(self, "api_key", _read_secret(self.api_key, self.api_key_file, self.api_key_env, "api_key"))
        object.__setattr__(
            self, "password", _read_secret(self.password, self.password_file, self.password_env, "password")
        )
        self._check_provider()
        return self

    def _check_provider(self) -> None:
        if self.provider == "smsru" and self.api_key is None:
            raise ValueError(
                'api_key: provider = "smsru" needs the api_id from your SMS.ru account (sms.ru, home page of the '
                "account); set api_key, api_key_file or api_key_env"
            )
        if self.provider == "smsc" and self.api_key is None and (self.login is None or self.password is None):
            raise ValueError(
                'login: provider = "smsc" needs login and password (or api_key) of your SMSC.ru account; '
                "set them, or api_key_file / password_file"
            )
        if self.provider == "http":
            if not self.http.url:
                raise ValueError('http.url: provider = "http" needs the address of the gateway\'s send request')
            if not (self.http.uses("phone") or self.http.uses("phone_digits")) or not self.http.uses("text"):
                raise ValueError(
                    "http: the request must carry the number ({phone} or {phone_digits}) and the message ({text}) "
                    "in url, body or headers"
                )
            if self.http.uses("api_key") and self.api_key is None:
                raise ValueError("api_key: the http template uses {api_key}; set api_key, api_key_file or api_key_env")

    @property
    def api_base(self) -> str:
        """The provider's API address (the configured one, else the provider's own)."""
        return self.base_url or DEFAULT_BASE_URLS.get(self.provider, "")

    def secret_values(self) -> tuple[str, ...]:
        """What logs must never show."""
        return tuple(s.get_secret_value() for s in (self.api_key, self.password) if s is not None)
