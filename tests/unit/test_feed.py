"""The feed over each store, called directly: what every store must give the replay rule.

Like every app-level test these run on both stores (conftest's ``store_url``).
"""

from __future__ import annotations

import pytest

from chat.feed import Feed

from ..support import position, with_settings, zero_cursor


async def _publish(feed: Feed, n: int, room: str = "main") -> list[str]:
    return [(await feed.publish(room, f"m{i}", None)).message.id for i in range(n)]


async def test_published_message_is_held_when_publish_returns(feed: Feed) -> None:
    message = (await feed.publish("main", "hi", "ann")).message
    page = await feed.read("main", None)
    assert [m.as_dict() for m in page.messages] == [message.as_dict()]
    assert page.reset is None


async def test_ids_strictly_increase_within_one_epoch(feed: Feed) -> None:
    ids = await _publish(feed, 30)
    assert len({i.split("-")[0] for i in ids}) == 1
    assert [position(i) for i in ids] == [(n,) for n in range(1, 31)]


async def test_every_held_id_resumes_exactly(feed: Feed) -> None:
    ids = await _publish(feed, 8)
    for k, cursor in enumerate(ids):
        replay = await feed.read("main", cursor)
        assert ([m.id for m in replay.messages], replay.reset, replay.base) == (ids[k + 1:], None,
                                                                                cursor)


@pytest.mark.parametrize("settings", [with_settings(history=5)], ids=["history-5"])
async def test_a_page_is_the_newest_history_messages(feed: Feed) -> None:
    ids = await _publish(feed, 130)
    page = await feed.read("main", None)
    assert ([m.id for m in page.messages], page.reset, page.base) == (ids[-5:], None, ids[-6])
    for k in range(len(ids) - 6, len(ids)):  # from the base on, every cursor resumes
        assert [m.id for m in (await feed.read("main", ids[k])).messages] == ids[k + 1:]


@pytest.mark.parametrize("settings", [with_settings(history=5)], ids=["history-5"])
@pytest.mark.parametrize("store_url", ["memory"])  # RAM is all the memory store keeps
async def test_older_cursors_are_evicted_from_the_memory_store(feed: Feed) -> None:
    ids = await _publish(feed, 130)
    for cursor in (ids[-7], ids[0], zero_cursor(ids[0])):
        evicted = await feed.read("main", cursor)
        assert ([m.id for m in evicted.messages], evicted.reset, evicted.base) == (
            ids[-5:], "evicted", ids[-6])


async def test_empty_room_base_stays_valid_after_first_message(feed: Feed) -> None:
    empty = await feed.read("fresh", None)
    assert (empty.messages, empty.reset) == ([], None)
    assert empty.base.endswith("-0")
    assert (await feed.read("fresh", empty.base)).reset is None
    first = (await feed.publish("fresh", "first", None)).message
    after = await feed.read("fresh", empty.base)
    assert ([m.id for m in after.messages], after.reset) == ([first.id], None)


async def test_a_base_of_another_store_is_a_foreign_epoch(feed: Feed) -> None:
    await _publish(feed, 1, room="fresh")
    stranger = "zzzzzz" + (await feed.read("fresh", None)).base[6:]
    assert (await feed.read("fresh", stranger)).reset == "epoch"


async def test_rooms_do_not_share_history(feed: Feed) -> None:
    a = await _publish(feed, 2, room="a")
    b = await _publish(feed, 2, room="b")
    assert [m.id for m in (await feed.read("a", None)).messages] == a
    assert [m.id for m in (await feed.read("b", None)).messages] == b
