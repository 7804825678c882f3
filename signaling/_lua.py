"""The Lua scripts of the Redis presence (``_redis``): each decision two instances could
race on runs in Redis as one script, so Redis takes them one at a time. The keys and
values they use are described in ``_redis``."""

from __future__ import annotations

__all__ = ["CLAIM", "REFRESH", "RELEASE", "ROUTE", "SHARED", "UNRESERVE"]

KEEP_SEQ_MS = 86_400_000  # a room's counter outlives any pause of an instance holding it

# Shared by the scripts below (each EVAL is self-contained).
COMMON = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function owner_of(value)
  -- instance|session|digest|address: the address is last and may hold '|'
  return string.match(value, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
end
local function reserved_key(prefix, room, peer)
  return prefix .. 'reserved:' .. string.len(room) .. ':' .. room .. peer
end
local function event(prefix, room, seqkey, kind, peer, instance)
  local seq = redis.call('INCR', seqkey)
  local message = cjson.encode({seq = seq, event = kind, peer = peer, instance = instance})
  redis.call('PUBLISH', prefix .. 'room:' .. room, message)
  return seq
end
local function keep(members, owners, seqkey, keep_ms)
  redis.call('PEXPIRE', members, keep_ms)
  redis.call('PEXPIRE', owners, keep_ms)
  redis.call('PEXPIRE', seqkey, KEEP_SEQ_MS)
end
-- Expired peers leave: their ids are reserved for their resume secrets, the room hears.
local function sweep(prefix, room, members, owners, seqkey, now, reserve_ms)
  local gone = redis.call('ZRANGEBYSCORE', members, '-inf', now)
  for _, peer in ipairs(gone) do
    redis.call('ZREM', members, peer)
    local value = redis.call('HGET', owners, peer)
    local instance = ''
    if value then
      redis.call('HDEL', owners, peer)
      local i, s, d, a = owner_of(value)
      if i then
        instance = i
        if reserve_ms > 0 then
          local key = reserved_key(prefix, room, peer)
          redis.call('SET', key, d .. '|' .. s .. '|' .. a, 'PX', reserve_ms)
        end
      end
    end
    event(prefix, room, seqkey, 'left', peer, instance)
  end
end
""".replace("KEEP_SEQ_MS", str(KEEP_SEQ_MS))

# KEYS: members, owners, seq, reserved key of the peer. ARGV: prefix, room, peer, owner
# value, instance, ttl ms, max peers, digest of the presented resume secret or '', whether
# it is this join's own secret, grace, address full, reserve ms, keep ms.
CLAIM = (
    COMMON
    + """
local prefix, room, peer = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
sweep(prefix, room, KEYS[1], KEYS[2], KEYS[3], now, tonumber(ARGV[12]))
local given = ARGV[8]
local resumed = ARGV[9] == '1'
local owner = redis.call('HGET', KEYS[2], peer)
local reserved = false
local reserved_ms = 0
if owner then
  local _, _, d = owner_of(owner)
  if given ~= '' and d == given then resumed = true end
else
  local value = redis.call('GET', KEYS[4])
  if value then
    reserved = true
    reserved_ms = redis.call('PTTL', KEYS[4])
    if given ~= '' and string.match(value, '^([^|]*)|') == given then resumed = true end
  end
end
if owner and not resumed then return {'taken'} end
if reserved and not resumed then return {'reserved', reserved_ms} end
if not owner and not reserved and not resumed and ARGV[10] == '1' then return {'grace'} end
if ARGV[11] == '1' then return {'address'} end
if not owner and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[7]) then return {'full'} end
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[2], peer, ARGV[4])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[6]), peer)
local kind = 'joined'
if owner then kind = 'resumed' end
local seq = event(prefix, room, KEYS[3], kind, peer, ARGV[5])
keep(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[13]))
local result = {'ok', resumed and 1 or 0, seq}
for _, other in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if other ~= peer then table.insert(result, other) end
end
return result
"""
)

# KEYS: members, owners, seq, reserved key. ARGV: prefix, room, peer, session, instance,
# reserve ms, reservation value, keep ms. Only the session that holds the id releases it.
RELEASE = (
    COMMON
    + """
local value = redis.call('HGET', KEYS[2], ARGV[3])
if not value then return 0 end
local i, s = owner_of(value)
if i ~= ARGV[5] or s ~= ARGV[4] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[1], ARGV[3])
if tonumber(ARGV[6]) > 0 then redis.call('SET', KEYS[4], ARGV[7], 'PX', ARGV[6]) end
event(ARGV[1], ARGV[2], KEYS[3], 'left', ARGV[3], ARGV[5])
keep(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[8]))
return 1
"""
)

# KEYS: members, owners, seq. ARGV: prefix, room, instance, ttl ms, reserve ms, keep ms,
# then peer, session pairs. Returns the pairs no longer held (a sweep took them, or
# another session did): their sockets must rejoin.
REFRESH = (
    COMMON
    + """
local now = now_ms()
local expires = now + tonumber(ARGV[4])
local lost = {}
for n = 7, #ARGV - 1, 2 do
  local peer, session = ARGV[n], ARGV[n + 1]
  local value = redis.call('HGET', KEYS[2], peer)
  local i, s = nil, nil
  if value then i, s = owner_of(value) end
  if i == ARGV[3] and s == session and redis.call('ZSCORE', KEYS[1], peer) then
    redis.call('ZADD', KEYS[1], expires, peer)
  else
    table.insert(lost, peer)
    table.insert(lost, session)
  end
end
sweep(ARGV[1], ARGV[2], KEYS[1], KEYS[2], KEYS[3], now, tonumber(ARGV[5]))
keep(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[6]))
return lost
"""
)

# KEYS: owners, reserved key of the recipient. ARGV: prefix, recipient, payload.
# 1: published to its instance, 2: its instance does not listen, 3: reserved, 0: absent.
ROUTE = """
local value = redis.call('HGET', KEYS[1], ARGV[2])
if value then
  local instance = string.match(value, '^([^|]*)|')
  if instance and redis.call('PUBLISH', ARGV[1] .. 'instance:' .. instance, ARGV[3]) > 0 then
    return 1
  end
  return 2
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 3 end
return 0
"""

# KEYS: epoch, resume-key, check. ARGV: now, keep ms, resume key hex or '', check.
# The first instance's values win; live instances keep them from expiring.
SHARED = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3], 'NX') end
redis.call('SET', KEYS[3], ARGV[4], 'NX')
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]) or '', redis.call('GET', KEYS[3])}
"""

# KEYS: a reservation. ARGV: its value. Drops it only if it is still that one.
UNRESERVE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
