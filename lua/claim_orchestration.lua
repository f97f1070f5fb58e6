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
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local now = server_now()
local iid = nil
local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', fmt(now), 'LIMIT', 0, 1)
if #expired > 0 then
  iid = expired[1]
else
  local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', fmt(now), 'LIMIT', 0, 1)
  if #due > 0 then
    iid = due[1]
    redis.call('ZREM', KEYS[3], iid)
  end
end
if iid == nil then
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if #first > 0 then arm_marker(KEYS[6], tonumber(first[2]), now) end
  return {0}
end
local token = redis.call('INCR', KEYS[2]) .. ':' .. ARGV[2]
local deadline = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[5], iid, token)
redis.call('ZADD', KEYS[4], fmt(deadline), iid)
-- baton passing: more work now wakes the next idle fetcher; else arm the next due time
local more = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', fmt(now), 'LIMIT', 0, 1)
local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if #more > 0 then
  wake_now(KEYS[6])
elseif #first > 0 then
  arm_marker(KEYS[6], tonumber(first[2]), now)
end
return {0, iid, token, deadline}
