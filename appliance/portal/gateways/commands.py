"""Running a system tool (nft) from the event loop: an asyncio subprocess, never a blocking call,
with a time limit, and failures turned into errors that say what to install or grant."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from appliance.portal.gateways.base import GatewayError

DEFAULT_TIMEOUT_S = 10.0
"""nft answers in milliseconds; a tool still running after this is stuck, not slow."""


class CommandFailed(GatewayError):
    """The tool ran and reported an error; `stderr` holds what it said."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"`{' '.join(argv[:3])} …` failed (exit status {returncode}): {self.stderr}")


async def run(
    argv: Sequence[str], *, stdin: str | None = None, install_hint: str, timeout_s: float = DEFAULT_TIMEOUT_S
) -> str:
    """The tool's standard output. `install_hint` names the package to install if the tool is missing."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise GatewayError(f"`{argv[0]}` is not installed on this box: {install_hint}") from None
    except PermissionError:
        raise GatewayError(f"`{argv[0]}` cannot be run by this service (permission denied)") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), timeout_s)
    except BaseException as exc:
        # Stuck, or cancelled (the portal request went away): the tool must not outlive its caller.
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        if isinstance(exc, TimeoutError):
            raise GatewayError(f"`{argv[0]}` did not answer within {timeout_s:g} s") from None
        raise
    if proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode or 0, err.decode(errors="replace"))
    return out.decode(errors="replace")
