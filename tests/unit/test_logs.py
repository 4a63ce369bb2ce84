"""A request the client got wrong is logged in one line; a server error keeps its traceback."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import BadHttpMessage, ContentEncodingError
from aiohttp.web_protocol import RequestPayloadError

from chat.logs import ClientErrorsInOneLine


def _record(exc: BaseException, msg: str = "Error handling request from %s",
            *args: object) -> logging.LogRecord:
    return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, msg, args,
                             (type(exc), exc, None))


def test_client_errors_are_logged_in_one_line_without_traceback() -> None:
    record = _record(BadHttpMessage("Invalid character in chunk size:\n\n  b'zz'\n    ^"),
                     "Error handling request from %s", "127.0.0.1")
    assert ClientErrorsInOneLine().filter(record)
    assert (record.levelno, record.exc_info) == (logging.INFO, None)
    assert record.getMessage() == ("bad request: 400 Invalid character in chunk size: b'zz' ^ "
                                   "(Error handling request from 127.0.0.1)")
    try:
        raise RequestPayloadError("400, message") from ContentEncodingError("bad gzip")
    except RequestPayloadError as exc:
        wrapped = _record(exc, "Unhandled exception")
    ClientErrorsInOneLine().filter(wrapped)
    assert wrapped.levelno == logging.INFO and "bad gzip" in wrapped.getMessage()


def test_server_errors_keep_their_traceback() -> None:
    record = _record(ValueError("a bug of ours"))
    assert ClientErrorsInOneLine().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
