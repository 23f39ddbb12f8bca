"""Supervised components: every camera, the alert dispatcher, the portal, the console and
retention run as asyncio tasks of one loop, and a crash in one never takes the others down.

Policy (modelled on systemd's Restart=):
- A component that raises is logged with its traceback and restarted after a back-off delay. The
  delay starts at `backoff_initial_s`, doubles on every crash in a row up to `backoff_max_s`, and
  goes back to the start once an instance has run `healthy_after_s` without crashing. The growing
  delay is the rate limit: a component that crashes at once on every start is retried every
  `backoff_max_s`, never in a busy loop, and never given up on (a camera that is unplugged for a
  day must come back by itself).
- A component that returns is finished and stays stopped (`restart="on-failure"`, the default):
  a one-shot job such as a start-up sweep simply ends. Long-running components either loop
  forever or are added with `restart="always"`, which restarts a normal return with the same
  back-off as a crash.
- `kill(name)` (tests, operators) cancels the running instance and starts a new one at once, with
  no back-off. `stop(timeout)` (shutdown) cancels every instance for good and waits a bounded time
  for their `finally` blocks to close clips and finish database writes.
- Shutdown goes in stages (`StopStage`), each cancelled only once the one before has finished:
  what produces work (stream pumps, analysers) stops first, so that the recorders finishing their
  segments and writing their rows have the CPU (the GIL) and the database to themselves; the
  evidence signer goes after the recorders, the web listeners last.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Literal

from appliance.config import DaemonSection
from appliance.logs import SECRETS
from appliance.redact import mask_text

logger = logging.getLogger(__name__)

# Each delay is shortened by a random part of up to this fraction, so that components that failed
# together (all cameras behind one switch that rebooted) do not all reconnect in the same instant.
BACKOFF_JITTER = 0.2

STAGE_SHARE = 0.5
"""At shutdown, a stage is waited for at most this part of the time left before the next stage is
stopped too (the stragglers are still waited for, until the deadline)."""

Restart = Literal["on-failure", "always"]


class StopStage(IntEnum):
    """When a component is stopped at shutdown: lower stages first, each waited for in turn."""

    SOURCES = 0  # stream pumps, analysers, health watchers, retention: they only make more work
    RECORDERS = 1  # finish their segments: index rows and evidence chain entries
    EVIDENCE = 2  # the signer, after the last chain entry
    LISTENERS = 3  # the console answers until the very end


class ComponentState(StrEnum):
    RUNNING = "running"
    BACKOFF = "backoff"  # crashed; waiting to be restarted
    STOPPED = "stopped"  # not started yet, returned normally, or stopped cleanly at shutdown
    FAILED = "failed"  # at shutdown, its clean-up raised or overran the time allowed


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: ComponentState
    restarts: int
    last_error: str | None
    started_at: datetime | None  # UTC start of the current (or last) instance


class Backoff:
    """Delays before restarts: initial, doubling, capped; minus jitter."""

    def __init__(
        self, initial_s: float, max_s: float, jitter: float = BACKOFF_JITTER, rng: random.Random | None = None
    ) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError(f"back-off needs 0 < initial ({initial_s}) <= max ({max_s})")
        if not 0 <= jitter < 1:
            raise ValueError(f"back-off jitter must be in [0, 1), got {jitter}")
        self._initial = initial_s
        self._max = max_s
        self._jitter = jitter
        # Not for security: jitter only spreads reconnects.
        self._rng = rng or random.Random()  # noqa: S311
        self._next = initial_s

    def next_delay(self) -> float:
        base = self._next
        self._next = min(self._next * 2, self._max)
        return base * (1 - self._jitter * self._rng.random())

    def reset(self) -> None:
        self._next = self._initial


class _Component:
    def __init__(
        self, name: str, run: Callable[[], Awaitable[None]], restart: Restart, backoff: Backoff, stage: StopStage
    ) -> None:
        self.name = name
        self.run = run
        self.restart: Restart = restart
        self.stage = stage
        self.backoff = backoff
        self.state = ComponentState.STOPPED
        self.restarts = 0
        self.last_error: str | None = None
        self.started_at: datetime | None = None
        self.instance: asyncio.Task[None] | None = None  # the component's own coroutine
        self.keeper: asyncio.Task[None] | None = None  # the loop that restarts it
        self.kill_requested = False
        self.wake = asyncio.Event()  # cuts a back-off wait short (kill or stop)

    def status(self) -> ComponentStatus:
        return ComponentStatus(self.name, self.state, self.restarts, self.last_error, self.started_at)


class Supervisor:
    def __init__(
        self,
        backoff_initial_s: float,
        backoff_max_s: float,
        healthy_after_s: float,
        *,
        jitter: float = BACKOFF_JITTER,
        rng: random.Random | None = None,
    ) -> None:
        self._new_backoff = functools.partial(Backoff, backoff_initial_s, backoff_max_s, jitter, rng)
        self._new_backoff()  # bad settings fail here rather than in the first add()
        self._healthy_after = healthy_after_s
        self._components: dict[str, _Component] = {}
        self._started = False
        self._stopping = False

    @classmethod
    def from_config(cls, section: DaemonSection) -> Supervisor:
        return cls(section.restart_backoff_initial_s, section.restart_backoff_max_s, section.healthy_after_s)

    def add(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        *,
        restart: Restart = "on-failure",
        stage: StopStage = StopStage.SOURCES,
    ) -> None:
        """Register a component; `run` is called anew for every (re)start. Added after start(): it
        starts at once. `stage`: when it is stopped at shutdown."""
        if name in self._components:
            raise ValueError(f"a component named {name!r} is already supervised; give each one its own name")
        if self._stopping:
            raise RuntimeError(f"cannot add {name!r}: the supervisor is stopping")
        comp = _Component(name, run, restart, self._new_backoff(), stage)
        self._components[name] = comp
        if self._started:
            self._launch(comp)

    def start(self) -> None:
        """Start every registered component. Call from inside the running event loop."""
        if self._started:
            raise RuntimeError("the supervisor is already started")
        self._started = True
        for comp in self._components.values():
            self._launch(comp)

    def status(self) -> list[ComponentStatus]:
        return [c.status() for c in self._components.values()]

    def summary(self) -> str:
        """One line for STATUS= and the console, e.g. '5/6 components running; backoff: cam-2'."""
        items = self.status()
        running = sum(1 for s in items if s.state is ComponentState.RUNNING)
        line = f"{running}/{len(items)} components running"
        for state in (ComponentState.BACKOFF, ComponentState.FAILED):
            names = [s.name for s in items if s.state is state]
            if names:
                line += f"; {state.value}: {', '.join(names)}"
        return line

    def kill(self, name: str) -> bool:
        """Cancel the current instance of `name` and start a new one at once (no back-off). A component
        waiting in back-off restarts now. False if it is finished, or the supervisor is stopping."""
        comp = self._get(name)
        if self._stopping or comp.keeper is None or comp.keeper.done():
            return False
        comp.kill_requested = True
        logger.warning("component killed on request; restarting it", extra={"component": name})
        if comp.instance is not None and not comp.instance.done():
            comp.instance.cancel()
        comp.wake.set()
        return True

    # A parameter rather than the caller's asyncio.timeout(): when time runs out, stop() still has to
    # name and mark the components left behind instead of being cancelled itself.
    async def stop(self, timeout: float) -> list[str]:  # noqa: ASYNC109
        """Cancel every component, stage by stage, and wait up to `timeout` seconds in all for their
        clean-up.

        Returns the names of those still busy when the time ran out (logged, marked failed); their
        tasks are left behind, so the caller should exit the process rather than wait for them.
        """
        self._stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        keepers: dict[asyncio.Task[None], _Component] = {}
        for stage in sorted({comp.stage for comp in self._components.values()}):
            for comp in self._components.values():
                if comp.stage is not stage:
                    continue
                comp.wake.set()
                if comp.instance is not None and not comp.instance.done():
                    comp.instance.cancel()
                if comp.keeper is not None and not comp.keeper.done():
                    keepers[comp.keeper] = comp
            busy = [task for task in keepers if not task.done()]
            if busy:
                # A stage that overruns its share is left finishing alongside the next: it must not
                # hold the recorders back until the deadline.
                await asyncio.wait(busy, timeout=max(0.0, deadline - loop.time()) * STAGE_SHARE)
        pending = [task for task in keepers if not task.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
            pending = list(still)
        late = [keepers[task] for task in pending]
        for comp in late:
            comp.state = ComponentState.FAILED
            logger.error(
                "component did not finish its clean-up in %.1f s; leaving it behind",
                timeout,
                extra={"component": comp.name, "stage": comp.stage.name.lower()},
            )
        return [comp.name for comp in late]

    def _get(self, name: str) -> _Component:
        try:
            return self._components[name]
        except KeyError:
            known = ", ".join(self._components) or "none"
            raise KeyError(f"no component named {name!r} (known: {known})") from None

    def _launch(self, comp: _Component) -> None:
        comp.keeper = asyncio.create_task(self._keep(comp), name=f"supervise:{comp.name}")

    async def _keep(self, comp: _Component) -> None:
        """Run `comp` until it finishes for good or the supervisor stops."""
        while not self._stopping:
            error, ran_s = await self._run_once(comp)
            if error is not None:
                comp.last_error = _describe(error)
            if self._stopping:
                self._log_shutdown(comp, error)
                return
            if comp.kill_requested:
                comp.restarts += 1
                continue
            if error is None and comp.restart == "on-failure":
                comp.state = ComponentState.STOPPED
                logger.info("component finished", extra={"component": comp.name, "ran_s": round(ran_s, 3)})
                return
            await self._back_off(comp, error, ran_s)
        comp.state = ComponentState.STOPPED

    async def _run_once(self, comp: _Component) -> tuple[BaseException | None, float]:
        """One instance of the component: what ended it (None: returned, or cancelled by us) and how
        long it ran."""
        loop = asyncio.get_running_loop()
        comp.kill_requested = False
        comp.wake.clear()
        comp.state = ComponentState.RUNNING
        comp.started_at = datetime.now(UTC)
        began = loop.time()
        comp.instance = asyncio.create_task(_call(comp.run), name=f"component:{comp.name}")
        error: BaseException | None = None
        try:
            await comp.instance
        except asyncio.CancelledError as exc:
            if _self_cancelled():
                raise  # the keeper itself is cancelled (the loop is shutting down)
            if not (comp.kill_requested or self._stopping):
                error = exc  # cancelled by someone else: as good as a crash
        except Exception as exc:
            error = exc
        return error, loop.time() - began

    async def _back_off(self, comp: _Component, error: BaseException | None, ran_s: float) -> None:
        if ran_s >= self._healthy_after:
            comp.backoff.reset()
        delay = comp.backoff.next_delay()
        comp.restarts += 1
        comp.state = ComponentState.BACKOFF
        fields = {
            "component": comp.name,
            "restarts": comp.restarts,
            "delay_s": round(delay, 3),
            "ran_s": round(ran_s, 3),
        }
        if error is None:
            logger.warning("component returned; restarting it in %.2f s", delay, extra=fields)
        else:
            logger.error("component crashed; restarting it in %.2f s", delay, exc_info=error, extra=fields)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await comp.wake.wait()
        if not self._stopping:
            logger.info("component restarting", extra={"component": comp.name, "restarts": comp.restarts})

    @staticmethod
    def _log_shutdown(comp: _Component, error: BaseException | None) -> None:
        if error is None:
            comp.state = ComponentState.STOPPED
            logger.info("component stopped", extra={"component": comp.name})
        else:
            comp.state = ComponentState.FAILED
            logger.error("component failed while stopping", exc_info=error, extra={"component": comp.name})


def _describe(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    # Exceptions from network libraries may quote a camera URL with its password.
    return mask_text(text, SECRETS.values)


async def _call(run: Callable[[], Awaitable[None]]) -> None:
    await run()


def _self_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
