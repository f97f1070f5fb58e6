--[[
abandon_orchestration: release an instance lock without committing. The tagged messages stay
queued, visible again after delay_ms; count_attempt "0" gives back the attempt the fetch counted
(never below 0); a counted one bumps "<mid>|c" (the turn ended, the worker lived: not a crash,
see lock_messages). until_start "1" (an instance not started yet, whose start message was not among
the tagged ones: delayed by start_at or a back-off) keeps them until its start message is visible
too, so they are delivered with it instead of being consumed by a turn that cannot apply them.
held (non-empty) marks the instance held (its code diverged from its history): the text goes to
the record's "held" field, "held_at" the first time (commit_turn clears both).

KEYS
  1 pmeta          partition metadata HASH
  2 oq_lock        HASH instance -> lock token
  3 oq_locks       ZSET instance -> lock deadline
  4 oq_ready       ZSET instance -> earliest visible message
  5 oq_marker      wake-up marker ZSET
  6 mz             instance message ZSET
  7 mh             instance message HASH
  8 inst           instance record HASH (its "smid" names the start message)
ARGV
  1 epoch
  2 iid
  3 token
  4 delay_ms
  5 count_attempt  "1" / "0"
  6 until_start    "1" / "0"
  7 held           divergence text, or "" (not held)
RETURNS
  {0, 1} released
  {0, 0} until_start and no start message queued for later: nothing changed, the lock is held
STATUS
  0 OK, 1 LEASE_LOST (token no longer holds the lock), 2 NAMESPACE_MISSING
]]
-- @include common
-- KEYS and ARGV, each named once (the header's names) ---------------------------------------
local K_pmeta = KEYS[1]          -- partition metadata HASH
local K_oq_lock = KEYS[2]        -- HASH instance -> lock token
local K_oq_locks = KEYS[3]       -- ZSET instance -> lock deadline
local K_oq_ready = KEYS[4]       -- ZSET instance -> earliest visible message
local K_oq_marker = KEYS[5]      -- wake-up marker ZSET
local K_mz = KEYS[6]             -- instance message ZSET
local K_mh = KEYS[7]             -- instance message HASH
local K_inst = KEYS[8]           -- instance record HASH (its "smid" names the start message)
local A_epoch = ARGV[1]
local A_iid = ARGV[2]
local A_token = ARGV[3]
local A_delay_ms = ARGV[4]
local A_count_attempt = ARGV[5]  -- "1" / "0"
local A_until_start = ARGV[6]    -- "1" / "0"
local A_held = ARGV[7]           -- divergence text, or "" (not held)
if not epoch_ok(K_pmeta, A_epoch) then return {2} end
local now = server_now()
local iid = A_iid
local token = A_token
if redis.call('HGET', K_oq_lock, iid) ~= token then return {1} end
local delay = tonumber(A_delay_ms)
local visible_at = now + delay
if A_until_start == '1' then
  local smid = redis.call('HGET', K_inst, 'smid')
  local start = smid and redis.call('HGET', K_mh, smid .. '|m')
  local start_at = start and tonumber(redis.call('ZSCORE', K_mz, start) or '0') or 0
  if start_at <= now then return {0, 0} end -- no later start to wait for: nothing changed
  if start_at > visible_at then visible_at = start_at end
end
for _, member in ipairs(redis.call('ZRANGE', K_mz, 0, -1)) do
  local mid = string.sub(member, 18)
  if redis.call('HGET', K_mh, mid .. '|t') == token then
    redis.call('HDEL', K_mh, mid .. '|t')
    if A_count_attempt == '0' then
      local a = tonumber(redis.call('HGET', K_mh, mid .. '|a') or '0')
      if a > 0 then redis.call('HSET', K_mh, mid .. '|a', fmt(a - 1)) end
    else -- counted, but the worker lived to hand it back: not a crash (lock_messages)
      redis.call('HINCRBY', K_mh, mid .. '|c', 1)
    end
    if visible_at > now then redis.call('ZADD', K_mz, fmt(visible_at), member) end
  end
end
if A_held ~= '' and redis.call('EXISTS', K_inst) == 1 then
  redis.call('HSET', K_inst, 'held', A_held)
  redis.call('HSETNX', K_inst, 'held_at', fmt(now))
end
redis.call('HDEL', K_oq_lock, iid)
redis.call('ZREM', K_oq_locks, iid)
requeue_instance(K_mz, K_oq_ready, K_oq_locks, K_oq_marker, iid, now)
return {0, 1}
