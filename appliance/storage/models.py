"""The database schema as SQLAlchemy models.

The migrations in `migrations/versions/` create exactly this schema (a test compares them);
the models are what the code reads and writes through, never a way to create tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from appliance.evidence.chain import HASH_HEX_LENGTH, KINDS

# Every constraint gets a predictable name, so that a migration can drop or alter it on both
# SQLite (batch mode recreates tables by name) and PostgreSQL.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

USERNAME_MAX_LENGTH: Final = 32
ROLES: Final = ("admin", "viewer")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC, read back as an aware UTC datetime on every backend.

    SQLite keeps no offset (SQLAlchemy writes the wall-clock digits only), so values are
    converted to UTC before they are written; naive values are refused because their zone
    would be a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}; pass an aware one, e.g. datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """A staff console account. `username` is stored lowercase, which makes it unique regardless of case."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(f"role IN ({', '.join(repr(r) for r in ROLES)})", name="role"),
        CheckConstraint("username = lower(username)", name="username_lowercase"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)

    def __repr__(self) -> str:
        # Never the hash: reprs end up in logs and tracebacks.
        return f"User(id={self.id!r}, username={self.username!r}, role={self.role!r})"


# ---------------------------------------------------------------------------------- segments ---
# The footage index (migration 0002): one row per recorded segment file, written by the recorder
# (appliance/cameras/recorder.py) and repaired at start by appliance/cameras/reconcile.py.

CAMERA_ID_MAX_LENGTH: Final = 32
FOOTAGE_KEY_MAX_LENGTH: Final = 255
SEGMENT_CODECS: Final = ("h264", "hevc")
SEGMENT_STREAMS: Final = ("main",)
SEGMENT_RECORDING: Final = "recording"
"""Being written: end, size and hash are not known yet (a crash leaves it for reconciliation)."""
SEGMENT_COMPLETE: Final = "complete"
SEGMENT_MISSING: Final = "missing"
"""Was complete, but its file is gone and nobody recorded deleting it: kept to be reported."""
SEGMENT_STATUSES: Final = (SEGMENT_RECORDING, SEGMENT_COMPLETE, SEGMENT_MISSING)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Segment(Base):
    """A footage file (by its store key) and what is known about it; times are UTC."""

    __tablename__ = "segments"
    __table_args__ = (
        CheckConstraint(_one_of("codec", SEGMENT_CODECS), name="codec"),
        CheckConstraint(_one_of("stream", SEGMENT_STREAMS), name="stream"),
        CheckConstraint(_one_of("status", SEGMENT_STATUSES), name="status"),
        # A finished segment always has its end, size and hash: the evidence chain relies on them.
        CheckConstraint(
            f"status = '{SEGMENT_RECORDING}' OR "
            "(end_utc IS NOT NULL AND duration_s IS NOT NULL AND size_bytes IS NOT NULL AND sha256 IS NOT NULL)",
            name="finished_is_complete",
        ),
        Index("ix_segments_camera_id_start_utc", "camera_id", "start_utc"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(CAMERA_ID_MAX_LENGTH))
    stream: Mapped[str] = mapped_column(String(8), default="main")
    key: Mapped[str] = mapped_column(String(FOOTAGE_KEY_MAX_LENGTH), unique=True)
    start_utc: Mapped[datetime] = mapped_column(UTCDateTime)
    end_utc: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_s: Mapped[float | None] = mapped_column(Float)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    codec: Mapped[str] = mapped_column(String(8))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    has_motion: Mapped[bool] = mapped_column(Boolean, default=False)
    motion_heatmap: Mapped[bytes | None] = mapped_column(LargeBinary)
    """A 16×16 summary of where motion was, written by the analyser after the segment."""
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    sha256: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=SEGMENT_RECORDING)
    missing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"Segment(id={self.id!r}, key={self.key!r}, status={self.status!r})"


# --------------------------------------------------------------------------- end of segments ---


# ------------------------------------------------------------------------------- evidence ---
# The per-camera evidence hash chain and its signed heads (appliance/evidence/chain.py defines
# the record format). Rows are append-only; nothing in the application updates or deletes them.
# Object keys are footage store keys, as in `segments` above.

EVIDENCE_REASON_MAX_LENGTH: Final = 64
ED25519_SIGNATURE_HEX_LENGTH: Final = 128


