--[[
abandon_orchestration: release an instance lock without committing. The tagged messages stay
queued, visible again after delay_ms; count_attempt "0" gives back the attempt the fetch counted
(never below 0).

KEYS
  1 pmeta          partition metadata HASH
  2 oq_lock        HASH instance -> lock token
  3 oq_locks       ZSET instance -> lock deadline
  4 oq_ready       ZSET instance -> earliest visible message
  5 oq_marker      wake-up marker ZSET
  6 mz             instance message ZSET
  7 mh             instance message HASH
ARGV
  1 epoch
  2 iid
  3 token
  4 delay_ms
  5 count_attempt  "1" / "0"
RETURNS
  {0}
STATUS
  0 OK, 1 LEASE_LOST (token no longer holds the lock), 2 NAMESPACE_MISSING
]]
-- @include common
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local now = server_now()
local iid = ARGV[2]
local token = ARGV[3]
if redis.call('HGET', KEYS[2], iid) ~= token then return {1} end
local delay = tonumber(ARGV[4])
for _, member in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
  local mid = string.sub(member, 18)
  if redis.call('HGET', KEYS[7], mid .. '|t') == token then
    redis.call('HDEL', KEYS[7], mid .. '|t')
    if ARGV[5] == '0' then
      local a = tonumber(redis.call('HGET', KEYS[7], mid .. '|a') or '0')
      if a > 0 then redis.call('HSET', KEYS[7], mid .. '|a', fmt(a - 1)) end
    end
    if delay > 0 then redis.call('ZADD', KEYS[6], fmt(now + delay), member) end
  end
end
redis.call('HDEL', KEYS[2], iid)
redis.call('ZREM', KEYS[3], iid)
requeue_instance(KEYS[6], KEYS[4], KEYS[3], KEYS[5], iid, now)
return {0}
