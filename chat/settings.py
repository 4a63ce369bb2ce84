"""Every tunable of the server, in one frozen dataclass: default, help text and parser per field.

The command line (``python -m chat --help``), the ``CHAT_<FIELD>`` environment variables and the
README's options table all come from the fields below (``parse_settings``; a test checks the
README), so an option is described once.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


def int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {low} to {high}, got {value}")
        return value

    return parse


def float_range(low: float, high: float, what: str, *, low_ok: bool) -> Callable[[str], float]:
    """A number in (low, high], or [low, high] when ``low_ok``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (low <= value if low_ok else low < value) or not value <= high:
            bound = f"{low:g} to {high:.0f}" if low_ok else f"more than {low:g} and at most {high:.0f}"
            raise argparse.ArgumentTypeError(f"expected {bound}, got {text}")
        return value

    return parse


seconds = float_range(0, 86400, "seconds", low_ok=False)
rate = float_range(0, 1_000_000, "a number", low_ok=True)


def networks(text: str) -> tuple[str, ...]:
    values = tuple(part.strip() for part in text.split(",") if part.strip())
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated addresses or networks, got {value!r}") from None
    return values


SQLITE_PREFIX = "sqlite:///"


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` store URL (SQLAlchemy's convention: ``sqlite:///var/chat.db``
    is relative to the working directory, ``sqlite:////srv/chat.db`` absolute), else None."""
    if not url.startswith(SQLITE_PREFIX):
        return None
    return Path(url[len(SQLITE_PREFIX):])


# Who may read /metrics by default: this host and private networks (a scraper inside the
# deployment), not the Internet.
PRIVATE_NETWORKS = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                    "fc00::/7")


def secret_text(text: str) -> str:
    if text and len(text) < 16:
        raise argparse.ArgumentTypeError(
            "expected at least 16 characters (e.g. python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'), or nothing to use the store's")
    return text


def store_url(text: str) -> str:
    if text == "memory" or text.startswith(("redis://", "rediss://", "unix://")):
        return text
    path = sqlite_path(text)
    if path is not None and str(path) not in ("", ".", ":memory:") and not text.endswith("/"):
        return text
    raise argparse.ArgumentTypeError(
        f"expected 'memory', a redis:// URL or sqlite:///PATH (a file), got {text!r}")


def sqlite_sync(text: str) -> str:
    if text in ("full", "normal"):
        return text
    raise argparse.ArgumentTypeError(f"expected full or normal, got {text!r}")


def flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected 1/0, true/false, yes/no or on/off, got {text!r}")


_API_KEY_RE = re.compile(r"[A-Za-z0-9._~+/-]+=*")  # RFC 6750's b64token


def api_keys(text: str) -> tuple[str, ...]:
    """Comma-separated bearer keys. An error names a key by its place, never by its value."""
    keys = tuple(part.strip() for part in text.split(",") if part.strip())
    for place, key in enumerate(keys, 1):
        if not _API_KEY_RE.fullmatch(key):
            raise argparse.ArgumentTypeError(
                f"API key {place} of {len(keys)} has a character a bearer token cannot have "
                "(use A-Z a-z 0-9 - . _ ~ + /, e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')")
    return keys


def _opt(default: Any, help: str, parse: Callable[[str], Any] = str, *, shown: str = "",
         secret: bool = False) -> Any:
    """A field that is also a command-line option and a CHAT_* variable. ``shown``: the default
    as the README's table shows it, when ``str(default)`` would not say it well. ``secret``:
    never in the settings' repr (so never in a log or a traceback)."""
    return dataclasses.field(default=default, repr=not secret,
                             metadata={"help": help, "parse": parse, "shown": shown})


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    host: str = _opt("127.0.0.1", "address to listen on")
    port: int = _opt(8888, "TCP port (0: any free port)", int_range(0, 65535))
    store: str = _opt("memory", "'memory' (one process, history lost on restart), "
                                "sqlite:///PATH (one process, history kept in a file: "
                                "sqlite:///var/chat.db relative, sqlite:////srv/chat.db absolute) "
                                "or redis://host:port/db (several processes)", store_url)
    workers: int = _opt(1, "processes serving the port, under gunicorn (more than 1 needs a "
                           "shared store: --store redis://...)", int_range(1, 1024))
    sqlite_sync: str = _opt("full", "SQLite: 'full' (a 200 means the message is on disk) or "
                                    "'normal' (faster; a power loss may lose the last commits)",
                            sqlite_sync)
    # ---- history ----
    history: int = _opt(200, "messages per room held in RAM: what a page shows and a reset "
                             "replays", int_range(1, 1_000_000))
    history_bytes: int = _opt(256 * MiB, "bytes of messages held in RAM across all rooms; over "
                                         "it the least recently active rooms lose their oldest "
                                         "first", int_range(MiB, 1 << 40), shown="256 MiB")
    retain_messages: int = _opt(100_000, "messages per room the SQLite and Redis stores keep "
                                         "(Redis trims with MAXLEN ~: a little more)",
                                int_range(1, 1 << 40))
    retain_days: float = _opt(0.0, "days the SQLite and Redis stores keep a message (0: no age "
                                   "limit)", float_range(0, 100 * 365, "days", low_ok=True))
    max_reply_bytes: int = _opt(512 * 1024, "bytes of messages in one long-poll answer or one "
                                            "page of a stream's replay",
                                int_range(16 * 1024, 1 << 30), shown="512 KiB")
    # ---- messages and requests ----
    max_body: int = _opt(4096, "longest message body, in characters after trimming",
                         int_range(1, 1_000_000))
    max_name: int = _opt(64, "longest nickname, in characters", int_range(1, 1000))
    max_request: int = _opt(64 * 1024, "largest request body, in bytes (larger gets 413)",
                            int_range(1024, 64 * MiB), shown="64 KiB")
    # ---- streams and polls ----
    poll_timeout: float = _opt(30.0, "seconds a long-poll waits before answering {}", seconds)
    ping_interval: float = _opt(15.0, "seconds between SSE ': ping' heartbeats", seconds)
    queue_size: int = _opt(1000, "messages a stream client may lag behind before it is "
                                 "disconnected", int_range(1, 1_000_000))
    retry_ms: int = _opt(1000, "reconnection delay suggested to EventSource, in milliseconds",
                         int_range(0, 3_600_000))
    # ---- abuse limits; 0 turns one off ----
    post_rate: float = _opt(5.0, "messages per second a client may post, sustained (0: off)", rate)
    post_burst: int = _opt(20, "messages a client may post at once before --post-rate applies",
                           int_range(1, 1_000_000))
    max_client_connections: int = _opt(20, "open streams + long-polls per browser (its signed "
                                           "cookie; a client without one: per address) (0: off)",
                                       int_range(0, 10_000_000))
    max_address_streams: int = _opt(200, "open streams + long-polls per client address, all "
                                         "browsers behind it together (0: off)",
                                    int_range(0, 10_000_000))
    max_clients: int = _opt(10_000, "open streams + long-polls in this process (0: off)",
                            int_range(0, 10_000_000))
    trusted_proxies: tuple[str, ...] = _opt((), "comma-separated proxy addresses/networks whose "
                                                "X-Forwarded-For (and X-Forwarded-Proto) name "
                                                "the client", networks, shown="none")
    request_rate: float = _opt(50.0, "page, stream and long-poll requests per second a client "
                                     "may make, sustained (0: off)", rate)
    request_burst: int = _opt(200, "page, stream and long-poll requests a client may make at "
                                   "once before --request-rate applies", int_range(1, 1_000_000))
    max_address_connections: int = _opt(256, "open HTTP connections per client address "
                                             "(IPv6: per /64; trusted proxies are exempt; 0: off)",
                                        int_range(0, 10_000_000))
    max_pending_bytes: int = _opt(256 * MiB, "bytes of replies waiting in this process's socket "
                                             "buffers; while over it, new streams and long-polls "
                                             "get 503 (0: off)", int_range(0, 1 << 40),
                                  shown="256 MiB")
    # ---- time limits ----
    keepalive_timeout: float = _opt(15.0, "seconds before an idle connection, or one still "
                                          "sending its headers, is closed", seconds)
    body_timeout: float = _opt(10.0, "seconds a request body may take to arrive (then 408)",
                               seconds)
    stall_timeout: float = _opt(15.0, "seconds a client may accept nothing of a reply or a "
                                      "stream before its connection is closed", seconds)
    shutdown_timeout: float = _opt(1.0, "seconds shutdown waits for requests still running",
                                   seconds)
    idempotency_window: float = _opt(300.0, "seconds a client_key / Idempotency-Key is "
                                            "remembered by the memory and Redis stores (SQLite: "
                                            "24 hours)", float_range(60, 7 * 86400, "seconds",
                                                                    low_ok=True))
    # ---- presence and typing ----
    presence_grace: float = _opt(15.0, "seconds a member stays listed after their last stream "
                                       "or poll ended (a reload is not a leave and a join)",
                                 float_range(0, 3600, "seconds", low_ok=True))
    presence_renew: float = _opt(5.0, "seconds between a process's renewals of its presence in "
                                      "Redis; another process drops it after three missed "
                                      "(a killed process's members leave within that)",
                                 float_range(0.1, 600, "seconds", low_ok=True))
    max_presence: int = _opt(10_000, "names this process keeps in presence lists, all rooms; "
                                     "more are counted but not listed", int_range(1, 10_000_000))
    typing_seconds: float = _opt(5.0, "seconds a typing notice lasts ('until' = now + this)",
                                 float_range(1, 60, "seconds", low_ok=True))
    typing_interval: float = _opt(2.0, "seconds between typing notices relayed for one client "
                                       "(more are coalesced)",
                                  float_range(0, 60, "seconds", low_ok=True))
    # ---- the publish API (/api/) ----
    api_keys: tuple[str, ...] = _opt((), "comma-separated keys for POST /api/ (Authorization: "
                                         "Bearer KEY); none: /api/ answers 401. Prefer "
                                         "CHAT_API_KEYS: a command line is visible to other "
                                         "users", api_keys, shown="none", secret=True)
    api_post_rate: float = _opt(100.0, "messages per second one API key may post, sustained "
                                       "(0: off)", rate)
    api_post_burst: int = _opt(200, "messages one API key may post at once before "
                                    "--api-post-rate applies", int_range(1, 1_000_000))
    # ---- Redis ----
    # 5 s, not less: a post's script must reach Redis within half of it, and a server starved
    # of CPU by other load once missed 1 s (bench/README.md, "Redis rows").
    redis_timeout: float = _opt(5.0, "seconds a Redis command, or a wait for a Redis "
                                     "connection, may take before the request is answered 503",
                                seconds)
    redis_backoff: float = _opt(2.0, "longest pause between attempts to reach Redis again "
                                     "after losing it", seconds)
    redis_connections: int = _opt(50, "Redis connections per process for requests; more wait "
                                      "up to --redis-timeout", int_range(1, 10_000))
    room_ttl: float = _opt(7 * 86400.0, "seconds a Redis room lives after its last post",
                           float_range(60, 10 * 365 * 86400, "seconds", low_ok=True),
                           shown="7 days")
    # ---- security ----
    secret: str = _opt("", "server secret that signs the XSRF tokens; when not given, one is made "
                           "once and kept by the store (memory: until restart; Redis: chat:secret) "
                           "so every process shares it. Prefer CHAT_SECRET", secret_text,
                       shown="the store's", secret=True)
    # ---- operations ----
    metrics_allow: tuple[str, ...] = _opt(PRIVATE_NETWORKS, "comma-separated addresses/networks "
                                                            "that may read /metrics (others get "
                                                            "403; 0.0.0.0/0,::/0: anyone)",
                                          networks, shown="loopback and private networks")
    metrics_cache: float = _opt(1.0, "seconds a /metrics text is reused before it is made again "
                                     "(a scrape costs O(connections); 0: every time)",
                                float_range(0, 60, "seconds", low_ok=True))
    backlog: int = _opt(4096, "listen backlog for new connections", int_range(1, 1_000_000))
    access_log: bool = _opt(False, "log every request (1/0)", flag, shown="off")
    templates_dir: Path = ROOT / "templates"
    static_dir: Path = ROOT / "static"


def options() -> list[tuple[str, dataclasses.Field[Any]]]:
    """(``--option``, field) for every field that is an option."""
    return [("--" + f.name.replace("_", "-"), f) for f in dataclasses.fields(Settings)
            if "help" in f.metadata]


def env_name(field: dataclasses.Field[Any]) -> str:
    return "CHAT_" + field.name.upper()


def shown_default(field: dataclasses.Field[Any]) -> str:
    default = field.default
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    return field.metadata["shown"] or str(default)


TABLE_START = "<!-- options: generated from chat/settings.py by `python -m chat.settings` -->"
TABLE_END = "<!-- /options -->"


def options_markdown() -> str:
    """The README's options table, made from the fields (a test checks the README has it)."""
    rows = ["| option | environment | default | meaning |", "| --- | --- | --- | --- |"]
    for option, field in options():
        meaning = field.metadata["help"].replace("|", "\\|")
        rows.append(f"| `{option}` | `{env_name(field)}` | {shown_default(field)} | {meaning} |")
    return "\n".join([TABLE_START, *rows, TABLE_END]) + "\n"


def write_readme_table(readme: Path) -> bool:
    """Put ``options_markdown()`` between the markers in ``readme``; True if it changed."""
    text = readme.read_text()
    head, _, rest = text.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END + "\n")
    new = head + options_markdown() + tail
    if new != text:
        readme.write_text(new)
    return new != text


if __name__ == "__main__":  # python -m chat.settings: the README's options table, rewritten
    write_readme_table(ROOT / "README.md")


MEMORY_WORKERS = ("--workers {} needs a shared store: the memory store keeps each room inside "
                  "one process; add --store redis://host:port/db (or CHAT_STORE)")
SQLITE_WORKERS = ("--workers {} cannot share a SQLite file: one process owns it; use --workers 1, "
                  "or --store redis://host:port/db for several processes")


def workers_refusal(settings: Settings, workers: int) -> str | None:
    """Why ``workers`` processes cannot serve ``settings.store``, or None if they can."""
    if workers > 1 and settings.store == "memory":
        return MEMORY_WORKERS.format(workers)
    if workers > 1 and sqlite_path(settings.store) is not None:
        return SQLITE_WORKERS.format(workers)
    return None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None,
                   prog: str = "python -m chat") -> tuple[Settings, argparse.Namespace]:
    """Settings from the command line over ``CHAT_*`` variables over the defaults; a bad value
    is one line naming the option, exit status 2. Also returns the namespace, for the options
    that are not settings (``--log-level``, ``--no-uvloop``)."""
    environ = os.environ if environ is None else environ
    parser = _Parser(prog=prog, description=(
        "Chat server: long-poll and Server-Sent Events on aiohttp. Every option can also be set "
        "as CHAT_<OPTION> in the environment (CHAT_PORT=9000); the command line wins."))
    for option, field in options():
        env, parse, default = env_name(field), field.metadata["parse"], field.default
        if env in environ:
            try:
                default = parse(environ[env])
            except argparse.ArgumentTypeError as exc:
                parser.error(f"{env}: {exc}")
        parser.add_argument(option, dest=field.name, type=parse, default=default,
                            metavar=field.name.upper(),
                            help=f"{field.metadata['help']} (default: {shown_default(field)}; "
                                 f"env {env})")
    parser.add_argument("--log-level", default=environ.get("CHAT_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level")
    parser.add_argument("--no-uvloop", action="store_true",
                        default=flag(environ.get("CHAT_NO_UVLOOP", "0")),
                        help="use asyncio's own event loop even when uvloop is installed")
    args = parser.parse_args(argv)
    settings = Settings(**{field.name: getattr(args, field.name) for _, field in options()})
    why = workers_refusal(settings, settings.workers)
    if why is not None:
        parser.error(why)
    return settings, args
