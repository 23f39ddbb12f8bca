"""Supervisor: crashes restart with back-off without disturbing the other components; kill restarts
at once; stop is bounded by its timeout."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC

import pytest

from appliance.config import DaemonSection
from appliance.logs import SECRETS
from appliance.supervisor import Backoff, ComponentState, StopStage, Supervisor

INITIAL = 0.05
MAXIMUM = 0.2


@pytest.fixture
async def supervisors() -> AsyncIterator[list[Supervisor]]:
    """Supervisors a test creates are stopped at its end, whatever happened."""
    made: list[Supervisor] = []
    yield made
    for sup in made:
        await sup.stop(1.0)


@pytest.fixture
def make(supervisors: list[Supervisor]) -> Callable[..., Supervisor]:
    def factory(initial: float = INITIAL, maximum: float = MAXIMUM, healthy: float = 10.0) -> Supervisor:
        sup = Supervisor(initial, maximum, healthy, jitter=0.0)
        supervisors.append(sup)
        return sup

    return factory


async def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


class Ticker:
    """A healthy component: counts ticks and how many times it was started."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.starts = 0
        self.ticks: list[float] = []
        self.cleaned_up = 0

    async def run(self) -> None:
        self.starts += 1
        try:
            while True:
                self.ticks.append(time.monotonic())
                await asyncio.sleep(self.period)
        finally:
            self.cleaned_up += 1

    def longest_gap(self, since: float) -> float:
        ticks = [t for t in self.ticks if t >= since]
        return max(b - a for a, b in itertools.pairwise(ticks))


class Crasher:
    """Raises `crashes` times (after `run_for` seconds each), then runs quietly."""

    def __init__(self, crashes: int, run_for: float | Callable[[int], float] = 0.0, message: str = "boom") -> None:
        self.crashes = crashes
        self.run_for = run_for
        self.message = message
        self.starts: list[float] = []

    async def run(self) -> None:
        self.starts.append(time.monotonic())
        n = len(self.starts)
        if n <= self.crashes:
            run_for = self.run_for(n) if callable(self.run_for) else self.run_for
            await asyncio.sleep(run_for)
            raise RuntimeError(self.message)
        await asyncio.Event().wait()


def delays(caplog: pytest.LogCaptureFixture, component: str) -> list[float]:
    return [r.delay_s for r in caplog.records if getattr(r, "component", None) == component and hasattr(r, "delay_s")]


async def test_crashing_component_restarts_with_backoff_while_another_keeps_running(
    make: Callable[..., Supervisor], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="appliance.supervisor")
    sup = make()
    crasher, ticker = Crasher(crashes=4), Ticker()
    sup.add("cam-1", crasher.run)
    sup.add("portal", ticker.run)
    began = time.monotonic()
    sup.start()

    await wait_until(lambda: len(crasher.starts) == 5)
    gaps = [b - a for a, b in itertools.pairwise(crasher.starts)]
    # 0.05, 0.1, 0.2, then capped at 0.2; never sooner than the back-off allows.
    for gap, expected in zip(gaps, [0.05, 0.1, 0.2, 0.2], strict=True):
        assert expected <= gap < expected + 0.1
    # The other component was never restarted and never paused.
    assert ticker.starts == 1
    assert ticker.longest_gap(began) < 0.1

    status = {s.name: s for s in sup.status()}
    assert status["cam-1"].state is ComponentState.RUNNING
    assert status["cam-1"].restarts == 4
    assert status["cam-1"].last_error == "RuntimeError: boom"
    assert status["portal"].state is ComponentState.RUNNING
    assert status["portal"].restarts == 0
    assert status["portal"].last_error is None

    crash_logs = [r for r in caplog.records if r.getMessage().startswith("component crashed")]
    assert [getattr(r, "restarts", None) for r in crash_logs] == [1, 2, 3, 4]
    assert all(getattr(r, "component", None) == "cam-1" and r.exc_info for r in crash_logs)
    assert delays(caplog, "cam-1") == [0.05, 0.1, 0.2, 0.2]


