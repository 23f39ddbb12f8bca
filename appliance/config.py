"""The one configuration file: a TOML document validated by pydantic models.

Every field carries a description (it is the reference the example file and README repeat) and
bounds; unknown keys are refused so that a typo never silently falls back to a default.
Secrets (camera passwords, tokens, keys) may be written inline, read from a file (`*_file`) or
from an environment variable (`*_env`); they are held as `SecretStr` so that neither `repr()`
nor an error message ever prints them.
"""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from appliance.alerts.settings import AlertsSection
from appliance.cameras.events import ArmSchedule, EventSettings
from appliance.cameras.motion_settings import MotionSettings, check_polygons
from appliance.cameras.retention import RetentionMode, RetentionPolicy
from appliance.portal.gateways.settings import GatewaySettings
from appliance.portal.settings import LoginSettings
from appliance.portal.sms.settings import SmsSettings
from appliance.redact import mask_url
from appliance.settings_base import Slug, StrictModel

RESERVED_CAMERA_IDS = frozenset({"clips"})


class ConfigError(Exception):
    """A configuration file that cannot be used. `problems` holds one line per bad key."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.source}: the configuration is not valid:"]
        lines += [f"  - {p}" for p in self.problems]
        lines.append("Fix the keys above (config/appliance.example.toml documents every key) and try again.")
        return "\n".join(lines)


_Model = StrictModel


def _read_secret(inline: SecretStr | None, file: Path | None, env: str | None, what: str) -> SecretStr | None:
    """One secret from at most one of its three sources."""
    given = [n for n, v in (("inline", inline), ("file", file), ("env", env)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"{what}: give only one of {what}, {what}_file, {what}_env")
    if file is not None:
        try:
            return SecretStr(file.read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ValueError(
                f"{what}_file: cannot read {file} ({exc.strerror}); check the path and permissions"
            ) from None
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise ValueError(f"{what}_env: the environment variable {env} is not set; set it or use {what}_file")
        return SecretStr(value)
    return inline


class ApplianceSection(_Model):
    name: str = Field("Магазин", min_length=1, max_length=80, description="Store name shown in alerts and pages.")
    timezone: str = Field("Europe/Moscow", description="IANA time zone for everything a person reads.")
    locale: Literal["ru", "en"] = Field("ru", description="Default language of pages and alerts.")
    data_dir: Path = Field(Path("/var/lib/appliance"), description="Where the database, keys and footage live.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}; use an IANA name such as 'Europe/Moscow'") from None
        return v


class DatabaseSection(_Model):
    url: str = Field(
        "",
        description="Empty: a SQLite file in data_dir. Or postgresql+asyncpg://user@host/db for a shared server.",
    )
    password: SecretStr | None = Field(None, description="PostgreSQL password, kept out of the URL.")
    password_file: Path | None = None
    password_env: str | None = None

    @field_validator("url")
    @classmethod
    def _known_driver(cls, v: str) -> str:
        if v and not v.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                f"unsupported database URL {mask_url(v)!r}; "
                "use sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user@host/dbname"
            )
        return v

    @model_validator(mode="after")
    def _resolve(self) -> DatabaseSection:
        object.__setattr__(
            self, "password", _read_secret(self.password, self.password_file, self.password_env, "password")
        )
        return self


class StorageSection(_Model):
    backend: Literal["local"] = Field("local", description="Where footage files go (S3 comes later).")
    footage_dir: Path | None = Field(None, description="Default: <data_dir>/footage.")


class ListenSection(_Model):
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=1, le=65535)


class ConsoleSection(ListenSection):
    enabled: bool = True
    port: int = Field(8080, ge=1, le=65535)
    session_hours: int = Field(12, ge=1, le=24 * 30, description="How long a staff login lasts.")


class PortalSection(ListenSection):
    enabled: bool = True
    port: int = Field(8081, ge=1, le=65535)
    login: LoginSettings = LoginSettings()
    sms: SmsSettings = SmsSettings()
    gateway: GatewaySettings = GatewaySettings()


class LoggingSection(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = Field("json", description="json for journald/log shipping, text for a terminal.")


class DaemonSection(_Model):
    shutdown_timeout_s: float = Field(8.0, gt=0, le=9.5, description="Time given to components to finish on SIGTERM.")
    restart_backoff_initial_s: float = Field(
        1.0, gt=0, le=60, description="First delay before a crashed component restarts."
    )
    restart_backoff_max_s: float = Field(30.0, gt=0, le=600, description="Longest delay between restarts.")
    healthy_after_s: float = Field(
        60.0, gt=0, description="A component that ran this long without crashing has its backoff reset."
    )


class RecordingSection(_Model):
    segment_seconds: float = Field(
        10.0, ge=2, le=60, description="Length of a recorded file; cut at the first keyframe after this."
    )
    quota_gb: float | None = Field(None, gt=0, description="Most footage to keep in all; empty: no quota.")
    min_free_gb: float = Field(
        2.0, ge=0, description="Free space kept on the footage disk; the oldest footage goes first to keep it."
    )
    retention_interval_s: float = Field(60.0, ge=5, le=3600, description="How often retention runs.")


class EventsConfig(_Model):
    min_motion_s: float = Field(
        0.25,
        ge=0,
        le=10,
        description="Motion must last this long, from its first frame, before an event starts.",
    )
    pre_roll_s: float = Field(5.0, ge=0, le=60, description="Footage before the event's start put into its clip.")
    post_roll_s: float = Field(10.0, ge=0, le=120, description="Footage after the last motion put into its clip.")
    merge_gap_s: float = Field(10.0, ge=0, le=300, description="Motion back within this gap continues the event.")
    max_event_s: float = Field(300.0, ge=30, le=3600, description="Longer activity is split into several events.")
    armed: str = Field(
        "always",
        description="When events raise alerts, in the store's time: 'always', 'never' or "
        "e.g. 'mon-fri 20:00-08:00; sat,sun 00:00-24:00'. Recording follows the retention mode.",
    )

    @field_validator("armed")
    @classmethod
    def _schedule(cls, v: str) -> str:
        ArmSchedule.parse(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> EventsConfig:
        self.settings()
        return self

    def settings(self) -> EventSettings:
        return EventSettings(
            min_motion_s=self.min_motion_s,
            pre_roll_s=self.pre_roll_s,
            post_roll_s=self.post_roll_s,
            merge_gap_s=self.merge_gap_s,
            max_event_s=self.max_event_s,
        )

    def schedule(self) -> ArmSchedule:
        return ArmSchedule.parse(self.armed)


class RetentionConfig(_Model):
    mode: RetentionMode = Field(
        RetentionMode.CONTINUOUS,
        description="continuous: keep everything; motion: keep footage with motion; events: only around events.",
    )
    continuous_days: float = Field(7.0, gt=0, le=3650, description="Days to keep footage without motion.")
    motion_days: float = Field(14.0, gt=0, le=3650, description="Days to keep footage with motion.")
    events_days: float = Field(30.0, gt=0, le=3650, description="Days to keep footage around events.")


CHECKED_FRAME: tuple[int, int] = (1280, 720)
"""The frame shape zones and masks are checked on at load (the usual 16:9; the analysis checks
again on the real one)."""


class CameraConfig(_Model):
    id: Slug = Field(description="Short identifier used in file names, URLs and MQTT topics.")
    name: str = Field(min_length=1, max_length=80, description="Name people read, e.g. 'Касса'.")
    enabled: bool = True
    main_url: str = Field(description="RTSP URL of the main (recorded) stream.")
    sub_url: str | None = Field(None, description="RTSP URL of the sub (analysed) stream; empty: analyse main.")
    username: str | None = Field(None, description="Camera login, if not in the URL.")
    password: SecretStr | None = None
    password_file: Path | None = None
    password_env: str | None = None
    motion: MotionSettings = Field(default_factory=MotionSettings, description="Motion detection tunables.")
    zones: list[list[tuple[float, float]]] = Field(
        default_factory=list, description="Polygons (x, y as fractions of the frame) where motion counts."
    )
    masks: list[list[tuple[float, float]]] = Field(
        default_factory=list, description="Polygons where motion is ignored (a TV screen, a street window)."
    )
    events: EventsConfig = Field(default_factory=EventsConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    offline_after_s: float = Field(
        120.0, ge=10, le=3600, description="A camera unreachable this long raises an 'offline' event."
    )

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in RESERVED_CAMERA_IDS:
            raise ValueError(f"{v!r} is used by the appliance itself (folder of event clips); choose another id")
        return v

    @field_validator("zones", "masks")
    @classmethod
    def _polygons(cls, v: list[list[tuple[float, float]]]) -> list[list[tuple[float, float]]]:
        check_polygons(v, "polygon")
        return v

    def retention_policy(self) -> RetentionPolicy:
        return RetentionPolicy(
            mode=self.retention.mode,
            continuous_days=self.retention.continuous_days,
            motion_days=self.retention.motion_days,
            events_days=self.retention.events_days,
            pre_roll_s=self.events.pre_roll_s,
            post_roll_s=self.events.post_roll_s,
        )

    @field_validator("main_url", "sub_url")
    @classmethod
    def _rtsp(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("rtsp", "rtsps") or not parts.hostname:
            raise ValueError(f"not an rtsp:// URL (got {mask_url(v)!r}); write rtsp://host:554/path")
        return v

    @model_validator(mode="after")
    def _something_watched(self) -> CameraConfig:
        if self.zones or self.masks:
            # Here, not at the first frame: there the mistake would only restart the analysis.
            # OpenCV is imported only for a camera with zones or masks.
            from appliance.cameras.motion import analysis_size, watched_areas

            width, height = analysis_size(*CHECKED_FRAME, self.motion.width)
            try:
                watched_areas(self.zones, self.masks, width, height)
            except ValueError as exc:
                raise ValueError(f"zones, masks: {exc}") from None
        return self

    @model_validator(mode="after")
    def _resolve(self) -> CameraConfig:
        object.__setattr__(
            self, "password", _read_secret(self.password, self.password_file, self.password_env, "password")
        )
        return self


class Config(_Model):
    appliance: ApplianceSection = ApplianceSection()
    database: DatabaseSection = DatabaseSection()
    storage: StorageSection = StorageSection()
    console: ConsoleSection = ConsoleSection()
    portal: PortalSection = PortalSection()
    logging: LoggingSection = LoggingSection()
    daemon: DaemonSection = DaemonSection()
    recording: RecordingSection = RecordingSection()
    alerts: AlertsSection = AlertsSection()
    cameras: list[CameraConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        seen: set[str] = set()
        for cam in self.cameras:
            if cam.id in seen:
                raise ValueError(f"two cameras share the id {cam.id!r}; every camera needs its own id")
            seen.add(cam.id)
        self.alerts.check_cameras(seen)
        if (
            self.console.enabled
            and self.portal.enabled
            and ((self.console.host, self.console.port) == (self.portal.host, self.portal.port))
        ):
            raise ValueError(
                "console and portal listen on the same address; the guest network must not reach the console"
            )
        return self

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{self.appliance.data_dir / 'appliance.db'}"

    @property
    def footage_dir(self) -> Path:
        return self.storage.footage_dir or self.appliance.data_dir / "footage"


_SECRET_KEYS = re.compile(r"(password|token|secret|key)", re.IGNORECASE)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-after", "function-before")):
            continue
        else:
            out += f".{part}" if out else part
    return out


def _format_error(err: Any) -> str:
    loc = _format_loc(tuple(err["loc"]))
    msg = str(err["msg"]).removeprefix("Value error, ")
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{loc}: unknown key; remove it or check its spelling"
    if kind == "missing":
        return f"{loc}: required key is missing"
    shown = ""
    if kind not in ("value_error",) and not _SECRET_KEYS.search(loc) and "input" in err:
        value = err["input"]
        if isinstance(value, str):
            value = mask_url(value)
        if not isinstance(value, dict | list):
            shown = f" (got {value!r})"
    return f"{loc or '(top level)'}: {msg}{shown}"


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_format_error(e) for e in exc.errors()]) from None


def load_config(path: Path) -> Config:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file ({exc.strerror}); check the path"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(path), ["the file is not UTF-8 text; save it as UTF-8"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"TOML syntax error: {exc}"]) from None
    return parse_config(data, str(path))
