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
local iid = nil
local expired = redis.call('ZRANGEBYSCORE', K_oq_locks, '-inf', fmt(now), 'LIMIT', 0, 1)
if #expired > 0 then
  iid = expired[1]
else
  local due = redis.call('ZRANGEBYSCORE', K_oq_ready, '-inf', fmt(now), 'LIMIT', 0, 1)
  if #due > 0 then
    iid = due[1]
    redis.call('ZREM', K_oq_ready, iid)
  end
end
if iid == nil then
  local first = redis.call('ZRANGE', K_oq_ready, 0, 0, 'WITHSCORES')
  if #first > 0 then arm_marker(K_oq_marker, tonumber(first[2]), now) end
  return {0}
end
local token = redis.call('INCR', K_seq) .. ':' .. A_nonce
local deadline = now + tonumber(A_lock_ms)
redis.call('HSET', K_oq_lock, iid, token)
redis.call('ZADD', K_oq_locks, fmt(deadline), iid)
-- baton passing: more work now wakes the next idle fetcher; else arm the next due time
local more = redis.call('ZRANGEBYSCORE', K_oq_locks, '-inf', fmt(now), 'LIMIT', 0, 1)
local first = redis.call('ZRANGE', K_oq_ready, 0, 0, 'WITHSCORES')
if #more > 0 then
  wake_now(K_oq_marker)
elseif #first > 0 then
  arm_marker(K_oq_marker, tonumber(first[2]), now)
end
return {0, iid, token, deadline}