async def test_status_while_in_backoff(make: Callable[..., Supervisor]) -> None:
    sup = make(initial=5.0, maximum=5.0)
    crasher = Crasher(crashes=1)
    sup.add("cam-1", crasher.run)
    sup.add("retention", Ticker().run)
    sup.start()
    await wait_until(lambda: sup.status()[0].state is ComponentState.BACKOFF)
    assert sup.summary() == "1/2 components running; backoff: cam-1"
    started = sup.status()[0].started_at
    assert started is not None and started.tzinfo is UTC


async def test_kill_restarts_at_once_and_runs_cleanup(make: Callable[..., Supervisor]) -> None:
    sup = make(initial=10.0, maximum=10.0)  # a kill must not wait for the back-off
    target, other = Ticker(), Ticker()
    sup.add("cam-1", target.run)
    sup.add("alerts", other.run)
    sup.start()
    await wait_until(lambda: target.starts == 1 and other.starts == 1)

    killed_at = time.monotonic()
    assert sup.kill("cam-1") is True
    await wait_until(lambda: target.starts == 2, timeout=1.0)

    assert time.monotonic() - killed_at < 0.5
    assert target.cleaned_up == 1  # the first instance saw the cancellation
    assert other.starts == 1 and other.cleaned_up == 0
    status = {s.name: s for s in sup.status()}
    assert status["cam-1"].state is ComponentState.RUNNING
    assert status["cam-1"].restarts == 1
    assert status["alerts"].restarts == 0


async def test_kill_cuts_a_backoff_short(make: Callable[..., Supervisor]) -> None:
    sup = make(initial=10.0, maximum=10.0)
    crasher = Crasher(crashes=1)
    sup.add("cam-1", crasher.run)
    sup.start()
    await wait_until(lambda: sup.status()[0].state is ComponentState.BACKOFF)
    assert sup.kill("cam-1") is True
    await wait_until(lambda: len(crasher.starts) == 2, timeout=1.0)
    assert sup.status()[0].state is ComponentState.RUNNING


async def test_kill_of_a_component_that_swallows_cancellation_still_restarts(
    make: Callable[..., Supervisor],
) -> None:
    starts = 0

    async def stubborn() -> None:
        nonlocal starts
        starts += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return  # flushes and returns instead of re-raising, as some components will

    sup = make(initial=10.0, maximum=10.0)
    sup.add("cam-1", stubborn)
    sup.start()
    await wait_until(lambda: starts == 1)
    sup.kill("cam-1")
    await wait_until(lambda: starts == 2, timeout=1.0)


async def test_kill_unknown_or_finished(make: Callable[..., Supervisor]) -> None:
    ran = asyncio.Event()

    async def one_shot() -> None:
        ran.set()

    sup = make()
    sup.add("sweep", one_shot)
    sup.start()
    await wait_until(lambda: ran.is_set() and sup.status()[0].state is ComponentState.STOPPED)
    assert sup.kill("sweep") is False
    with pytest.raises(KeyError, match=r"no component named 'nope' \(known: sweep\)"):
        sup.kill("nope")


