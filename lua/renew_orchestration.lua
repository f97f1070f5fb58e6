--[[
renew_orchestration: extend an instance lock held with a live token.

KEYS
  1 pmeta          partition metadata HASH
  2 oq_lock        HASH instance -> lock token
  3 oq_locks       ZSET instance -> lock deadline
ARGV
  1 epoch
  2 iid
  3 token
  4 lock_ms
RETURNS
  {0, lease_until_ms}
STATUS
  0 OK, 1 LEASE_LOST (stale token or expired lease), 2 NAMESPACE_MISSING
]]
-- @include common
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local now = server_now()
local iid = ARGV[2]
if redis.call('HGET', KEYS[2], iid) ~= ARGV[3] then return {1} end
if tonumber(redis.call('ZSCORE', KEYS[3], iid) or '0') <= now then return {1} end
local deadline = now + tonumber(ARGV[4])
redis.call('ZADD', KEYS[3], fmt(deadline), iid)
return {0, deadline}
