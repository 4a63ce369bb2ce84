"""The Redis data layout and the Lua scripts that read and write it. No I/O here.

- ``chat:epoch``: the deployment's store id, the first six characters of every epoch. Made once
  (``SET NX``) by the first process to start; a Redis that loses its data loses it too, so every
  history after that has epochs no older cursor can match.
- Per room, in one Cluster hash slot (the ``{room}`` hash tag), both expiring ``--room-ttl`` after
  the room's last post:

  - ``chat:{room}:m``, a hash: ``e`` the epoch of the room's current history, ``t`` the Redis
    millisecond that history began (the epoch's last eight characters), ``n`` its newest seq.
  - ``chat:{room}:s``, the stream: message ``<epoch>-<seq>`` is entry ``<t>-<seq>`` with fields
    ``e`` (epoch), ``b`` (body), ``n`` (name, '' for none) and ``t`` (ts). A history that begins
    after another one expired begins at a later millisecond, so its entries sort after the old
    ones and a reader blocked after an old entry still reads them.
  - ``chat:{room}:k:<key>``, a hash per idempotency key: ``f`` (the fingerprint of body and
    name), and the message it stored (``e``, ``s``, ``b``, ``n``, ``t``), for
    --idempotency-window. It is checked and written by the same script as the append, so two
    processes posting one key at once store one message.

A read never writes (an empty room has no keys). Entries are removed only by our own trimming,
so the oldest entry tells what is still kept: ``MAXLEN ~ --retain-messages`` on every post, and
with ``--retain-days`` the entries older than that, oldest first, at most 100 per post
(a room's keys also expire ``--retain-days`` after its last post when that is sooner than
``--room-ttl``, so a room nobody posts to goes whole).
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "chat:"
EPOCH_KEY: Final = f"{PREFIX}epoch"
SECRET_KEY: Final = f"{PREFIX}secret"  # the server secret every process shares (made once)
HEALTH_KEY: Final = f"{PREFIX}health"  # /healthz writes it (expiring): does Redis take writes?
# The room list (GET /a/rooms) of every process: a sorted set of rooms scored by the time of
# their newest message (Unix seconds), which each process adds its posts' rooms to once a second
# (never from a read), and trims to the newest ROOMS_KEPT and to --room-ttl.
ROOMS_KEY: Final = f"{PREFIX}rooms"
ROOMS_KEPT: Final = 1000


def meta_key(room: str) -> str:
    return f"{PREFIX}{{{room}}}:m"


def stream_key(room: str) -> str:
    return f"{PREFIX}{{{room}}}:s"


def presence_key(room: str) -> str:
    """The room's presence: one field per process with members there, renewed every few
    seconds (``<expires ms> <unnamed> <JSON names>``); the key expires with its last process."""
    return f"{PREFIX}{{{room}}}:p"


# Typing and presence notices for every process: a stream that every reader reads besides the
# rooms (``k`` "typing" with ``r`` room, ``n`` name, ``u`` until; or "presence" with ``r``),
# capped near NOTICES_KEPT entries. A stream rather than Pub/Sub: the reader already keeps one.
NOTICES_KEY: Final = f"{PREFIX}notices"
NOTICES_KEPT: Final = 1000


def client_key(room: str, key: str) -> str:
    """What ``key`` stored in ``room``: a hash of its fingerprint and the message, expiring after
    --idempotency-window."""
    return f"{PREFIX}{{{room}}}:k:{key}"


def room_of(stream: str) -> str:
    """The room of a ``stream_key``."""
    return stream[len(PREFIX) + 1:stream.index("}:")]


def parse_entry_id(value: str) -> tuple[int, int]:
    """(the history's start ms, seq) of a stream entry id."""
    ms, _, seq = value.partition("-")
    return int(ms), int(seq)


_HELPERS = """
local function base36(n)
  local digits, s = '0123456789abcdefghijklmnopqrstuvwxyz', ''
  while n > 0 do
    local d = n % 36
    s = string.sub(digits, d + 1, d + 1) .. s
    n = (n - d) / 36
  end
  return string.rep('0', 8 - #s) .. s
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The seq just before the oldest kept entry (the newest seq when none is kept).
local function floor_of(stream, n)
  local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
  if not oldest then return n end
  return tonumber(string.match(oldest[1], '-(%d+)$')) - 1
end
"""

# KEYS: meta, stream, epoch key, [the idempotency key's hash].
# ARGV: a new store id (used if the deployment has none yet), retain (MAXLEN ~), room TTL in ms,
#       deadline in Redis ms ('0': none), body, name ('' for none), ts, retain ms ('0': no age
#       limit), [fingerprint, window ms].
# Returns {epoch, seq}; {epoch, seq, body, name, ts} when the key stored that message before;
# {'conflict'} when it stored another body; or false when the deadline has passed: the caller
# has already answered 503, so a command that reaches Redis late must store nothing.
PUBLISH: Final = _HELPERS + """
local now = now_ms()
local deadline = tonumber(ARGV[4])
if deadline > 0 and now > deadline then return false end
if KEYS[4] then
  local seen = redis.call('HMGET', KEYS[4], 'f', 'e', 's', 'b', 'n', 't')
  if seen[1] then
    if seen[1] ~= ARGV[9] then return {'conflict'} end
    return {seen[2], seen[3], seen[4], seen[5], seen[6]}
  end
end
local meta = redis.call('HMGET', KEYS[1], 'e', 't', 'n')
local epoch, t, seq = meta[1], tonumber(meta[2]), tonumber(meta[3])
if epoch then
  seq = seq + 1
else
  local store = redis.call('GET', KEYS[3])
  if not store then
    store = ARGV[1]
    redis.call('SET', KEYS[3], store)
  end
  t = now
  -- A stream left without its meta (never by us) must still only grow.
  local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
  if newest then
    local last_t = tonumber(string.match(newest[1], '^(%d+)-'))
    if last_t >= t then t = last_t + 1 end
  end
  epoch, seq = store .. base36(t), 1
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], t .. '-' .. seq,
           'e', epoch, 'b', ARGV[5], 'n', ARGV[6], 't', ARGV[7])
local retain_ms = tonumber(ARGV[8])
if retain_ms > 0 then
  -- Up to 100 of the oldest entries posted before the cutoff (field t, in seconds): the stream
  -- then starts at the first entry that is newer, or at the 101st, or at the newest.
  local cutoff = (now - retain_ms) / 1000
  local function expired(entry)
    local f = entry[2]
    for j = 1, #f, 2 do if f[j] == 't' then return tonumber(f[j + 1]) < cutoff end end
    return false
  end
  if expired(redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]) then
    local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 101)
    local keep = oldest[#oldest][1]
    for i = 2, math.min(#oldest, 100) do
      if not expired(oldest[i]) then keep = oldest[i][1] break end
    end
    redis.call('XTRIM', KEYS[2], 'MINID', '=', keep)
  end
end
redis.call('HSET', KEYS[1], 'e', epoch, 't', t, 'n', seq)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if KEYS[4] then
  redis.call('HSET', KEYS[4], 'f', ARGV[9], 'e', epoch, 's', seq, 'b', ARGV[5], 'n', ARGV[6],
             't', ARGV[7])
  redis.call('PEXPIRE', KEYS[4], ARGV[10])
end
return {epoch, seq}
"""

# KEYS: meta, stream, epoch key.
# ARGV: mode, seq, limit, epoch (mode 'before' only).
#   'after':  the first `limit` entries after seq;  'newest': the newest `limit`;
#   'before': the `limit` entries just before seq, if `epoch` is the current history's;
#   'state':  no entries.
# Returns {store id or false, epoch or false, t, newest seq, floor, entries}; for a room with no
# history, t is Redis's clock now (which dates the room's base). Writes nothing.
READ: Final = _HELPERS + """
local store = redis.call('GET', KEYS[3])
local meta = redis.call('HMGET', KEYS[1], 'e', 't', 'n')
local epoch, t, n = meta[1], meta[2], tonumber(meta[3])
if not epoch then return {store, false, now_ms(), 0, 0, {}} end
local floor = floor_of(KEYS[2], n)
local mode, seq, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local entries = {}
if mode == 'after' then
  entries = redis.call('XRANGE', KEYS[2], '(' .. t .. '-' .. seq, '+', 'COUNT', limit)
elseif mode == 'newest' or (mode == 'before' and ARGV[4] == epoch) then
  local hi = '+'
  if mode == 'before' then hi = '(' .. t .. '-' .. seq end
  local newer = redis.call('XREVRANGE', KEYS[2], hi, '-', 'COUNT', limit)
  for i = #newer, 1, -1 do entries[#entries + 1] = newer[i] end
end
return {store, epoch, t, n, floor, entries}
"""
