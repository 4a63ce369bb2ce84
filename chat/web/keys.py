"""Every typed application and request key, in one place.

The types are imported for the type checker only, so any module can import its keys without
an import cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from multidict import MultiDictProxy

if TYPE_CHECKING:
    from ..feed import Feed
    from ..settings import Settings
    from .limits import Limits
    from .metrics import Metrics

settings_key: web.AppKey[Settings] = web.AppKey("settings_key")
feed_key: web.AppKey[Feed] = web.AppKey("feed_key")
metrics_key: web.AppKey[Metrics] = web.AppKey("metrics_key")
limits_key: web.AppKey[Limits] = web.AppKey("limits_key")

# The request's parsed form: read once, by the XSRF check or the handler, whichever comes first.
form_key: web.RequestKey[MultiDictProxy[str]] = web.RequestKey("form_key")
