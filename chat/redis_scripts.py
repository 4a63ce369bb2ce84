"""The Redis data layout and the two Lua scripts that read and write it. No I/O here.

Per room, two keys in one Cluster hash slot (the ``{room}`` hash tag):

- ``chat:{room}:stream``: the history, a stream capped near ``history`` entries (``XADD MAXLEN ~``).
  Each entry's fields are ``e`` (the epoch), ``body``, ``name`` ('' for none) and ``ts``. The
  message id is ``<e>-<stream id>``, e.g. ``k3v9x0qa2b-1795770403829-0``.
- ``chat:{room}:epoch``: only while the room has no history: the epoch its first message will
  get, so an empty room's base cursor (``<epoch>-0-0``) stays valid once messages arrive. It
  expires when nobody has asked for it for a while; the first message adopts and deletes it.

The epoch of a history is the ``e`` of its newest entry. A stream that disappears (FLUSHALL,
DEL, a Redis restart without persistence, maxmemory eviction) takes its epoch with it, so the
next message starts a new epoch and every older cursor resets instead of being trusted.
Entries are only ever removed by our own trimming (the store never XDELs), so "no newest entry"
means "no history".
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "chat:"


def stream_key(room: str) -> str:
    return f"{PREFIX}{{{room}}}:stream"


def epoch_key(room: str) -> str:
    return f"{PREFIX}{{{room}}}:epoch"


def room_of(stream: str) -> str:
    """The room of a ``stream_key``."""
    return stream[len(PREFIX) + 1:stream.index("}:")]


def parse_stream_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq)


def format_stream_id(pos: tuple[int, ...]) -> str:
    return "-".join(map(str, pos))


_HELPERS = """
-- Stream ids "ms-seq" padded so that they compare as strings (Lua numbers are doubles and
-- would round a 64-bit sequence number).
local function order(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return string.rep('0', 20 - #ms) .. ms .. string.rep('0', 20 - #seq) .. seq
end
local function epoch_of(entry)
  local f = entry[2]
  for i = 1, #f, 2 do
    if f[i] == 'e' then return f[i + 1] end
  end
  return false
end
local function max_deleted(stream)
  local info = redis.call('XINFO', 'STREAM', stream)
  for i = 1, #info, 2 do
    if info[i] == 'max-deleted-entry-id' then return info[i + 1] end
  end
  return '0-0'
end
"""

# KEYS: epoch key, stream key.
# ARGV: new epoch (used when the room has no history and no pending epoch), history (MAXLEN ~),
#       deadline in Redis milliseconds ('0': none), body, name ('' for none), ts.
# Returns {epoch, stream id}, or nil when the deadline has passed: the caller has already
# answered 503, so a command that reaches Redis late must store nothing.
PUBLISH: Final = _HELPERS + """
local deadline = tonumber(ARGV[3])
if deadline > 0 then
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > deadline then return false end
end
local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
local epoch
if newest then
  epoch = epoch_of(newest)
else
  epoch = redis.call('GET', KEYS[1]) or ARGV[1]
  redis.call('DEL', KEYS[1])
end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
                      'e', epoch, 'body', ARGV[4], 'name', ARGV[5], 'ts', ARGV[6])
return {epoch, id}
"""

# KEYS: epoch key, stream key.
# ARGV: history N, reader epoch and reader id (how far this process's hub has been given the
#       room; '' and '' for no bound), cursor epoch and cursor stream id ('' and '': no cursor;
#       id 'x': not a stream id's shape), new epoch, pending-epoch TTL in ms, mode.
# mode 'latest' returns {epoch, newest id}. Mode 'since' returns {epoch, newest id, reset reason
# ('' when the cursor is trusted), base, entries}: the entries after the cursor, or for a reset
# the newest N (N = history); both only up to the reader's id. ``base`` stands just before the
# entries and is itself accepted as a cursor later. Every lookup is by id: O(log n + N).
SINCE: Final = _HELPERS + """
local n = tonumber(ARGV[1])
local c_epoch, c_id = ARGV[4], ARGV[5]
local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
if not newest then
  local epoch = redis.call('GET', KEYS[1])
  if epoch then
    redis.call('PEXPIRE', KEYS[1], ARGV[7])
  else
    epoch = ARGV[6]
    redis.call('SET', KEYS[1], epoch, 'PX', ARGV[7])
  end
  if ARGV[8] == 'latest' then return {epoch, '0-0'} end
  local reason = ''
  if c_epoch ~= '' then
    if c_epoch ~= epoch then reason = 'epoch' elseif c_id ~= '0-0' then reason = 'unknown' end
  end
  return {epoch, '0-0', reason, '0-0', {}}
end
local epoch, last = epoch_of(newest), newest[1]
if ARGV[8] == 'latest' then return {epoch, last} end
local hi = last
if ARGV[2] == epoch and order(ARGV[3]) < order(last) then hi = ARGV[3] end
local reason = ''
if c_epoch ~= '' then
  if c_epoch ~= epoch then
    reason = 'epoch'
  elseif c_id == 'x' or order(c_id) > order(last) then
    reason = 'unknown'
  elseif #redis.call('XRANGE', KEYS[2], c_id, c_id) == 0 then
    -- Not an entry. Below the oldest entry it still resumes if nothing after it was ever
    -- trimmed (so 0-0 in an untrimmed room, or the base handed out below); otherwise it is gone.
    local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1][1]
    if order(c_id) > order(oldest) then
      reason = 'unknown'
    elseif order(c_id) < order(max_deleted(KEYS[2])) then
      reason = 'evicted'
    end
  end
  if reason == '' then
    local after = redis.call('XRANGE', KEYS[2], '(' .. c_id, hi, 'COUNT', n + 1)
    if #after <= n then return {epoch, last, '', c_id, after} end
    reason = 'evicted'  -- more than N newer messages: older than the buffer the room keeps
  end
end
local newer = redis.call('XREVRANGE', KEYS[2], hi, '-', 'COUNT', n + 1)
local base
if #newer > n then base = table.remove(newer)[1] else base = max_deleted(KEYS[2]) end
local held = {}
for i = #newer, 1, -1 do held[#held + 1] = newer[i] end
return {epoch, last, reason, base, held}
"""