async def test_normal_return_finishes_unless_restart_always(make: Callable[..., Supervisor]) -> None:
    runs = {"sweep": 0, "poller": 0}

    def returning(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            runs[name] += 1

        return run

    sup = make()
    sup.add("sweep", returning("sweep"))
    sup.add("poller", returning("poller"), restart="always")
    sup.start()
    await wait_until(lambda: runs["poller"] >= 3)
    status = {s.name: s for s in sup.status()}
    assert runs["sweep"] == 1
    assert status["sweep"].state is ComponentState.STOPPED
    assert status["sweep"].last_error is None
    assert status["poller"].restarts >= 2


async def test_backoff_resets_after_a_healthy_run(
    make: Callable[..., Supervisor], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="appliance.supervisor")
    # Crashes at once twice, then runs 0.3 s (longer than healthy_after) before crashing again.
    crasher = Crasher(crashes=4, run_for=lambda n: 0.3 if n == 3 else 0.0)
    sup = make(initial=0.05, maximum=1.0, healthy=0.2)
    sup.add("cam-1", crasher.run)
    sup.start()
    await wait_until(lambda: len(crasher.starts) == 5, timeout=3.0)
    assert delays(caplog, "cam-1") == [0.05, 0.1, 0.05, 0.1]


async def test_cancelled_from_outside_counts_as_a_crash(make: Callable[..., Supervisor]) -> None:
    starts = 0

    async def cancels_itself() -> None:
        nonlocal starts
        starts += 1
        if starts == 1:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
        await asyncio.Event().wait()

    sup = make()
    sup.add("console", cancels_itself)
    sup.start()
    await wait_until(lambda: starts == 2)
    assert sup.status()[0].last_error == "CancelledError"
    assert sup.status()[0].restarts == 1


async def test_last_error_hides_secrets(make: Callable[..., Supervisor]) -> None:
    SECRETS.add("s3cr3t-token")
    sup = make(initial=5.0, maximum=5.0)
    message = "rtsp://admin:hunter22@10.0.0.5/live refused; token s3cr3t-token"
    sup.add("cam-1", Crasher(1, message=message).run)
    sup.start()
    await wait_until(lambda: sup.status()[0].last_error is not None)
    error = sup.status()[0].last_error
    assert error is not None
    assert "hunter22" not in error and "s3cr3t-token" not in error
    assert "rtsp://admin:***@10.0.0.5/live" in error


async def test_stop_waits_for_cleanup_within_timeout(supervisors: list[Supervisor]) -> None:
    written: list[str] = []

    async def recorder() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.1)  # closing the open clip, committing its row
            written.append("clip closed")

    sup = Supervisor(INITIAL, MAXIMUM, 10.0)
    sup.add("cam-1", recorder)
    sup.add("alerts", Ticker().run)
    sup.start()
    await asyncio.sleep(0.02)
    left = await sup.stop(2.0)
    assert left == []
    assert written == ["clip closed"]
    assert {s.state for s in sup.status()} == {ComponentState.STOPPED}


async def test_stop_is_bounded_when_cleanup_is_slow_or_ignores_cancellation() -> None:
    release = asyncio.Event()  # lets the stragglers end once the test has seen them left behind

    async def slow_cleanup() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.wait_for(release.wait(), 5)

    async def ignores_cancel() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue

    ticker = Ticker()
    sup = Supervisor(INITIAL, MAXIMUM, 10.0)
    sup.add("export", slow_cleanup)
    sup.add("stubborn", ignores_cancel)
    sup.add("portal", ticker.run)
    sup.start()
    await asyncio.sleep(0.02)

    began = time.monotonic()
    left = await sup.stop(0.2)
    took = time.monotonic() - began

    assert 0.2 <= took < 0.4
    assert sorted(left) == ["export", "stubborn"]
    status = {s.name: s.state for s in sup.status()}
    assert status == {
        "export": ComponentState.FAILED,
        "stubborn": ComponentState.FAILED,
        "portal": ComponentState.STOPPED,
    }
    assert ticker.cleaned_up == 1

    release.set()
    keepers = [t for t in asyncio.all_tasks() if t.get_name().startswith("supervise:")]
    await asyncio.wait_for(asyncio.gather(*keepers), 1.0)


async def test_stop_during_backoff_returns_at_once(make: Callable[..., Supervisor]) -> None:
    sup = make(initial=10.0, maximum=10.0)
    sup.add("cam-1", Crasher(crashes=1).run)
    sup.start()
    await wait_until(lambda: sup.status()[0].state is ComponentState.BACKOFF)
    began = time.monotonic()
    assert await sup.stop(5.0) == []
    assert time.monotonic() - began < 0.1
    assert sup.status()[0].state is ComponentState.STOPPED
    with pytest.raises(RuntimeError, match="stopping"):
        sup.add("late", Ticker().run)


