"""uncancelled: a write started before a cancellation finishes before the cancellation goes on."""

from __future__ import annotations

import asyncio
import logging

import pytest

from appliance.cameras.uncancelled import uncancelled


async def test_cancelled_caller_waits_for_the_write_then_is_cancelled() -> None:
    steps: list[str] = []

    async def write() -> int:
        await asyncio.sleep(0.05)
        steps.append("committed")
        return 1

    async def component() -> None:
        await uncancelled(write())
        steps.append("went on")  # never: it was cancelled

    task = asyncio.create_task(component())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps == ["committed"]


async def test_result_and_errors_pass_through_without_cancellation() -> None:
    async def ok() -> str:
        return "row"

    async def fails() -> None:
        raise ValueError("database is locked")

    assert await uncancelled(ok()) == "row"
    with pytest.raises(ValueError, match="locked"):
        await uncancelled(fails())


async def test_an_error_after_the_cancellation_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def fails_late() -> None:
        await asyncio.sleep(0.05)
        raise OSError("disk gone")

    task = asyncio.create_task(uncancelled(fails_late()))
    await asyncio.sleep(0.01)
    task.cancel()
    with caplog.at_level(logging.ERROR), pytest.raises(asyncio.CancelledError):
        await task
    assert any("while its component was stopping" in r.message and r.exc_info for r in caplog.records)
