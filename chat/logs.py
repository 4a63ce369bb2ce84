"""Logging: a request the client got wrong is one quiet line, not an error with a traceback."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError


class ClientErrorsInOneLine(logging.Filter):
    """aiohttp logs a malformed request (bad framing, header, chunk or Content-Encoding) at ERROR
    with a full traceback, as if the server had failed. It is the client's mistake and already
    answered with a 400, so it becomes one INFO line: real tracebacks stand out, and no client
    can fill the log with them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, web.RequestPayloadError) and isinstance(exc.__cause__, Exception):
            exc = exc.__cause__
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            text = " ".join(exc.message.split())
            context = record.getMessage()
            record.msg, record.args = "bad request: %d %s (%s)", (exc.code, text, context)
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_client_errors() -> None:
    logging.getLogger("aiohttp.server").addFilter(ClientErrorsInOneLine())
