"""HTTP fuzz: random methods, targets, versions, headers, framings, encodings and bodies, sent
over raw sockets to a real ``python -m chat`` (aiohttp's client would refuse to send most of it).

For every request: never a 500; an error the application gives under /a/ is JSON
``{"error": ...}`` (what aiohttp's HTTP parser refuses before any route runs is a plain 4xx and
is counted apart); the store grows by exactly the messages the replies say were stored, so a
refused POST stores nothing. After the run: no traceback or ERROR in the server's log, the
history holds exactly the accepted messages, and a normal post still works.

Fixed seed and a small budget in make test; ``make fuzz`` runs it longer (tests/conftest.py).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import socket
import urllib.parse
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import settings as budget
from hypothesis import strategies as st

from ..support import XSRF, ServerProcess, examples

MAX_REQUEST = 8192
SERVER_ARGS = (
    "--poll-timeout", "0.2", "--body-timeout", "0.3", "--keepalive-timeout", "2",
    "--max-request", str(MAX_REQUEST), "--history", "100000", "--ping-interval", "30",
    # The abuse limits stay on, generous enough for a fuzzer on one address; a 429 is an
    # expected answer (and must store nothing, like any other refusal).
    "--post-rate", "500", "--post-burst", "200", "--max-client-connections", "100",
    "--max-clients", "1000", "--request-rate", "500", "--request-burst", "1000",
    "--metrics-cache", "0",  # the store's growth is read from /metrics after every request
)
MESSAGE_KEYS = {"id", "room", "body", "name", "ts", "html"}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(*SERVER_ARGS) as process:
        yield process


# ---- what is sent ---------------------------------------------------------------------------

@dataclasses.dataclass
class Probe:
    data: bytes  # every byte sent on the connection
    method: str
    path: str  # the path as the server decodes it ("" when no route can match)
    tags: list[str]  # what was odd about it, for the coverage count
    pipelined: bool = False  # more bytes follow the first request: read every reply
    patience: float = 2.0  # seconds to wait for a reply (a truncated request gets none)


TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "main", "earliest", XSRF, "/", "//evil", "\r\n", "\x00", "%",
                     "é", "😀", "<script>", "a" * 70, "k3v9x0qa2b-1", "k3v9x0qa2b-01"]))
EXTRA_FIELDS = st.lists(st.tuples(
    st.sampled_from(["name", "room", "next", "cursor", "body", "", "_charset_", "x"])
    | st.text(max_size=5), TEXT), max_size=3)


def _one_in(draw: st.DrawFn, n: int) -> bool:
    """True about once in ``n`` draws (hypothesis favours a list's first element)."""
    return draw(st.sampled_from([False] * (n - 1) + [True]))


@st.composite
def form_fields(draw: st.DrawFn, good: bool) -> list[tuple[str, str]]:
    """A form that could be accepted (a body and the XSRF token) with odd fields around it,
    or any fields at all."""
    fields = draw(EXTRA_FIELDS)
    if good:
        fields.append(("body", draw(st.text(min_size=1, max_size=30))))
        if not _one_in(draw, 4):
            fields.append(("_xsrf", XSRF))
    return list(draw(st.permutations(fields)))


def _encode(text: str, charset: str) -> bytes:
    try:
        return text.encode(charset)
    except (LookupError, UnicodeError):
        return text.encode("utf-8", "surrogatepass")


@st.composite
def bodies(draw: st.DrawFn, good: bool) -> tuple[str, bytes, str]:
    """(kind, body, Content-Type to send)."""
    kinds = ["urlencoded"] * 4 + ["multipart"] * 3 + ["gzip-form"] + ["too-large"] * 2
    if not good:
        kinds += ["json", "binary", "empty"]
    kind = draw(st.sampled_from(kinds))
    charset = draw(st.sampled_from([None] * 3 + ["utf-8", "latin-1", "utf-16", "utf-7", "nope",
                                                 "base64", "unicode_escape", "punycode",
                                                 "windows-1252", "ISO-8859-1"]))
    params = f"; charset={charset}" if charset else ""
    enc = charset or "utf-8"
    if kind in ("urlencoded", "gzip-form", "too-large"):
        fields = draw(form_fields(good))
        if kind == "too-large":
            fields.append(("pad", "x" * (MAX_REQUEST + draw(st.integers(1, 3000)))))
        body = "&".join(urllib.parse.quote_plus(_encode(k, enc)) + "="
                        + urllib.parse.quote_plus(_encode(v, enc)) for k, v in fields).encode()
        if _one_in(draw, 5):  # raw bytes where escapes belong
            body += draw(st.sampled_from([b"&x=\xff", b"&%zz=1", b"&body=a%", b"&&&=&", b";"]))
        if kind == "gzip-form":
            body = gzip.compress(body)
        return kind, body, "application/x-www-form-urlencoded" + params
    if kind == "multipart":
        boundary = draw(st.sampled_from(["b", "----WebKitFormBoundaryABCDEFGHIJKLMNOP", "x y",
                                         "=?", "a" * 70, "é"]))
        parts = []
        for key, value in draw(form_fields(good)):
            head = f'Content-Disposition: form-data; name="{key}"\r\n'
            if _one_in(draw, 3):
                head += draw(st.sampled_from([
                    f"Content-Type: text/plain{params}\r\n", "Content-Type: text/plain; "
                    "charset=nope\r\n", "Content-Transfer-Encoding: base64\r\n",
                    "Content-Transfer-Encoding: quoted-printable\r\n", "Content-Encoding: gzip\r\n",
                    'Content-Disposition: form-data; name="x"; filename="f.txt"\r\n',
                    "no colon\r\n"]))
            parts.append(f"--{boundary}\r\n{head}\r\n".encode("utf-8", "surrogatepass")
                         + _encode(value, enc) + b"\r\n")
        body = b"".join(parts)
        if not _one_in(draw, 5):
            body += f"--{boundary}--\r\n".encode()
        content_type = f'multipart/form-data; boundary="{boundary}"'
        if _one_in(draw, 4):
            content_type = draw(st.sampled_from([
                f"multipart/form-data; boundary={boundary}", "multipart/form-data",
                "multipart/form-data; boundary=other", f"multipart/mixed; boundary={boundary}"]))
        return kind, body, content_type
    if kind == "json":
        return kind, json.dumps({"body": draw(TEXT), "_xsrf": XSRF}).encode(), draw(
            st.sampled_from(["application/json", "application/x-www-form-urlencoded"]))
    if kind == "binary":
        return kind, draw(st.binary(max_size=200)), draw(st.sampled_from([
            "application/octet-stream", "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=b", "text/plain", ""]))
    return kind, b"", draw(st.sampled_from(["application/x-www-form-urlencoded", ""]))


API = ["/a/message/new", "/a/message/updates", "/a/message/stream"]
OTHER_TARGETS = [
    # (target as sent, path as the server decodes it; "" where no route can match)
    ("/", "/"), ("/rooms/main", "/rooms/main"), ("/rooms/no%20such", "/rooms/no such"),
    ("/rooms/" + "r" * 65, "/rooms/" + "r" * 65), ("/metrics", "/metrics"),
    ("/healthz", "/healthz"), ("/static/chat.js", "/static/chat.js"),
    ("/static/../setup.cfg", "/setup.cfg"), ("/static/%2e%2e/setup.cfg", "/static/../setup.cfg"),
    ("/a/", "/a/"), ("/a/nothing", "/a/nothing"), ("/a/message/new/", "/a/message/new/"),
    ("/%61/message/new", "/a/message/new"), ("/a%2Fmessage%2Fnew", "/a/message/new"),
    ("//a/message/new", "//a/message/new"), ("/A/MESSAGE/NEW", "/A/MESSAGE/NEW"),
    ("http://x/a/message/new", "/a/message/new"), ("*", ""), ("", ""),
    ("/a/message/new?x=1#frag", "/a/message/new"), ("/" + "x" * 9000, ""),
    ("/a/\xff\xfe", ""), ("/a/message new", ""), ("/a/%zz", "/a/%zz"),
]
QUERY = st.lists(st.tuples(st.sampled_from(["room", "last_event_id", "cursor", "x"]), TEXT),
                 max_size=3)


@st.composite
def targets(draw: st.DrawFn, path: str | None = None) -> tuple[str, str]:
    """(target as sent, path as the server decodes it)."""
    if path is None:
        if _one_in(draw, 2):
            return draw(st.sampled_from(OTHER_TARGETS))
        path = draw(st.sampled_from([*API, "/a/nothing", "/a/message", "/a/message/new/"]))
    query = draw(QUERY)
    if not query:
        return path, path
    if _one_in(draw, 5):  # unescaped: spaces, CR, non-ASCII in the request line
        return path + "?" + "&".join(f"{k}={v}" for k, v in query), path
    return path + "?" + urllib.parse.urlencode(query), path


HEADER_CHOICES: dict[str, list[str]] = {
    "X-XSRFToken": [XSRF, XSRF, "wrong", "", "é"],
    "Last-Event-ID": ["", "earliest", "k3v9x0qa2b-1", "zz-9", "a\tb", "é", "x" * 300],
    "Accept-Encoding": ["gzip", "br", "deflate", "gzip, deflate, br", "*", "identity;q=0", "junk"],
    "X-Forwarded-For": ["1.2.3.4", "::1", "junk", "1.2.3.4, 5.6.7.8", "", "1.2.3.4 user=root",
                        "2001:db8::1\r\nX-Forwarded-For: 10.0.0.1"],  # two header lines
    "X-Forwarded-Proto": ["https", "http", "https, http"],
    "Sec-Fetch-Site": ["same-origin", "same-site", "cross-site", "none"],
    "Expect": ["100-continue", "100-continue", "200-ok", ""],
    "Connection": ["close", "keep-alive", "Upgrade", "junk", "close, close"],
    "Upgrade": ["websocket", "h2c", "junk"],
    "Accept": ["text/event-stream", "application/json", "text/html", "*/*"],
    "Origin": ["http://evil.example", "null", "http://x", "https://x"],
    "Range": ["bytes=0-1", "bytes=5-1", "junk"],
}
COOKIES = [f"_xsrf={XSRF}"] * 6 + ["_xsrf=", "_xsrf=wrong", '_xsrf="x"', f"a=b; _xsrf={XSRF}",
                                   "\xff\xfe", "_xsrf=\xff", "_xsrf=" + "A" * 48, None]
ODD_HEADERS = [b"X-Odd: \x01\x02", b"X-Odd : space", b"X Odd: x", b": empty name", b"X-Odd:\xff",
               b"X-Long: " + b"v" * 9000, b"Host: a\r\nHost: b", b"X-Folded: a\r\n b",
               b"Content-Length: 5\r\nContent-Length: 6", b"X-CR: a\rb", b"X-NUL: a\x00b"]
# (scenario, defect at the HTTP level, examples in make test): about 250 requests in all.
PLAN: list[tuple[str, str | None, int]] = [
    ("post", None, 50), ("poll", None, 25), ("stream", None, 20), ("page", None, 20),
    ("any", None, 30), ("pipeline", None, 15), ("defect", "framing", 40),
    ("defect", "method", 12), ("defect", "version", 12), ("defect", "odd-header", 15),
    ("defect", "truncated", 10),
]
FRAMING_DEFECTS = ["none", "short", "long", "bad-chunk", "te+cl", "cl-junk", "te-junk",
                   "pipelined-post"]


def _chunked(body: bytes, sizes: list[int], extension: bool, trailer: bool) -> bytes:
    out, i = [], 0
    for size in sizes:
        if i >= len(body):
            break
        piece = body[i:i + max(1, size)]
        i += len(piece)
        out.append(b"%x%s\r\n%s\r\n" % (len(piece), b";ext=1" if extension else b"", piece))
    if i < len(body):
        out.append(b"%x\r\n%s\r\n" % (len(body) - i, body[i:]))
    return b"".join(out) + b"0\r\n" + (b"X-Trailer: t\r\n" if trailer else b"") + b"\r\n"


@st.composite
def probes(draw: st.DrawFn, scenario: str, defect: str | None = None) -> Probe:
    """A request of one scenario: a post, a long-poll, a stream or a page as a client would ask
    for it, with odd fields, encodings and headers; any method on any target with any body; a
    good post with another request behind it; or any of those with one defect at the HTTP level.
    """
    if scenario == "defect":
        scenario = draw(st.sampled_from(["post", "poll", "stream", "page", "any"]))
    tags = [f"scenario:{scenario}", f"defect:{defect}"]
    if scenario == "post":
        method, (target, path) = "POST", draw(targets("/a/message/new"))
    elif scenario == "poll":
        method, (target, path) = "POST", draw(targets("/a/message/updates"))
    elif scenario == "stream":
        method, (target, path) = "GET", draw(targets("/a/message/stream"))
    elif scenario == "pipeline":  # a good post, and right behind it on the connection another
        method, (target, path) = "POST", ("/a/message/new", "/a/message/new")
    elif scenario == "page":
        method = draw(st.sampled_from(["GET", "GET", "HEAD", "POST"]))
        target, path = draw(st.sampled_from(OTHER_TARGETS))
    else:
        method = draw(st.sampled_from(["POST", "GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"]))
        target, path = draw(targets())
    if defect == "method":
        method = draw(st.sampled_from(["post", "BREW", "G\x01T", "CONNECT", "TRACE", "GET /"]))
        if method == "CONNECT":  # its target is a host:port, so no path of ours
            path = ""
    version = draw(st.sampled_from(["HTTP/2.0", "HTTP/1.2", "HTTX/1.1", "", "HTTP/1.1 x"])) \
        if defect == "version" else "HTTP/1.1" if scenario == "pipeline" else \
        draw(st.sampled_from(["HTTP/1.1"] * 5 + ["HTTP/1.0"]))
    if method.upper() in ("POST", "PUT", "PATCH") or _one_in(draw, 6):
        kind, body, content_type = draw(bodies(good=scenario in ("post", "poll")))
    else:
        kind, body, content_type = "none", b"", ""
    tags.append("body:" + kind)
    if "charset=" in content_type:
        tags.append("charset:" + content_type.split("charset=")[1])
    headers: list[bytes] = []
    if not _one_in(draw, 20):
        headers.append(b"Host: x")
    if content_type and not _one_in(draw, 10):
        headers.append(b"Content-Type: " + content_type.encode("utf-8"))
    cookie = f"_xsrf={XSRF}" if scenario in ("post", "poll") and not _one_in(draw, 8) else \
        draw(st.sampled_from(COOKIES))
    if cookie is not None:
        headers.append(b"Cookie: " + cookie.encode("utf-8"))
    for name, values in HEADER_CHOICES.items():
        if name == "Connection" and scenario == "pipeline":
            continue  # keep-alive, so that the next request is read
        if _one_in(draw, 3 if name == "X-XSRFToken" else 8):
            headers.append(name.encode() + b": " + draw(st.sampled_from(values)).encode("utf-8"))
    if kind == "gzip-form" or _one_in(draw, 20):
        coding = draw(st.sampled_from(["gzip", "deflate", "br", "identity", "junk"])) \
            if kind != "gzip-form" else "gzip"
        if coding == "deflate" and draw(st.booleans()):
            body = zlib.compress(body)
        headers.append(b"Content-Encoding: " + coding.encode())
        tags.append("content-encoding")
    if defect == "odd-header":
        headers.append(draw(st.sampled_from(ODD_HEADERS)))
    # How the body is framed: right (length or chunked), or one of the ways it can be wrong.
    framing = draw(st.sampled_from(FRAMING_DEFECTS)) if defect == "framing" else \
        "pipelined-post" if scenario == "pipeline" else \
        draw(st.sampled_from(["length"] * 3 + ["chunked"]))
    if not body and framing in ("short", "long"):
        framing = "length"
    tags.append("framing:" + framing)
    extra = b""
    if framing == "length":
        if body or method.upper() in ("POST", "PUT", "PATCH"):
            headers.append(b"Content-Length: %d" % len(body))
    elif framing == "chunked":
        headers.append(b"Transfer-Encoding: chunked")
        sizes = draw(st.lists(st.integers(1, 64), max_size=6))
        body = _chunked(body, sizes, draw(st.booleans()), draw(st.booleans()))
    elif framing == "none":
        pass  # a body without framing is, to HTTP/1.1, the start of the next request
    elif framing == "short":
        headers.append(b"Content-Length: %d" % draw(st.integers(0, len(body) - 1)))
    elif framing == "long":
        headers.append(b"Content-Length: %d" % (len(body) + draw(st.integers(1, 100))))
    elif framing == "bad-chunk":
        headers.append(b"Transfer-Encoding: chunked")
        body = draw(st.sampled_from([b"zz\r\nab\r\n0\r\n\r\n", b"5\r\nab\r\n0\r\n\r\n",
                                     b"-1\r\n\r\n", b"ffffffffffffffffff\r\n", b"3\r\nabc0\r\n\r\n"]))
    elif framing == "te+cl":
        headers += [b"Transfer-Encoding: chunked", b"Content-Length: %d" % len(body)]
        body = _chunked(body, [], False, False)
    elif framing == "cl-junk":
        headers.append(b"Content-Length: " + draw(st.sampled_from(
            [b"abc", b"-1", b" 5", b"+5", b"5 5", b"0x10", b"99999999999999999999", b""])))
    elif framing == "te-junk":
        headers.append(b"Transfer-Encoding: " + draw(st.sampled_from(
            [b"gzip", b"chunked, gzip", b"xchunked", b"chunked\x00", b"identity", b""])))
    else:  # pipelined-post: a second request right behind the first, mostly a valid post
        headers.append(b"Content-Length: %d" % len(body))
        good = f"_xsrf={XSRF}&body=pipelined".encode()
        extra = draw(st.sampled_from([
            b"POST /a/message/new HTTP/1.1\r\nHost: x\r\nCookie: _xsrf=" + XSRF.encode()
            + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d"
            b"\r\nConnection: close\r\n\r\n%s" % (len(good), good),
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"\r\n\r\nGARBAGE\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"]))
    headers = draw(st.permutations(headers))
    request_line = f"{method} {target} {version}".rstrip().encode("utf-8", "surrogateescape")
    data = request_line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body + extra
    if defect == "truncated":  # the request stops halfway
        data = data[:draw(st.integers(1, max(1, len(data) - 1)))]
    leftover = (framing in ("none", "short") and body) or bool(extra)
    return Probe(data, method, path, tags, pipelined=bool(leftover),
                 patience=0.1 if defect == "truncated" else 2.0)


# ---- what comes back --------------------------------------------------------------------------

@dataclasses.dataclass
class Reply:
    status: int
    version: str
    headers: dict[str, str]  # lower-case names; repeated ones joined with ", "
    body: bytes
    stream: bool = False

    @property
    def from_app(self) -> bool:
        """Answered by our code, not refused before it: our middlewares add the page headers to
        every reply they see; a stream sends its headers itself."""
        return "content-security-policy" in self.headers or self.stream

    @property
    def stored(self) -> bool:
        """The reply says a message was stored: the message JSON, or the no-JS redirect."""
        if self.status == 302:
            return True
        if self.status != 200 or (self.headers.get("content-type", "") != \
                "application/json; charset=utf-8" and not self.body.startswith(b'{"id":')):
            return False
        try:
            parsed = json.loads(self.body)
        except ValueError:
            return False
        return isinstance(parsed, dict) and set(parsed) == MESSAGE_KEYS


class Connection:
    def __init__(self, port: int, timeout: float) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buffer += data

    def until(self, separator: bytes) -> bytes:
        while separator not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(separator)
        return head

    def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def rest(self) -> bytes:
        try:
            while True:
                self._fill()
        except EOFError:
            pass
        data, self.buffer = self.buffer, b""
        return data

    def reply(self, method: str) -> Reply:
        while True:
            head = self.until(b"\r\n\r\n").decode("latin-1")
            status_line, *lines = head.split("\r\n")
            version, status, *_ = status_line.split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines:
                name, _, value = line.partition(":")
                key = name.strip().lower()
                headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else \
                    value.strip()
            if not 100 <= int(status) < 200:
                break
        reply = Reply(int(status), version, headers, b"")
        if method.upper() == "HEAD" or reply.status in (204, 304):
            return reply
        if headers.get("content-type", "").startswith("text/event-stream"):
            reply.stream = True  # endless: the first chunk (the opening) is enough
            if headers.get("transfer-encoding") == "chunked":
                size = int(self.until(b"\r\n"), 16)
                reply.body = self.exactly(size)
            else:
                reply.body = self.until(b"\n\n") + b"\n\n"
        elif headers.get("transfer-encoding") == "chunked":
            while size := int(self.until(b"\r\n").split(b";")[0], 16):
                reply.body += self.exactly(size)
                self.exactly(2)
            self.until(b"\r\n")
        elif "content-length" in headers:
            reply.body = self.exactly(int(headers["content-length"]))
        else:
            reply.body = self.rest()
        return reply

    def close(self) -> None:
        self.sock.close()


def exchange(port: int, probe: Probe) -> list[Reply]:
    """Send the probe; every reply that comes back (none when the server just closes)."""
    conn = Connection(port, timeout=probe.patience)
    replies: list[Reply] = []
    try:
        conn.sock.sendall(probe.data)
        replies.append(conn.reply(probe.method))
        if probe.pipelined and not replies[0].stream:
            conn.sock.settimeout(0.3)
            while True:
                replies.append(conn.reply("GET"))
    except (EOFError, TimeoutError, ConnectionError):
        pass
    finally:
        conn.close()
    return replies


def published(port: int) -> int:
    conn = Connection(port, timeout=5.0)
    try:
        conn.sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        text = conn.reply("GET").body.decode()
    finally:
        conn.close()
    for line in text.splitlines():
        if line.startswith("chat_messages_published_total "):
            return int(float(line.split()[1]))
    raise AssertionError("chat_messages_published_total not in /metrics")


def check(reply: Reply, probe: Probe | None) -> str:
    """Assert what every reply must be; return its outcome for the count."""
    assert reply.status < 500, (reply, probe)
    assert reply.headers.get("server") == "chat", (reply, probe)  # no versions, never
    if reply.status in (413, 415) and reply.version == "HTTP/1.1":
        # The body is refused unread: the connection ends with it (HTTP/1.0 ends anyway).
        assert reply.headers.get("connection") == "close", (reply, probe)
    api = probe is not None and probe.path.startswith("/a/")
    if api and reply.status >= 400:
        if not reply.from_app:
            # Refused before any of our code ran: by aiohttp's HTTP parser (400), or by its Expect
            # handling (417) for an expectation other than 100-continue. Plain text, by aiohttp.
            assert reply.status in (400, 417), (reply, probe)
            return f"{reply.status} before the app"
        assert reply.headers["content-type"] == "application/json; charset=utf-8", (reply, probe)
        if probe is not None and probe.method.upper() != "HEAD":
            error = json.loads(reply.body)
            assert set(error) == {"error"} and isinstance(error["error"], str), (reply, probe)
        if reply.status == 429:
            assert int(reply.headers["retry-after"]) >= 1
    if reply.stream:
        assert reply.status == 200 and reply.body.startswith(b"retry: "), (reply, probe)
        return "stream 200"
    if probe is None:
        return f"pipelined {reply.status}"
    if not probe.path:  # no route can match: only the HTTP parser or the router answers
        assert reply.status in (400, 404, 417), (reply, probe)
        return f"unroutable {reply.status}"
    where = probe.path if probe.path in API else "/a/..." if api else "other"
    return f"{where} {reply.status}"


# ---- the run ----------------------------------------------------------------------------------

def test_http_fuzz_never_500_and_a_refused_request_stores_nothing(server: ServerProcess) -> None:
    outcomes: Counter[str] = Counter()
    sent: Counter[str] = Counter()
    stored: list[dict[str, Any]] = []
    for scenario, defect, n in PLAN:

        @budget(max_examples=examples(n))
        @given(probe=probes(scenario, defect))
        def one(probe: Probe) -> None:
            before = published(server.port)
            replies = exchange(server.port, probe)
            for i, reply in enumerate(replies):
                outcome = check(reply, probe if i == 0 else None)
                outcomes[outcome] += 1
                event(outcome)
                if reply.stored and reply.status == 200:
                    stored.append(json.loads(reply.body))
            if not replies:
                outcomes["no reply"] += 1
            sent.update(probe.tags)
            assert published(server.port) - before == sum(r.stored for r in replies), \
                (probe, replies)

        one()
    print(f"\nfuzz replies: {dict(sorted(outcomes.items()))}")  # shown with pytest -s
    print(f"fuzz sent: {dict(sorted(sent.items()))}")

    # The run reached what it is meant to: a fuzz run that never got these far proves nothing.
    for outcome in ["/a/message/new 200", "/a/message/new 400", "/a/message/new 403",
                    "/a/message/updates 200", "stream 200", "other 200", "400 before the app",
                    "pipelined 200", "no reply"]:
        assert outcomes[outcome], (outcome, outcomes)
    api_statuses = {o.rsplit(" ", 1)[1] for o in outcomes if o.startswith("/a/")}
    assert api_statuses >= {"200", "400", "403", "404", "405", "413", "415"}, outcomes
    assert len({t for t in sent if t.startswith("framing:")}) >= 6, sent
    for tag in ["body:multipart", "body:gzip-form", "body:too-large", "body:binary"]:
        assert sent[tag], (tag, sent)

    # The history holds exactly the messages the replies said were stored, in order (a 302
    # carries no id: at most that many are unaccounted for).
    ids = {m["id"] for m in stored}
    unaccounted = 0
    for room in {m["room"] for m in stored}:
        held = [m["id"] for m in _history(server.port, room)]
        assert [i for i in held if i in ids] == [m["id"] for m in stored if m["room"] == room]
        unaccounted += sum(i not in ids for i in held)
    assert unaccounted <= sum(n for outcome, n in outcomes.items() if outcome.endswith(" 302"))

    # It still serves, and nothing it logged was a traceback or an ERROR.
    ok = b"_xsrf=%s&body=after+the+fuzz&room=after" % XSRF.encode()
    reply = exchange(server.port, Probe(
        b"POST /a/message/new HTTP/1.1\r\nHost: x\r\nCookie: _xsrf=" + XSRF.encode()
        + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (len(ok), ok), "POST", "/a/message/new", []))[0]
    assert reply.status == 200 and json.loads(reply.body)["body"] == "after the fuzz"
    log = server.output()
    assert "Traceback" not in log and " ERROR " not in log, log[-5000:]


def _history(port: int, room: str) -> list[dict[str, Any]]:
    form = f"_xsrf={XSRF}&room={room}".encode()
    conn = Connection(port, timeout=5.0)
    try:
        conn.sock.sendall(b"POST /a/message/updates HTTP/1.1\r\nHost: x\r\nCookie: _xsrf="
                          + XSRF.encode() + b"\r\nContent-Type: application/x-www-form-urlencoded"
                          b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                          % (len(form), form))
        messages: list[dict[str, Any]] = json.loads(conn.reply("POST").body).get("messages", [])
    finally:
        conn.close()
    return messages
