"""Fixtures: short-timeout settings, a real test server, and helpers that speak the protocol."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from chat.app import create_app
from chat.keys import store_key
from chat.settings import Settings
from chat.store import Store

from .support import TEST_SETTINGS, XSRF, Chat


@pytest.fixture
def settings() -> Settings:
    """The contract's defaults, with short timeouts and the abuse limits off (test_limits.py
    turns them on): many tests post or connect far faster than a person would."""
    return TEST_SETTINGS


@pytest.fixture
async def app(settings: Settings) -> web.Application:
    return create_app(settings)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, app: web.Application) -> TestClient[Any, Any]:
    c = await aiohttp_client(app)
    c.session.cookie_jar.update_cookies({"_xsrf": XSRF})
    return c


@pytest.fixture
def store(client: TestClient[Any, Any]) -> Store:
    return client.server.app[store_key]




@pytest.fixture
def chat(client: TestClient[Any, Any]) -> Chat:
    return Chat(client)
