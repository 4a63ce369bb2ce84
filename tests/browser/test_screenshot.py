"""``make screenshot`` keeps working: it chats through both transports and writes a PNG."""

from __future__ import annotations

import struct
from pathlib import Path

from .screenshot import take


async def test_screenshot_command_writes_the_picture(chromium_path: str, tmp_path: Path) -> None:
    out = tmp_path / "docs" / "chat.png"
    await take(out, chromium_path)  # fails if either person does not see every line
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) > (700, 600)
    assert len(png) > 20_000  # a blank page is ~4 KB; two chat panes with text are ~70 KB
