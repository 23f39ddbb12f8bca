"""The `[alerts]` section of the configuration file: where alerts go and the rules per recipient.

Each `[[alerts.channels]]` table is one recipient channel (an apprise URL, an MQTT broker, the
console's Web Push, a signed webhook) with its own language, cameras, alert kinds, armed schedule,
quiet hours and cooldown. Secrets (the channel's URL, which often holds a token, and the webhook's
signing key) may be inline, in a file (`*_file`) or in an environment variable (`*_env`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal, get_args
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from appliance.cameras.events import ArmSchedule
from appliance.settings_base import Slug, StrictModel

ChannelKind = Literal["apprise", "mqtt", "webpush", "webhook"]
AlertKind = Literal[
    "motion",
    "camera_offline",
    "camera_online",
    "tamper_covered",
    "tamper_defocus",
    "tamper_scene_change",
    "retention_shortened",
    "disk_nearly_full",
    "sms_budget_reached",
]
ALERT_KINDS: Final[tuple[AlertKind, ...]] = get_args(AlertKind)
CAMERA_KINDS: Final = frozenset(k for k in ALERT_KINDS if k.startswith(("motion", "camera_", "tamper_")))
"""Alerts about one camera: the owner's pause and a camera's suspension mute these."""

MB = 1024 * 1024
URL_KINDS: Final = frozenset({"apprise", "mqtt", "webhook"})
"""Channel kinds that need `url`."""
SECRET_PART_MIN_LENGTH: Final = 8
"""Parts of a channel URL at least this long are masked in logs as well as the whole URL:
apprise URLs carry tokens in their path (tgram://TOKEN/CHAT), not only in the password."""


def _schedule(value: str, what: str) -> str:
    try:
        ArmSchedule.parse(value)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    return value


class ChannelSettings(StrictModel):
    """One recipient channel and its rules."""

    id: Slug = Field(description="Short name of the channel, shown in the console and used by `appliance alerts test`.")
    kind: ChannelKind = Field(
        description="apprise: any service apprise knows (Telegram, ntfy, e-mail, ...); mqtt: a broker, with Home "
        "Assistant discovery; webpush: the console installed on the owner's phone; webhook: a signed JSON POST."
    )
    enabled: bool = Field(True, description="false keeps the channel in the file without sending to it.")
    url: SecretStr | None = Field(
        None,
        description="apprise URL (tgram://TOKEN/CHAT, ntfys://topic, mailtos://...), mqtt://user:pass@host:1883 or "
        "the webhook's https:// address. Not used by webpush.",
    )
    url_file: Path | None = None
    url_env: str | None = None
    secret: SecretStr | None = Field(
        None, description="Webhook only: the key that signs every request (HMAC-SHA256); at least 16 characters."
    )
    secret_file: Path | None = None
    secret_env: str | None = None
    language: Literal["ru", "en"] | None = Field(
        None, description="Language of the alert texts; default: [appliance] locale."
    )
    cameras: Literal["all"] | list[Slug] = Field(
        "all", description='"all", or the ids of the cameras whose alerts this channel gets.'
    )
    kinds: list[AlertKind] = Field(
        default_factory=lambda: list(ALERT_KINDS), description="Which alerts this channel gets (default: all)."
    )
    schedule: str = Field(
        "always",
        description="When motion alerts go to this channel, in the store's time: 'always', 'never' or e.g. "
        "'mon-fri 20:00-08:00; sat,sun 00:00-24:00' (only when the shop is closed). Other alerts always go.",
    )
    quiet_hours: str = Field(
        "never",
        description="Hours without alerts, same syntax (e.g. '23:00-07:00'): motion alerts are dropped, the others "
        "are held and sent when the quiet hours end.",
    )
    cooldown_s: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="After a motion alert of a camera, its next motion events within this time are not sent one "
        "by one: the next alert says how many there were.",
    )
    max_clip_seconds: float = Field(10.0, ge=1, le=60, description="Longest video clip attached to an alert.")
    max_clip_bytes: int = Field(
        8 * MB,
        ge=64 * 1024,
        le=100 * MB,
        description="Largest clip attached; a bigger one is replaced by the snapshot and a link to the event.",
    )
    topic_prefix: str = Field(
        "appliance", min_length=1, max_length=64, description="MQTT only: topics are <topic_prefix>/<camera>/..."
    )
    discovery_prefix: str = Field(
        "homeassistant", min_length=1, max_length=64, description="MQTT only: Home Assistant's discovery prefix."
    )

    @field_validator("schedule")
    @classmethod
    def _schedule_ok(cls, v: str) -> str:
        return _schedule(v, "schedule")

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_ok(cls, v: str) -> str:
        return _schedule(v, "quiet_hours")

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _topic(cls, v: str) -> str:
        if any(c in v for c in "#+") or v.startswith("/") or v.endswith("/"):
            raise ValueError(f"{v!r} is not a usable MQTT topic prefix; use letters, digits and '/' inside, no # or +")
        return v

    @model_validator(mode="after")
    def _resolve(self) -> ChannelSettings:
        # config.py imports this module, so its secret reader is imported when a file is validated.
        from appliance.config import _read_secret

        url = _read_secret(self.url, self.url_file, self.url_env, "url")
        secret = _read_secret(self.secret, self.secret_file, self.secret_env, "secret")
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "secret", secret)
        if self.kind in URL_KINDS and url is None:
            raise ValueError(
                f"url: a {self.kind} channel needs its address; set url, url_file or url_env "
                f"(config/appliance.example.toml shows one for each kind)"
            )
        if self.kind == "webhook":
            assert url is not None
            parts = urlsplit(url.get_secret_value())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("url: a webhook needs an http:// or https:// address, e.g. https://example.org/hook")
            if secret is None or len(secret.get_secret_value()) < 16:
                raise ValueError(
                    "secret: a webhook signs its requests with a key of at least 16 characters; set secret, "
                    "secret_file or secret_env (e.g. the output of: openssl rand -hex 32)"
                )
        if self.kind == "mqtt":
            assert url is not None
            if urlsplit(url.get_secret_value()).scheme not in ("mqtt", "mqtts"):
                raise ValueError("url: an mqtt channel needs mqtt://[user:password@]host[:port] (or mqtts://)")
        return self

    def wants(self, kind: str, camera_id: str | None) -> bool:
        """Whether alerts of `kind` (about `camera_id`, if any) go to this channel at all."""
        if not self.enabled or kind not in self.kinds:
            return False
        return camera_id is None or self.cameras == "all" or camera_id in self.cameras

    def secret_values(self) -> tuple[str, ...]:
        """What logs must never show: the URL, its password and its long parts, and the signing key."""
        out: list[str] = []
        if self.secret is not None:
            out.append(self.secret.get_secret_value())
        if self.url is not None:
            url = self.url.get_secret_value()
            out.append(url)
            try:
                parts = urlsplit(url)
                # An apprise URL's "host" is often the token itself (tgram://TOKEN/CHAT); a webhook's or
                # a broker's host is only an address, and masking it would hide what cannot be reached.
                out += [parts.netloc if self.kind == "apprise" else "", parts.password or ""]
                out += [p for p in parts.path.split("/") if len(p) >= SECRET_PART_MIN_LENGTH]
                out += [v for _, v in parse_qsl(parts.query) if len(v) >= SECRET_PART_MIN_LENGTH]
            except ValueError:
                pass  # not a URL apprise would take either; the whole value is masked
        return tuple(v for v in out if v)


