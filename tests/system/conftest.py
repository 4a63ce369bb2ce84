"""Fixtures of the system tests: real ``python -m chat`` processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..support import ServerProcess


@pytest.fixture
def processes() -> Iterator[list[ServerProcess]]:
    """Every process a test starts; each is stopped afterwards and must not have crashed."""
    started: list[ServerProcess] = []
    yield started
    for process in started:
        try:
            if process.running:
                assert process.stop() == 0, process.output()
            assert "Traceback" not in process.output(), process.output()
        finally:
            process.log.close()
