"""What an alert says, in the recipient's language: pure functions of the stored facts.

Texts are written when the alert is sent, not when it is stored, so an alert delayed by an outage
says how long ago it happened ("5 min ago"). Times are the store's local time; the date is added
when it is not today. Every alert ends with the store's name (an owner of several shops must
know which one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Final
from urllib.parse import quote

from appliance.web.i18n import Lang, Text

LATE_AFTER: Final = timedelta(seconds=60)
"""An alert sent this long after what it tells happened says how long ago that was."""
GB = 1024**3


def ru_plural(n: int, one: str, few: str, many: str) -> str:
    """The Russian noun form for n: 1 событие, 2 события, 5 событий (11-14 take `many`)."""
    if n % 10 == 1 and n % 100 != 11:
        return one
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return few
    return many


def age_text(age: timedelta, lang: Lang) -> str:
    """'5 мин назад' / '5 min ago'; hours and days for longer delays."""
    minutes = int(age.total_seconds() // 60)
    if minutes < 60:
        return f"{max(1, minutes)} мин назад" if lang == "ru" else f"{max(1, minutes)} min ago"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        if lang == "ru":
            return f"{hours} ч {minutes} мин назад" if minutes else f"{hours} ч назад"
        return f"{hours} h {minutes} min ago" if minutes else f"{hours} h ago"
    days = hours // 24
    return f"{days} {ru_plural(days, 'день', 'дня', 'дней')} назад" if lang == "ru" else f"{days} d ago"


def local_time(moment: datetime, tz: tzinfo, now: datetime) -> str:
    """23:40:05 today; 26.11.2026 23:40 another day (store's time)."""
    local = moment.astimezone(tz)
    if local.date() == now.astimezone(tz).date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%d.%m.%Y %H:%M")


def _size_gb(value: object, lang: Lang) -> str:
    if not isinstance(value, int | float):
        return "?"
    text = f"{value / GB:.1f}"
    return text.replace(".", ",") if lang == "ru" else text


TAMPER: Final = {
    "tamper_covered": Text("объектив закрыт", "the lens is covered"),
    "tamper_defocus": Text("изображение не в фокусе", "the picture is out of focus"),
    "tamper_scene_change": Text("камеру повернули или сдвинули", "the camera was turned or moved"),
}

_T: Final = {
    "motion.title": Text("Движение: {camera}", "Motion: {camera}"),
    "motion.body": Text("{camera}: движение в {time}.", "{camera}: motion at {time}."),
    "motion.more": Text(
        "После прошлого оповещения ещё {n} {events} — они не присылались по отдельности.",
        "{n} more {events} since the previous alert, not sent one by one.",
    ),
    "clip.title": Text("Видео: {camera}", "Video: {camera}"),
    "clip.body": Text("Запись движения в {time}.", "Recording of the motion at {time}."),
    "zones": Text("Движение в зоне {zones}.", "Motion in zone {zones}."),
    "clip.too_big": Text(
        "Видео больше, чем принимает этот канал: посмотрите его по ссылке.",
        "The video is larger than this channel accepts: watch it through the link.",
    ),
    "clip.missing": Text(
        "Видео приложить не удалось: посмотрите запись по ссылке или в консоли.",
        "The video could not be attached: watch the recording through the link or in the console.",
    ),
    "clip.link": Text(
        "Запись события готова: посмотрите её по ссылке.", "The recording is ready: watch it through the link."
    ),
    "offline.title": Text("Камера «{camera}» не в сети", "Camera “{camera}” is offline"),
    "offline.body": Text(
        "Нет видео с {time}, запись не идёт. Проверьте питание и сетевой кабель камеры.",
        "No video since {time}; nothing is recorded. Check the camera's power and network cable.",
    ),
    "online.title": Text("Камера «{camera}» снова в сети", "Camera “{camera}” is back online"),
    "online.body": Text("Видео снова идёт с {time}.", "Video is back since {time}."),
    "tamper.title": Text("Камера «{camera}»: {what}", "Camera “{camera}”: {what}"),
    "tamper.body": Text(
        "Замечено в {time}. Проверьте камеру: кто-то мог закрыть или развернуть её.",
        "Noticed at {time}. Check the camera: somebody may have covered or turned it.",
    ),
    "retention.title": Text("Записи хранятся меньше срока", "Footage is kept for less than planned"),
    "retention.body": Text(
        "Камера «{camera}»: записи до {time} удалены раньше срока, чтобы освободить место ({why}). "
        "Освободите диск, увеличьте квоту или сократите сроки хранения.",
        "Camera “{camera}”: footage before {time} was deleted early to make room ({why}). "
        "Free the disk, raise the quota or shorten the keep days.",
    ),
    "retention.quota": Text("достигнута квота", "the quota was reached"),
    "retention.free_space": Text("на диске мало места", "the disk is low on space"),
    "disk.title": Text("Диск почти заполнен", "The disk is nearly full"),
    "disk.body": Text(
        "Свободно {free} ГБ, а удалить больше нечего: остальные записи защищены. Нужно освободить ещё {missing} ГБ, "
        "иначе запись остановится. Снимите ненужные удержания записей или замените диск.",
        "{free} GB free and nothing more can be deleted: the rest of the footage is protected. {missing} GB more must "
        "be freed or recording stops. Release legal holds that are no longer needed or fit a larger disk.",
    ),
    "sms.title": Text("SMS-коды на сегодня закончились", "Today's SMS codes are used up"),
    "sms.body": Text(
        "Отправлено {sent} из {budget} SMS за {day}. Гости не получат код до полуночи: выдайте им ваучеры в консоли "
        "или увеличьте дневной лимит.",
        "{sent} of {budget} SMS sent on {day}. Guests get no code until midnight: hand out vouchers from the console "
        "or raise the daily budget.",
    ),
    "test.title": Text("Проверка оповещений", "Alert test"),
    "test.body": Text(
        "Это проверочное оповещение канала «{channel}». Раз вы его видите, оповещения доходят.",
        "This is a test alert of the channel “{channel}”. If you can read it, alerts arrive.",
    ),
    "late": Text("Доставлено с опозданием: это было {age}.", "Delivered late: this happened {age}."),
}


@dataclass(frozen=True)
class Facts:
    """What the stored alert row and the config know about an alert."""

    kind: str
    part: str
    occurred_utc: datetime
    store_name: str
    channel_id: str
    camera_name: str | None = None
    event_id: str | None = None
    payload: Mapping[str, Any] | None = None
    clip: str | None = None
    """For the clip part: 'attached', 'too_big', 'missing' or 'link' (the channel takes no files)."""


@dataclass(frozen=True)
class Texts:
    title: str
    body: str
    link: str | None


def event_link(console_url: str, event_id: str | None) -> str | None:
    if not console_url:
        return None
    return f"{console_url}/events/{quote(event_id, safe='')}" if event_id else f"{console_url}/"


def render(facts: Facts, lang: Lang, tz: tzinfo, now: datetime, console_url: str) -> Texts:
    p = facts.payload or {}
    camera = facts.camera_name or "?"
    when = local_time(facts.occurred_utc, tz, now)

    def t(key: str, **params: object) -> str:
        return _T[key].get(lang).format(**params)

    lines: list[str]
    kind = facts.kind
    if kind == "motion" and facts.part == "clip":
        title = t("clip.title", camera=camera)
        lines = [t("clip.body", time=when)]
        lines += _zones_line(p, t)
        if facts.clip in ("too_big", "missing", "link"):
            lines.append(t(f"clip.{facts.clip}"))
    elif kind == "motion":
        title = t("motion.title", camera=camera)
        lines = [t("motion.body", camera=camera, time=when), *_zones_line(p, t)]
        more = int(p.get("more_events", 0))
        if more:
            events = ru_plural(more, "событие", "события", "событий") if lang == "ru" else "events"
            if lang == "en" and more == 1:
                events = "event"
            lines.append(t("motion.more", n=more, events=events))
    elif kind == "camera_offline":
        title, lines = t("offline.title", camera=camera), [t("offline.body", time=when)]
    elif kind == "camera_online":
        title, lines = t("online.title", camera=camera), [t("online.body", time=when)]
    elif kind in TAMPER:
        title = t("tamper.title", camera=camera, what=TAMPER[kind].get(lang))
        lines = [t("tamper.body", time=when)]
    elif kind == "retention_shortened":
        kept = datetime.fromisoformat(str(p.get("oldest_kept_utc", facts.occurred_utc.isoformat())))
        why = _T.get(f"retention.{p.get('reason')}")
        lines = [
            t(
                "retention.body",
                camera=camera,
                time=local_time(kept, tz, now),
                why=why.get(lang) if why else str(p.get("reason", "")),
            )
        ]
        title = t("retention.title")
    elif kind == "disk_nearly_full":
        title = t("disk.title")
        lines = [
            t("disk.body", free=_size_gb(p.get("free_bytes"), lang), missing=_size_gb(p.get("missing_bytes"), lang))
        ]
    elif kind == "sms_budget_reached":
        day = date.fromisoformat(str(p["day"])) if "day" in p else facts.occurred_utc.astimezone(tz).date()
        title = t("sms.title")
        lines = [t("sms.body", sent=p.get("sent", "?"), budget=p.get("budget", "?"), day=day.strftime("%d.%m.%Y"))]
    elif kind == "test":
        title, lines = t("test.title"), [t("test.body", channel=facts.channel_id)]
    else:
        raise ValueError(f"no text for alert kind {kind!r}")
    age = now - facts.occurred_utc
    if age >= LATE_AFTER and kind != "test":
        lines.append(t("late", age=age_text(age, lang)))
    lines.append(facts.store_name)
    return Texts(title, "\n".join(lines), event_link(console_url, facts.event_id))


def _zones_line(payload: Mapping[str, Any], t: Callable[..., str]) -> list[str]:
    zones = payload.get("zones")
    return [t("zones", zones=", ".join(str(z) for z in zones))] if zones else []


def zones_hit(boxes: Sequence[Sequence[float]], zones: Sequence[Sequence[tuple[float, float]]]) -> list[int]:
    """Numbers (from 1, in config order) of the zones that hold the centre of a motion box."""
    hit = []
    for n, zone in enumerate(zones, start=1):
        if any(_inside(((b[0] + b[2]) / 2, (b[1] + b[3]) / 2), zone) for b in boxes if len(b) == 4):
            hit.append(n)
    return hit


def _inside(point: tuple[float, float], polygon: Sequence[tuple[float, float]]) -> bool:
    """Even-odd ray casting."""
    x, y = point
    inside = False
    for (x1, y1), (x2, y2) in zip(polygon, [*polygon[1:], polygon[0]], strict=True):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside
