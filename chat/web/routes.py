"""The whole URL table."""

from __future__ import annotations

from aiohttp import web

from ..settings import Settings
from . import api, health, history, longpoll, pages, posting, presence, rooms, stream


def setup_routes(app: web.Application, settings: Settings) -> None:
    app.add_routes([
        web.get("/", pages.room_page, name="index"),
        web.get("/rooms", pages.open_room, name="open_room"),
        web.get("/rooms/{room}", pages.room_page, name="room"),
        web.post("/a/message/new", posting.new_message, name="message_new"),
        web.post("/a/message/updates", longpoll.updates, name="message_updates"),
        web.get("/a/message/stream", stream.stream, name="message_stream", allow_head=False),
        web.get("/a/message/history", history.history, name="message_history"),
        web.post("/api/rooms/{room}/messages", api.new_message, name="api_message_new"),
        web.get("/a/presence", presence.presence, name="presence"),
        web.post("/a/typing", presence.typing, name="typing"),
        web.get("/a/rooms", rooms.rooms, name="rooms"),
        web.get("/healthz", health.healthz, name="healthz"),
        web.get("/metrics", health.metrics, name="metrics"),
        web.static("/static", settings.static_dir, name="static"),
    ])
