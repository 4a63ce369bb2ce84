"""``python -m chat``: command line and CHAT_* environment -> Settings -> server.serve()."""

from __future__ import annotations

from collections.abc import Sequence

from .server import serve
from .settings import parse_settings


def main(argv: Sequence[str] | None = None) -> None:
    settings, args = parse_settings(argv)
    serve(settings, log_level=args.log_level, use_uvloop=not args.no_uvloop)


if __name__ == "__main__":
    main()