async def test_stop_right_after_start(make: Callable[..., Supervisor]) -> None:
    sup = make()
    ticker = Ticker()
    sup.add("cam-1", ticker.run)
    sup.start()
    assert await sup.stop(0.5) == []
    assert ticker.starts == 0
    assert sup.status()[0].state is ComponentState.STOPPED


async def test_cleanup_that_raises_marks_failed(make: Callable[..., Supervisor]) -> None:
    async def broken_cleanup() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            raise OSError(28, "No space left on device")

    sup = make()
    sup.add("cam-1", broken_cleanup)
    sup.start()
    await asyncio.sleep(0.02)
    assert await sup.stop(1.0) == []
    status = sup.status()[0]
    assert status.state is ComponentState.FAILED
    assert status.last_error == "OSError: [Errno 28] No space left on device"


async def test_added_after_start_runs_and_duplicates_are_refused(make: Callable[..., Supervisor]) -> None:
    sup = make()
    sup.start()
    late = Ticker()
    sup.add("cam-9", late.run)
    await wait_until(lambda: late.starts == 1)
    with pytest.raises(ValueError, match="already supervised"):
        sup.add("cam-9", late.run)


def test_from_config_and_bad_settings() -> None:
    sup = Supervisor.from_config(DaemonSection(restart_backoff_initial_s=2, restart_backoff_max_s=4))
    assert sup.status() == []
    with pytest.raises(ValueError, match="initial"):
        Supervisor(5.0, 1.0, 10.0)


def test_backoff_doubles_caps_and_resets() -> None:
    b = Backoff(0.05, 0.3, jitter=0.0)
    assert [b.next_delay() for _ in range(6)] == [0.05, 0.1, 0.2, 0.3, 0.3, 0.3]
    b.reset()
    assert b.next_delay() == 0.05


def test_backoff_jitter_only_shortens_and_spreads() -> None:
    b = Backoff(1.0, 1.0, jitter=0.2, rng=random.Random(7))
    samples = [b.next_delay() for _ in range(200)]
    assert all(0.8 <= d <= 1.0 for d in samples)
    assert max(samples) - min(samples) > 0.1  # actually spread, not a constant
    with pytest.raises(ValueError, match="jitter"):
        Backoff(1.0, 2.0, jitter=1.0)


async def test_stop_goes_stage_by_stage(make: Callable[..., Supervisor]) -> None:
    """Sources are gone before the recorders are asked to stop, the listeners go last."""
    order: list[str] = []

    def component(name: str, cleanup_s: float) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                order.append(f"{name} cancelled")
                await asyncio.sleep(cleanup_s)
                order.append(f"{name} done")

        return run

    sup = make()
    sup.add("console", component("console", 0.0), stage=StopStage.LISTENERS)
    sup.add("recorder", component("recorder", 0.05), stage=StopStage.RECORDERS)
    sup.add("pump", component("pump", 0.05))
    sup.start()
    await asyncio.sleep(0.02)
    assert await sup.stop(2.0) == []
    assert order == [
        "pump cancelled",
        "pump done",
        "recorder cancelled",
        "recorder done",
        "console cancelled",
        "console done",
    ]


async def test_a_slow_stage_does_not_hold_the_next_one_back_past_its_share(make: Callable[..., Supervisor]) -> None:
    recorder_stopped = asyncio.Event()

    async def slow_source() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(5)

    async def recorder() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            recorder_stopped.set()

    sup = make()
    sup.add("analyser", slow_source)
    sup.add("recorder", recorder, stage=StopStage.RECORDERS)
    sup.start()
    await asyncio.sleep(0.02)
    began = time.monotonic()
    left = await sup.stop(1.0)
    # The recorder was stopped once the analyser had used its share (half the time), and the
    # analyser was still waited for until the deadline.
    assert recorder_stopped.is_set()
    assert left == ["analyser"]
    assert 1.0 <= time.monotonic() - began < 1.3
