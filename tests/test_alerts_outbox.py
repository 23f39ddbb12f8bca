"""The alert outbox and the pause table on SQLite and PostgreSQL: idempotency, claiming, outcomes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.alerts.outbox import NewAlert, Outbox, payload_of
from appliance.alerts.pauses import Pauses
from appliance.storage.db import make_sessionmaker
from appliance.storage.models_alerts import PAUSE_ALL

T0 = datetime(2026, 11, 27, 20, 15, tzinfo=UTC)


@pytest.fixture
def outbox(db_engine: AsyncEngine) -> Outbox:
    return Outbox(make_sessionmaker(db_engine))


def motion(event: str, at: datetime, channel: str = "hook", part: str = "snapshot", **kw: object) -> NewAlert:
    return NewAlert(channel, event, part, "motion", at, "kassa", event, **kw)  # type: ignore[arg-type]


async def test_an_alert_is_stored_once_per_channel_and_part(outbox: Outbox) -> None:
    first = [motion("e1", T0), motion("e1", T0, channel="mqtt")]
    assert await outbox.add(first, T0) == 2
    # The producer seeing the same message again (or a replay) stores nothing new.
    assert await outbox.add([motion("e1", T0), motion("e1", T0, part="clip")], T0) == 1
    counts = {c.channel_id: c.by_state for c in await outbox.counts()}
    assert counts["hook"]["pending"] == 2 and counts["mqtt"]["pending"] == 1


async def test_newest_first_and_an_events_snapshot_before_its_clip(outbox: Outbox) -> None:
    await outbox.add([motion("old", T0)], T0)
    await outbox.add([motion("new", T0 + timedelta(minutes=5))], T0)
    await outbox.add([motion("old", T0, part="clip"), motion("new", T0 + timedelta(minutes=5), part="clip")], T0)
    now = T0 + timedelta(minutes=10)
    order = []
    while (row := await outbox.claim_next("hook", now)) is not None:
        order.append((row.source, row.part))
        assert await outbox.delivered(row.id, now)
    assert order == [("new", "snapshot"), ("new", "clip"), ("old", "snapshot"), ("old", "clip")]


async def test_a_row_is_claimed_by_one_dispatcher_only(outbox: Outbox) -> None:
    await outbox.add([motion(f"e{i}", T0 + timedelta(seconds=i)) for i in range(5)], T0)
    claims = await asyncio.gather(*(outbox.claim_next("hook", T0 + timedelta(minutes=1)) for _ in range(8)))
    ids = [row.id for row in claims if row is not None]
    assert len(ids) == len(set(ids)) == 5
    assert all(row.attempts == 1 and row.state == "sending" for row in claims if row is not None)


async def test_outcomes_move_only_a_claimed_row(outbox: Outbox) -> None:
    await outbox.add([motion("e1", T0, payload={"more_events": 3})], T0)
    row = await outbox.claim_next("hook", T0)
    assert row is not None and payload_of(row) == {"more_events": 3}
    assert await outbox.claim(row.id) is None  # already claimed
    later = T0 + timedelta(seconds=30)
    assert await outbox.retry_at(row.id, later, "HTTP 503 Service Unavailable")
    assert not await outbox.delivered(row.id)  # pending again: not ours to finish
    assert await outbox.claim_next("hook", T0 + timedelta(seconds=29)) is None  # not due yet
    assert await outbox.next_due("hook") == later
    again = await outbox.claim_next("hook", later)
    assert again is not None and again.id == row.id and again.attempts == 2
    assert await outbox.delivered(row.id, later)
    assert not await outbox.delivered(row.id, later)  # a second success changes nothing
    stored = await outbox.get(row.id)
    assert stored is not None and (stored.state, stored.delivered_at, stored.last_error) == ("delivered", later, None)
    assert await outbox.claim(row.id) is None  # never sent again


async def test_failed_rows_wait_for_a_person_and_release_after_a_crash(outbox: Outbox) -> None:
    await outbox.add([motion("e1", T0), motion("e2", T0 + timedelta(seconds=1))], T0)
    refused = await outbox.claim_next("hook", T0 + timedelta(minutes=1))
    assert refused is not None
    assert await outbox.failed(refused.id, "HTTP 401 Unauthorized: bad token")
    crashed = await outbox.claim_next("hook", T0 + timedelta(minutes=1))
    assert crashed is not None  # ...and the process died while sending it
    assert await outbox.claim_next("hook", T0 + timedelta(minutes=1)) is None
    assert await outbox.release(["other"]) == 0
    assert await outbox.release(["hook"]) == 1
    assert (await outbox.claim_next("hook", T0 + timedelta(minutes=1))).id == crashed.id  # type: ignore[union-attr]
    failures = await outbox.recent(states=["failed"])
    assert [(f.id, f.last_error) for f in failures] == [(refused.id, "HTTP 401 Unauthorized: bad token")]
    assert await outbox.retry_failed(channel_id="hook") == ["hook"]
    retried = await outbox.get(refused.id)
    assert retried is not None and (retried.state, retried.attempts) == ("pending", 0)


async def test_suppressed_rows_are_counted_not_sent(outbox: Outbox) -> None:
    await outbox.add([motion("e1", T0)], T0)
    await outbox.add([motion(f"s{i}", T0 + timedelta(seconds=10 + i), suppressed="cooldown") for i in range(3)], T0)
    await outbox.add([motion("p1", T0 + timedelta(seconds=20), suppressed="paused")], T0)
    assert await outbox.count_suppressed("hook", "kassa", T0, "cooldown") == 3
    assert await outbox.count_suppressed("hook", "kassa", T0 + timedelta(seconds=11), "cooldown") == 1
    assert [r.source for r in await outbox.alerted("e1")] == ["e1"]
    assert await outbox.alerted("s0") == []
    assert [r.source for r in await outbox.latest("snapshot", T0)] == ["e1"]
    assert len(await outbox.latest("snapshot", T0, suppressed=True)) == 4
    row = await outbox.claim_next("hook", T0 + timedelta(minutes=1))
    assert row is not None and row.source == "e1"
    assert await outbox.claim_next("hook", T0 + timedelta(minutes=1)) is None


async def test_prune_keeps_what_is_not_finished(outbox: Outbox) -> None:
    await outbox.add([motion("e1", T0), motion("e2", T0)], T0)
    row = await outbox.claim_next("hook", T0)
    assert row is not None
    await outbox.delivered(row.id, T0)
    assert await outbox.prune(T0 + timedelta(days=31)) == 1
    assert [c.by_state["pending"] for c in await outbox.counts()] == [1]


async def test_pauses_round_trip(db_engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(db_engine)
    pauses = Pauses(sessions)
    await pauses.set(PAUSE_ALL, None, "anna")
    await pauses.set("kassa", T0 + timedelta(minutes=30), "anna")
    fresh = Pauses(sessions)  # after a restart
    await fresh.load()
    assert fresh.muted("vhod", T0) == "paused"
    await fresh.clear(PAUSE_ALL)
    assert fresh.muted("vhod", T0) is None
    assert fresh.muted("kassa", T0 + timedelta(minutes=29)) == "suspended"
    assert fresh.muted("kassa", T0 + timedelta(minutes=30)) is None
    await fresh.set("kassa", T0 + timedelta(hours=1), "boris")  # changed, not added twice
    again = Pauses(sessions)
    await again.load()
    assert {s: (p.until_utc, p.set_by) for s, p in again.active(T0).items()} == {
        "kassa": (T0 + timedelta(hours=1), "boris")
    }
