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
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local now = server_now()
local iid = ARGV[2]
local token = ARGV[3]
if redis.call('HGET', KEYS[2], iid) ~= token then return {1} end
local delay = tonumber(ARGV[4])
local visible_at = now + delay
if ARGV[6] == '1' then
  local smid = redis.call('HGET', KEYS[8], 'smid')
  local start = smid and redis.call('HGET', KEYS[7], smid .. '|m')
  local start_at = start and tonumber(redis.call('ZSCORE', KEYS[6], start) or '0') or 0
  if start_at <= now then return {0, 0} end -- no later start to wait for: nothing changed
  if start_at > visible_at then visible_at = start_at end
end
for _, member in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
  local mid = string.sub(member, 18)
  if redis.call('HGET', KEYS[7], mid .. '|t') == token then
    redis.call('HDEL', KEYS[7], mid .. '|t')
    if ARGV[5] == '0' then
      local a = tonumber(redis.call('HGET', KEYS[7], mid .. '|a') or '0')
      if a > 0 then redis.call('HSET', KEYS[7], mid .. '|a', fmt(a - 1)) end
    else -- counted, but the worker lived to hand it back: not a crash (lock_messages)
      redis.call('HINCRBY', KEYS[7], mid .. '|c', 1)
    end
    if visible_at > now then redis.call('ZADD', KEYS[6], fmt(visible_at), member) end
  end
end
if ARGV[7] ~= '' and redis.call('EXISTS', KEYS[8]) == 1 then
  redis.call('HSET', KEYS[8], 'held', ARGV[7])
  redis.call('HSETNX', KEYS[8], 'held_at', fmt(now))
end
redis.call('HDEL', KEYS[2], iid)
redis.call('ZREM', KEYS[3], iid)
requeue_instance(KEYS[6], KEYS[4], KEYS[3], KEYS[5], iid, now)
return {0, 1}
