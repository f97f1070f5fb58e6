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
-- KEYS and ARGV, each named once (the header's names) ---------------------------------------
local K_pmeta = KEYS[1]     -- partition metadata HASH
local K_oq_lock = KEYS[2]   -- HASH instance -> lock token
local K_oq_locks = KEYS[3]  -- ZSET instance -> lock deadline
local A_epoch = ARGV[1]
local A_iid = ARGV[2]
local A_token = ARGV[3]
local A_lock_ms = ARGV[4]
if not epoch_ok(K_pmeta, A_epoch) then return {2} end
local now = server_now()
local iid = A_iid
if redis.call('HGET', K_oq_lock, iid) ~= A_token then return {1} end
if tonumber(redis.call('ZSCORE', K_oq_locks, iid) or '0') <= now then return {1} end
local deadline = now + tonumber(A_lock_ms)
redis.call('ZADD', K_oq_locks, fmt(deadline), iid)
return {0, deadline}
