--[[
lock_messages: phase 2 of an orchestration fetch. Tags the instance's visible messages with the
lock token (attempt + 1 each, once per token) and returns them with the instance record, and the
history of the current execution when the caller guessed its execution id (KEYS[10] is the
history LIST of that guess: the caller builds the key, the script only checks the record's exec).

KEYS
  1 pmeta          partition metadata HASH
  2 oq_lock        HASH instance -> lock token
  3 oq_locks       ZSET instance -> lock deadline
  4 oq_ready       ZSET instance -> earliest visible message
  5 oq_marker      wake-up marker ZSET
  6 inst           instance record HASH
  7 done           ids consumed by the last turn
  8 mz             instance message ZSET
  9 mh             instance message HASH
  10 hist          history LIST of ARGV[5]'s execution   h:<exec>:<iid>
ARGV
  1 epoch
  2 iid
  3 token
  4 max_messages
  5 exec_guess     execution id whose history KEYS[10] is
RETURNS
  {0, lease_until_ms, {instance field, value, ...}, {mid, data, attempt, ...}, read, {event, ...}}
    read = 1 if the record's exec is ARGV[5] (the list is that execution's history, all of it),
    else 0 (the list is empty; the caller reads the history itself)
STATUS
  0 OK, 1 LEASE_LOST, 2 NAMESPACE_MISSING,
  4 NOT_FOUND (instance gone: its orphan messages were deleted and the lock released),
  5 EMPTY (no visible message: lock released)
]]
-- @include common
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local now = server_now()
local iid = ARGV[2]
local token = ARGV[3]
local deadline = tonumber(redis.call('ZSCORE', KEYS[3], iid) or '0')
if redis.call('HGET', KEYS[2], iid) ~= token or deadline <= now then return {1} end
if redis.call('EXISTS', KEYS[6]) == 0 then
  redis.call('DEL', KEYS[7], KEYS[8], KEYS[9])
  redis.call('HDEL', KEYS[2], iid)
  redis.call('ZREM', KEYS[3], iid)
  redis.call('ZREM', KEYS[4], iid)
  return {4}
end
local visible = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', fmt(now), 'LIMIT', 0,
                           tonumber(ARGV[4]))
if #visible == 0 then
  redis.call('HDEL', KEYS[2], iid)
  redis.call('ZREM', KEYS[3], iid)
  requeue_instance(KEYS[8], KEYS[4], KEYS[3], KEYS[5], iid, now)
  return {5}
end
local msgs = {}
for _, member in ipairs(visible) do
  local mid = string.sub(member, 18)
  local attempt
  if redis.call('HGET', KEYS[9], mid .. '|t') == token then
    attempt = redis.call('HGET', KEYS[9], mid .. '|a')
  else
    redis.call('HSET', KEYS[9], mid .. '|t', token)
    attempt = redis.call('HINCRBY', KEYS[9], mid .. '|a', 1)
  end
  msgs[#msgs + 1] = mid
  msgs[#msgs + 1] = redis.call('HGET', KEYS[9], mid .. '|d')
  msgs[#msgs + 1] = tostring(attempt)
end
local hist = {}
local read = 0
if redis.call('HGET', KEYS[6], 'exec') == ARGV[5] then
  read = 1
  hist = redis.call('LRANGE', KEYS[10], 0, -1)
end
return {0, deadline, redis.call('HGETALL', KEYS[6]), msgs, read, hist}
