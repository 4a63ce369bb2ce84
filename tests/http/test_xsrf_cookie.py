"""xsrf.cookie: the quick read of the _xsrf cookie agrees with aiohttp's full cookie parser."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from chat.web import xsrf

_PART = st.sampled_from(["_xsrf", " _xsrf ", "_xsrf2", "a", "x_xsrf", "", " "])
_VALUE = st.sampled_from(["tok-EN_1", "tok", "", " tok ", '"tok"', "t o", "t=o", "a\\b", "é", '"a;b"'])


def _header(pairs: list[tuple[str, str, str]]) -> str:
    return ";".join(f"{name}{eq}{value}" for name, eq, value in pairs)


_HEADERS = st.one_of(
    st.lists(st.tuples(_PART, st.sampled_from(["=", " = ", "", "; "]), _VALUE), max_size=5).map(_header),
    st.text(alphabet='_xsrf=; "\\ta1é,', max_size=30),
)


@given(_HEADERS)
def test_agrees_with_aiohttp(header: str) -> None:
    request = make_mocked_request("POST", "/", headers={"Cookie": header} if header else {})
    assert xsrf.cookie(request) == (request.cookies.get("_xsrf") if header else None)


def test_the_usual_header() -> None:
    request = make_mocked_request("POST", "/", headers={"Cookie": "a=1; _xsrf=tok-EN_1; b=2"})
    assert xsrf.cookie(request) == "tok-EN_1"
