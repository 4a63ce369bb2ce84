"""The Store contract itself, called directly; like every app test, it runs on both stores."""

from __future__ import annotations

import pytest

from chat.store import Store

from .support import position, with_settings, zero_cursor


async def _publish(store: Store, n: int, room: str = "main") -> list[str]:
    return [(await store.publish(room, f"m{i}", None)).id for i in range(n)]


async def test_published_message_is_held_when_publish_returns(store: Store) -> None:
    message = await store.publish("main", "hi", "ann")
    since = await store.since("main", None)
    assert [m.as_dict() for m in since.messages] == [message.as_dict()]
    assert since.reset is None


async def test_ids_strictly_increase_within_one_epoch(store: Store) -> None:
    ids = await _publish(store, 30)
    assert len({i.split("-")[0] for i in ids}) == 1
    assert [position(i) for i in ids] == sorted(position(i) for i in ids)
    assert len(set(ids)) == 30


async def test_every_held_id_resumes_exactly(store: Store) -> None:
    ids = await _publish(store, 8)
    for k, cursor in enumerate(ids):
        since = await store.since("main", cursor)
        assert ([m.id for m in since.messages], since.reset, since.base) == (ids[k + 1:], None, cursor)


@pytest.mark.parametrize("settings", [with_settings(history=5)], ids=["history-5"])
async def test_buffer_is_the_newest_history_messages(store: Store) -> None:
    """Redis trims with MAXLEN ~ (whole nodes), so its stream holds more than 5: the buffer does not."""
    ids = await _publish(store, 130)
    since = await store.since("main", None)
    assert ([m.id for m in since.messages], since.reset, since.base) == (ids[-5:], None, ids[-6])
    for k in range(len(ids) - 6, len(ids)):  # from the base on, every cursor resumes
        assert [m.id for m in (await store.since("main", ids[k])).messages] == ids[k + 1:]
    for cursor in (ids[-7], ids[0], zero_cursor(ids[0])):  # older ones are evicted
        evicted = await store.since("main", cursor)
        assert ([m.id for m in evicted.messages], evicted.reset, evicted.base) == (
            ids[-5:], "evicted", ids[-6])


async def test_empty_room_base_stays_valid_after_first_message(store: Store) -> None:
    empty = await store.since("fresh", None)
    assert (empty.messages, empty.reset) == ([], None)
    assert await store.latest("fresh") == empty.base
    assert (await store.since("fresh", empty.base)).reset is None
    first = await store.publish("fresh", "first", None)
    after = await store.since("fresh", empty.base)
    assert ([m.id for m in after.messages], after.reset) == ([first.id], None)


async def test_latest_is_the_newest_id(store: Store) -> None:
    ids = await _publish(store, 3)
    assert await store.latest("main") == ids[-1]
    assert (await store.since("main", await store.latest("main"))).messages == []


async def test_rooms_do_not_share_history(store: Store) -> None:
    a = await _publish(store, 2, room="a")
    b = await _publish(store, 2, room="b")
    assert [m.id for m in (await store.since("a", None)).messages] == a
    assert [m.id for m in (await store.since("b", None)).messages] == b
