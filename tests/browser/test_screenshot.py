"""``make screenshot`` keeps working: it chats through both transports and writes the PNGs."""

from __future__ import annotations

import struct
from pathlib import Path

from .screenshot import take


async def test_screenshot_command_writes_the_pictures(chromium_path: str, tmp_path: Path) -> None:
    out = tmp_path / "docs" / "chat.png"
    written = await take(out, chromium_path)  # fails if anyone does not see every line
    sizes = {"chat.png": (700, 600), "chat-phone-light.png": (720, 1280),
             "chat-desktop-dark.png": (900, 560)}
    assert sorted(p.name for p in written) == sorted(sizes)
    for path in written:
        png = path.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", png[16:24])
        assert (width, height) >= sizes[path.name], path.name
        assert len(png) > 20_000  # a blank page is ~4 KB; a page of chat is ~70 KB
