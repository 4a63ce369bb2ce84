"""xsrf.cookie: the quick read of the _xsrf cookie agrees with aiohttp's full cookie parser;
xsrf.Tokens: only what the server signed is valid, and any text at all is answered."""

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


_SECRET = b"k" * 32


def test_a_minted_token_is_valid_under_its_secret_only() -> None:
    token = xsrf.Tokens(_SECRET).mint()
    assert len(token) == 48 and xsrf.Tokens(_SECRET).valid(token)
    assert not xsrf.Tokens(b"another secret").valid(token)
    assert not xsrf.Tokens(b"").valid(token)  # no secret yet: nothing is valid
    assert xsrf.Tokens(_SECRET).mint() != token


@given(st.one_of(st.text(), st.text(alphabet="ABCabc012_-", min_size=48, max_size=48),
                 st.binary().map(lambda b: b.decode("latin-1"))))
def test_any_text_is_invalid_and_never_raises(text: str) -> None:
    assert not xsrf.Tokens(_SECRET).valid(text)


@given(st.integers(0, 47), st.sampled_from("AQgw_-"))
def test_one_character_changed_is_invalid(i: int, c: str) -> None:
    token = xsrf.sign(_SECRET, b"n" * 18)
    changed = token[:i] + c + token[i + 1:]
    assert xsrf.Tokens(_SECRET).valid(changed) == (changed == token)