class EvidenceRecord(Base):
    """One link of a camera's chain: a finalised segment or clip, or the deletion of one."""

    __tablename__ = "evidence_records"
    __table_args__ = (
        UniqueConstraint("camera_id", "seq"),
        CheckConstraint(f"kind IN ({', '.join(repr(k) for k in KINDS)})", name="kind"),
        CheckConstraint("seq >= 1", name="seq_positive"),
        # Verify selects a time range per camera, and retention finds an object's record by key.
        Index("ix_evidence_records_camera_id_recorded_at", "camera_id", "recorded_at"),
        Index("ix_evidence_records_camera_id_object_key", "camera_id", "object_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(CAMERA_ID_MAX_LENGTH))
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    object_key: Mapped[str] = mapped_column(String(FOOTAGE_KEY_MAX_LENGTH))
    sha256: Mapped[str] = mapped_column(String(HASH_HEX_LENGTH))
    size: Mapped[int] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String(EVIDENCE_REASON_MAX_LENGTH))
    prev_hash: Mapped[str] = mapped_column(String(HASH_HEX_LENGTH))
    record_hash: Mapped[str] = mapped_column(String(HASH_HEX_LENGTH))


class EvidenceSignature(Base):
    """An Ed25519 signature over a camera's chain head (`seq`, `head_hash`) at `signed_at`."""

    __tablename__ = "evidence_signatures"
    __table_args__ = (Index("ix_evidence_signatures_camera_id_seq", "camera_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(CAMERA_ID_MAX_LENGTH))
    seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(HASH_HEX_LENGTH))
    signature: Mapped[str] = mapped_column(String(ED25519_SIGNATURE_HEX_LENGTH))
    key_fingerprint: Mapped[str] = mapped_column(String(HASH_HEX_LENGTH))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)


# ------------------------------------------------------------------------ end of evidence ---


# ------------------------------------------------------------------------------------ events ---
# Motion and camera-health events (migration 0004), written by appliance/storage/events.py from
# the actions of appliance/cameras/events.py and by the clip builder (appliance/cameras/clips.py).
# Ids are `event_id_for(camera, start)`: deterministic, readable, unique per camera and start.

EVENT_ID_MAX_LENGTH: Final = 96
"""Room for `event_id_for` (camera id up to 32 + 21) and a suffix the pipeline adds to health events."""
EVENT_KINDS: Final = ("motion", "offline", "tamper_covered", "tamper_defocus", "tamper_scene_change")
EVENT_KIND_MAX_LENGTH: Final = 24
EVENT_REASON_MAX_LENGTH: Final = 24


class Event(Base):
    """One event of one camera; times are UTC. `end_utc` is NULL while the event is open."""

    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint(_one_of("kind", EVENT_KINDS), name="kind"),
        # A clip is recorded whole or not at all: alerts and exports rely on its hash.
        CheckConstraint(
            "clip_key IS NULL OR (clip_sha256 IS NOT NULL AND clip_size IS NOT NULL AND clip_duration_s IS NOT NULL)",
            name="clip_is_complete",
        ),
        CheckConstraint("end_utc IS NULL OR end_utc >= start_utc", name="ends_after_start"),
        Index("ix_events_camera_id_start_utc", "camera_id", "start_utc"),
    )

    id: Mapped[str] = mapped_column(String(EVENT_ID_MAX_LENGTH), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(CAMERA_ID_MAX_LENGTH))
    kind: Mapped[str] = mapped_column(String(EVENT_KIND_MAX_LENGTH))
    start_utc: Mapped[datetime] = mapped_column(UTCDateTime)
    end_utc: Mapped[datetime | None] = mapped_column(UTCDateTime)
    clip_from: Mapped[datetime] = mapped_column(UTCDateTime)
    clip_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    armed: Mapped[bool] = mapped_column(Boolean)
    peak_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    peak_score: Mapped[float | None] = mapped_column(Float)
    peak_boxes: Mapped[str | None] = mapped_column(Text)
    """JSON list of the motion boxes at the peak, each a list of four numbers as the tracker gave them."""
    # The JPEGs live in the row, not in files: they are written in the same transaction as the
    # event (an alert never points at a snapshot that is not there, a deleted event leaves no
    # orphan file), and they are small: a few tens of KB each (snapshots.py bounds their size).
    snapshot_jpeg: Mapped[bytes | None] = mapped_column(LargeBinary)
    thumbnail_jpeg: Mapped[bytes | None] = mapped_column(LargeBinary)
    end_reason: Mapped[str | None] = mapped_column(String(EVENT_REASON_MAX_LENGTH))
    clip_key: Mapped[str | None] = mapped_column(String(FOOTAGE_KEY_MAX_LENGTH))
    clip_sha256: Mapped[str | None] = mapped_column(String(64))
    clip_size: Mapped[int | None] = mapped_column(BigInteger)
    clip_duration_s: Mapped[float | None] = mapped_column(Float)
    rendition_key: Mapped[str | None] = mapped_column(String(FOOTAGE_KEY_MAX_LENGTH))
    """H.264 rendition of an H.265 clip, for browsers that cannot play H.265; the clip is the evidence."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        # Never the JPEG bytes: reprs end up in logs.
        return f"Event(id={self.id!r}, kind={self.kind!r}, start_utc={self.start_utc!r}, end_utc={self.end_utc!r})"


# ----------------------------------------------------------------------------- end of events ---


# Each feature keeps its tables in its own module; importing them here puts every table in
# Base.metadata, which Alembic and the schema test compare with the migrations.
from appliance.storage import (  # noqa: E402
    models_alerts,  # noqa: F401
    models_gateway,  # noqa: F401
    models_guests,  # noqa: F401
    models_holds,  # noqa: F401
    models_promotions,  # noqa: F401
    models_webpush,  # noqa: F401
)
