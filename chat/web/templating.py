"""Jinja2 over templates/, and the one message fragment shared by the page and the JSON ``html``."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp_jinja2
import jinja2
from aiohttp import web

from .. import __version__
from ..core.message import Renderer
from ..settings import Settings
from .linkify import linkify


def setup_templating(app: web.Application, settings: Settings) -> None:
    env = aiohttp_jinja2.setup(  # autoescape is on: aiohttp_jinja2 defaults it to True
        app, loader=jinja2.FileSystemLoader(settings.templates_dir), undefined=jinja2.StrictUndefined,
        default_helpers=False)
    env.globals["version"] = __version__
    env.filters["linkify"] = linkify  # http(s) URLs in message bodies as escaped links


def message_renderer(app: web.Application) -> Renderer:
    """Render ``message.html`` for one message; every page and every client shows these bytes."""
    template = aiohttp_jinja2.get_env(app).get_template("message.html")

    def render(message_id: str, body: str, name: str | None, ts: float) -> str:
        when = datetime.fromtimestamp(ts, UTC)
        return template.render(id=message_id, body=body, name=name,
                               iso=when.isoformat(timespec="milliseconds"),
                               clock=when.strftime("%H:%M"))

    return render
