"""``python -m chat``: command line and CHAT_* environment -> Settings -> one process
(``server.serve``) or several under gunicorn (``gunicorn_conf.run``)."""

from __future__ import annotations

from collections.abc import Sequence

from . import gunicorn_conf, server
from .settings import parse_settings


def main(argv: Sequence[str] | None = None) -> None:
    settings, args = parse_settings(argv)
    if settings.workers > 1:
        gunicorn_conf.run(settings, log_level=args.log_level, use_uvloop=not args.no_uvloop)
    else:
        server.serve(settings, log_level=args.log_level, use_uvloop=not args.no_uvloop)


if __name__ == "__main__":
    main()
