"""Every typed application and request key, in one place.

The types are imported for the type checker only, so any module can import its keys without
an import cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from multidict import MultiDictProxy

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..feed import Feed
    from ..settings import Settings
    from .limits import Limits
    from .metrics import Metrics
    from .xsrf import Tokens

settings_key: web.AppKey[Settings] = web.AppKey("settings_key")
feed_key: web.AppKey[Feed] = web.AppKey("feed_key")
metrics_key: web.AppKey[Metrics] = web.AppKey("metrics_key")
limits_key: web.AppKey[Limits] = web.AppKey("limits_key")
tokens_key: web.AppKey[Tokens] = web.AppKey("tokens_key")
# The clock of the limits, the metrics cache and presence (monotonic seconds; tests pass a fake).
clock_key: web.AppKey[Callable[[], float]] = web.AppKey("clock_key")

# The request's parsed form: read once, by the XSRF check or the handler, whichever comes first.
form_key: web.RequestKey[MultiDictProxy[str]] = web.RequestKey("form_key")
# The request's _xsrf cookie if this server issued it (else None): checked once, by the limits
# (it names the browser) or the XSRF check, whichever comes first.
issued_key: web.RequestKey[str | None] = web.RequestKey("issued_key")
# The client holding one of the per-client stream + long-poll slots for this request; released
# once the reply is written (chat.web.replies), not when the handler returns.
# The stream-or-poll slot a request holds until its reply is written: (address, browser).
slot_key: web.RequestKey[tuple[str, str | None]] = web.RequestKey("slot_key")
