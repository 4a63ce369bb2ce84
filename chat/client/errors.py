"""What chat.client raises."""

from __future__ import annotations


class ChatClientError(Exception):
    """Base of every error chat.client raises on purpose."""


class SubscribeError(ChatClientError):
    """Following the room cannot go on: the server answered something retrying cannot change
    (no such room, not a chat server)."""


class PublishError(ChatClientError):
    """The message was not stored (as far as the client can tell).

    ``status`` is the HTTP status of the last answer, or None when there was none (the server
    could not be reached before the retries ran out); ``reason`` is the server's ``error`` text or
    what went wrong, never the API key.
    """

    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}" if status is not None else reason)
        self.status = status
        self.reason = reason
