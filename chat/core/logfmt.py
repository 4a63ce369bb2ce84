"""logfmt values: what a client sent can be logged, but cannot add a key or a line.

``event=refused client=1.2.3.4 path=/a/message/new`` stays parseable whatever the client put in
its path or headers: a value that is not a plain token is quoted, with ``\\``, ``"`` and every
control character escaped, so ``/x status=200 user=root`` is one value, not three keys.
"""

from __future__ import annotations

import re

_PLAIN = re.compile(r"[A-Za-z0-9_.:/@%+,\[\]-]+")
_ESCAPE = re.compile(r'[\\"\x00-\x1f\x7f-\x9f\u2028\u2029]')


def _escaped(match: re.Match[str]) -> str:
    c = match.group()
    return {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(
        c, f"\\u{ord(c):04x}")


def value(text: object) -> str:
    """``text`` as one logfmt value: bare when it is a plain token, else quoted and escaped."""
    s = str(text)
    if _PLAIN.fullmatch(s):
        return s
    return '"' + _ESCAPE.sub(_escaped, s) + '"'


def line(**fields: object) -> str:
    """``key=value ...`` with every value through ``value``; the keys are ours."""
    return " ".join(f"{key}={value(v)}" for key, v in fields.items())