class AlertsSection(StrictModel):
    console_url: str = Field(
        "",
        description="The console's address as the owner's phone reaches it (e.g. https://shop.example.org): alerts "
        "link to {console_url}/events/<id>. Empty: alerts carry no link.",
    )
    vapid_contact: str = Field(
        "",
        max_length=200,
        description="Web Push: how the push services (Google, Mozilla, Apple) can reach the appliance's owner, "
        "mailto:owner@example.org or an https:// page. Empty: console_url when it is https, else a placeholder "
        "that some push services may refuse.",
    )
    channels: list[ChannelSettings] = Field(default_factory=list, description="Where alerts go.")
    retry_initial_s: float = Field(
        5.0, gt=0, le=600, description="First wait before a failed delivery is tried again; it doubles each time."
    )
    retry_max_s: float = Field(600.0, gt=0, le=24 * 3600, description="Longest wait between two tries.")
    send_timeout_s: float = Field(30.0, gt=0, le=300, description="A delivery not done in this time is a failure.")
    notice_interval_h: float = Field(
        6.0,
        ge=0,
        le=168,
        description="'Disk nearly full' and 'retention shortened' are sent at most once in this many hours.",
    )
    keep_days: float = Field(30.0, ge=1, le=3650, description="Days the console keeps the alert history.")

    @field_validator("console_url")
    @classmethod
    def _console_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if v and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError(f"not an http(s) address (got {v!r}); write e.g. https://shop.example.org or leave empty")
        return v.rstrip("/")

    @field_validator("vapid_contact")
    @classmethod
    def _vapid_contact(cls, v: str) -> str:
        v = v.strip()
        if not v:
            return v
        if v.startswith("mailto:"):
            if "@" not in v.removeprefix("mailto:").strip("@"):
                raise ValueError(f"not an e-mail address (got {v!r}); write e.g. mailto:owner@example.org")
            return v
        parts = urlsplit(v)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(
                f"push services accept only a mailto: or https: contact (got {v!r}); write e.g. "
                "mailto:owner@example.org or https://shop.example.org"
            )
        return v

    @model_validator(mode="after")
    def _checks(self) -> AlertsSection:
        ids = [c.id for c in self.channels]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"channels: the id {twice[0]!r} is used twice; give every channel its own id")
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s must be at least retry_initial_s")
        return self

    def check_cameras(self, camera_ids: set[str]) -> None:
        """Every camera a channel names exists (called by the configuration's cross-checks)."""
        for n, channel in enumerate(self.channels):
            if channel.cameras == "all":
                continue
            unknown = [c for c in channel.cameras if c not in camera_ids]
            if unknown:
                known = ", ".join(sorted(camera_ids)) or "none configured"
                raise ValueError(
                    f"alerts.channels[{n}].cameras: no camera {unknown[0]!r} (cameras: {known}); "
                    'fix the id or write cameras = "all"'
                )
