--[[
claim_orchestration: phase 1 of an orchestration fetch. Locks the instance whose lock expired
longest ago, else the one with the oldest visible message, using partition-level keys only.

KEYS
  1 pmeta          partition metadata HASH
  2 seq            partition sequence counter (lock epochs)
  3 oq_ready       ZSET instance -> earliest visible message (unlocked instances only)
  4 oq_locks       ZSET instance -> lock deadline
  5 oq_lock        HASH instance -> lock token
  6 oq_marker      wake-up marker ZSET
ARGV
  1 epoch
  2 nonce          random; the token is "<seq>:<nonce>"
  3 lock_ms
  4... skip        optional: instance ids this worker passes over (it lacks their orchestration
                   version: docs/deploying.md, "Version routing"); they stay queued for others,
                   and no marker is armed for them (a worker that skips them would spin)
RETURNS
  {0} nothing eligible
  {0, iid, token, lease_until_ms} locked; phase 2 (lock_messages) tags the messages
STATUS
  0 OK, 2 NAMESPACE_MISSING
]]
-- @include common
-- KEYS and ARGV, each named once (the header's names) ---------------------------------------
local K_pmeta = KEYS[1]      -- partition metadata HASH
local K_seq = KEYS[2]        -- partition sequence counter (lock epochs)
local K_oq_ready = KEYS[3]   -- ZSET instance -> earliest visible message (unlocked instances only)
local K_oq_locks = KEYS[4]   -- ZSET instance -> lock deadline
local K_oq_lock = KEYS[5]    -- HASH instance -> lock token
local K_oq_marker = KEYS[6]  -- wake-up marker ZSET
local A_epoch = ARGV[1]
local A_nonce = ARGV[2]      -- random; the token is "<seq>:<nonce>"
local A_lock_ms = ARGV[3]
if not epoch_ok(K_pmeta, A_epoch) then return {2} end
local now = server_now()
-- ARGV[4]...: the instance ids this worker passes over (version routing)
local skip = nil
if #ARGV > 3 then
  skip = {}
  for pos = 4, #ARGV do skip[ARGV[pos]] = true end
end
-- the first member of a ZSET (by score up to max) that this worker does not skip
local function first_of(key, max)
  if skip == nil then
    return redis.call('ZRANGEBYSCORE', key, '-inf', max, 'LIMIT', 0, 1)[1]
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', max, 'LIMIT', 0, #ARGV - 2)) do
    if not skip[id] then return id end
  end
  return nil
end
-- the earliest due time among the instances this worker does not skip, or nil
local function next_due()
  local n = (skip == nil) and 0 or (#ARGV - 3)
  local first = redis.call('ZRANGE', K_oq_ready, 0, n, 'WITHSCORES')
  for i = 1, #first, 2 do
    if skip == nil or not skip[first[i]] then return tonumber(first[i + 1]) end
  end
  return nil
end
local iid = first_of(K_oq_locks, fmt(now))
if iid == nil then
  iid = first_of(K_oq_ready, fmt(now))
  if iid ~= nil then redis.call('ZREM', K_oq_ready, iid) end
end
if iid == nil then
  local due = next_due()
  if due ~= nil then arm_marker(K_oq_marker, due, now) end
  return {0}
end
local token = redis.call('INCR', K_seq) .. ':' .. A_nonce
local deadline = now + tonumber(A_lock_ms)
redis.call('HSET', K_oq_lock, iid, token)
redis.call('ZADD', K_oq_locks, fmt(deadline), iid)
-- baton passing: more work now wakes the next idle fetcher; else arm the next due time
local due = next_due()
if first_of(K_oq_locks, fmt(now)) ~= nil then
  wake_now(K_oq_marker)
elseif due ~= nil then
  arm_marker(K_oq_marker, due, now)
end
return {0, iid, token, deadline}
