"""publish(): post a message, retrying safely until it is stored or cannot be.

Every attempt for one message carries the same idempotency key (the ``Idempotency-Key`` header on
/api/, the ``client_key`` field on the form), so a server that keeps keys stores the message once
however many replies were lost on the way back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
from collections.abc import Callable
from typing import Any

import aiohttp

from .backoff import Backoff
from .common import (
    XSRF_COOKIE,
    XSRF_HEADER,
    PageError,
    base_url,
    check_room,
    describe,
    endpoint,
    error_text,
    retry_after,
    room_page,
)
from .errors import PublishError

IDEMPOTENCY_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Answers after which the message may still be stored by trying again. 502 and 504 come from a
# proxy in front of the server: the post may or may not have reached it, which is exactly what
# the idempotency key is for.
RETRY_STATUSES = frozenset({429, 502, 503, 504})


def new_idempotency_key() -> str:
    """A fresh key: 128 random bits in ``[A-Za-z0-9_-]``."""
    return secrets.token_urlsafe(16)


class Publisher:
    """Posts to one room of one server over one connection pool.

    With ``api_key``, posts go to ``POST /api/rooms/{room}/messages`` with the key as a bearer
    token; without, to the page's form endpoint with the ``_xsrf`` token its page hands out.
    Connection errors, timeouts and the statuses in RETRY_STATUSES are retried (after
    ``Retry-After`` when the server sends one, else a capped jittered backoff) for up to
    ``retry_for`` seconds per message; anything else raises PublishError at once. ``on_retry`` is
    called before each pause with what went wrong and how long the pause is.
    """

    def __init__(self, url: str, room: str = "main", *, api_key: str | None = None,
                 session: aiohttp.ClientSession | None = None, retry_for: float = 60.0,
                 backoff: Backoff | None = None, attempt_timeout: float = 30.0,
                 on_retry: Callable[[str, float], None] | None = None) -> None:
        self.base = base_url(url)
        self.room = check_room(room)
        if api_key is not None and (not api_key or any(c.isspace() for c in api_key)):
            raise ValueError("the API key must be one word")  # never echo the key itself
        self._api_key = api_key
        self._session = session
        self._own_session: aiohttp.ClientSession | None = None
        self.retry_for = retry_for
        self.backoff = backoff or Backoff(base=0.5, cap=10.0)
        self._timeout = aiohttp.ClientTimeout(total=attempt_timeout)
        self._on_retry = on_retry
        self._xsrf: str | None = None

    async def __aenter__(self) -> Publisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_session is not None:
            await self._own_session.close()
            self._own_session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is not None:
            return self._session
        if self._own_session is None:
            self._own_session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        return self._own_session

    async def publish(self, body: str, *, name: str | None = None,
                      idempotency_key: str | None = None) -> dict[str, Any]:
        """Post ``body`` (as ``name``); the stored message object, as the server returned it."""
        key = idempotency_key if idempotency_key is not None else new_idempotency_key()
        if not IDEMPOTENCY_KEY_RE.fullmatch(key):
            raise ValueError("idempotency_key must be 1 to 64 of A-Z a-z 0-9 _ -")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for
        self.backoff.reset()
        stale_xsrf = False
        while True:
            wait: float | None = None
            try:
                status, reply, headers = await self._attempt(body, name, key)
                if status in (200, 201):
                    if isinstance(reply, dict) and isinstance(reply.get("id"), str):
                        return reply
                    raise PublishError(status, "the answer is not a message object")
                if status == 403 and self._api_key is None and not stale_xsrf:
                    stale_xsrf, self._xsrf = True, None  # fetch a fresh token, once
                    continue
                if status not in RETRY_STATUSES:
                    raise PublishError(status, error_text(reply))
                reason = f"HTTP {status}: {error_text(reply)}"
                wait = retry_after(headers)
            except PageError as exc:
                if exc.final:
                    raise PublishError(exc.status, str(exc)) from None
                reason = str(exc)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
                reason = describe(exc)
            delay = max(wait or 0.0, self.backoff.next())
            if loop.time() + delay > deadline:
                raise PublishError(None, f"not stored after trying for {self.retry_for:g} s: {reason}")
            if self._on_retry is not None:
                self._on_retry(reason, delay)
            await asyncio.sleep(delay)

    async def _attempt(self, body: str, name: str | None, key: str) -> tuple[int, Any, Any]:
        """One request: (status, the parsed JSON of a 2xx answer or else the text, headers)."""
        session = self._client()
        if self._api_key is not None:
            request = session.post(
                endpoint(self.base, f"/api/rooms/{self.room}/messages"),
                json={"body": body, "name": name}, timeout=self._timeout,
                headers={"Authorization": f"Bearer {self._api_key}", "Idempotency-Key": key})
        else:
            if self._xsrf is None:
                self._xsrf = (await room_page(session, self.base, self.room, self._timeout)).xsrf
            form = {"body": body, "room": self.room, XSRF_COOKIE: self._xsrf, "client_key": key}
            if name is not None:
                form["name"] = name
            request = session.post(endpoint(self.base, "/a/message/new"), data=form,
                                   cookies={XSRF_COOKIE: self._xsrf},
                                   headers={XSRF_HEADER: self._xsrf}, timeout=self._timeout,
                                   allow_redirects=False)
        async with request as response:
            text = await response.text(errors="replace")
            if response.status in (200, 201):
                with contextlib.suppress(ValueError):
                    return response.status, json.loads(text), response.headers
            return response.status, text, response.headers


async def publish(url: str, room: str, body: str, *, name: str | None = None,
                  api_key: str | None = None, idempotency_key: str | None = None,
                  session: aiohttp.ClientSession | None = None, retry_for: float = 60.0,
                  on_retry: Callable[[str, float], None] | None = None) -> dict[str, Any]:
    """Post one message to ``room`` and return the stored message object (a dict, as on the wire).

    With ``api_key`` it uses the publish API; without, the page's form (fetching the ``_xsrf``
    token first). Retries on connection errors, timeouts, 503 and 429 (after ``Retry-After``) with
    the same ``idempotency_key`` (a fresh one when not given) for up to ``retry_for`` seconds;
    raises PublishError when the message was not stored. To post many messages, a Publisher keeps
    one connection and one token for all of them.
    """
    async with Publisher(url, room, api_key=api_key, session=session, retry_for=retry_for,
                         on_retry=on_retry) as publisher:
        return await publisher.publish(body, name=name, idempotency_key=idempotency_key)
