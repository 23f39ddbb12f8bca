"""A USB GSM modem through Gammu SMSD's files backend (gammu-smsd-files(7)): a message is a file
in the outbox folder, which the daemon sends and moves to its sent (or error) folder.

Name: `OUT<priority><YYYYMMDD>_<HHMMSS>_<serial>_<number>_<note>.txt[f]` (priority A is sent first;
the `f` option after the extension makes a flash SMS). Content: the text in UTF-16 with a byte
order mark, which SMSD reads whatever its locale. The daemon picks up any `OUT*.txt` file it
sees, so the file is written under a hidden name (SMSD skips names starting with a dot) and
renamed into place once complete.

Cyrillic text needs `TransmitFormat = auto` (or `unicode`) in gammu-smsdrc: SMSD's default, 7bit,
cannot carry it.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from appliance.portal.sms.base import Sent, SmsError
from appliance.portal.sms.settings import GammuSettings

UTF16_BOM_BE: Final = b"\xfe\xff"
NOTE_BYTES: Final = 6
"""Random note in the name: two codes to one number in the same second get two files."""
E164: Final = re.compile(r"\+[1-9][0-9]{5,14}")


def outbox_name(phone_e164: str, now: datetime, note: str, *, priority: str = "A", flash: bool = False) -> str:
    stamp = now.astimezone(UTC).strftime("%Y%m%d_%H%M%S")
    return f"OUT{priority}{stamp}_00_{phone_e164}_{note}.txt{'f' if flash else ''}"


def outbox_content(text: str) -> bytes:
    return UTF16_BOM_BE + text.encode("utf-16-be")


def check_outbox(outbox: Path) -> None:
    """SmsError (permanent) unless the outbox is a folder this process may create files in."""
    if not outbox.is_dir():
        raise SmsError(
            f"the Gammu outbox {outbox} does not exist; install gammu-smsd, set its OutboxPath to this folder "
            "(or [portal.sms.gammu] outbox_dir to its OutboxPath)",
            permanent=True,
        )
    if not os.access(outbox, os.W_OK | os.X_OK):
        raise SmsError(
            f"the appliance may not write to the Gammu outbox {outbox}; give its user write access "
            "(e.g. add it to gammu-smsd's group) and list the folder in the unit's ReadWritePaths",
            permanent=True,
        )


def _write_atomically(folder: Path, name: str, content: bytes) -> None:
    tmp = folder / f".{name}.part"
    try:
        with open(tmp, "xb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SmsError(
            f"cannot write to the Gammu outbox {folder} ({exc.strerror}); check the folder and its free space",
            permanent=True,
        ) from None


class GammuSender:
    name = "gammu"

    def __init__(self, settings: GammuSettings, outbox: Path) -> None:
        check_outbox(outbox)
        self._settings = settings
        self.outbox = outbox

    async def send(self, phone_e164: str, text: str) -> Sent:
        # The number becomes part of a file name: nothing but +digits may get there.
        if not E164.fullmatch(phone_e164):
            raise SmsError("the number is not in E.164 form (+ and digits)", permanent=True)
        name = outbox_name(
            phone_e164,
            datetime.now(UTC),
            secrets.token_hex(NOTE_BYTES),
            priority=self._settings.priority,
            flash=self._settings.flash,
        )
        await asyncio.to_thread(_write_atomically, self.outbox, name, outbox_content(text))
        return Sent(provider_id=name)

    async def close(self) -> None:
        return None
