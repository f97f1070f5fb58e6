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
  {0, lease_until_ms, {instance field, value, ...}, {mid, data, attempt, ...}, read, {event, ...},
   crashes}
    read = 1 if the record's exec is ARGV[5] (the list is that execution's history, all of it),
    else 0 (the list is empty; the caller reads the history itself)
    crashes = most earlier deliveries of one of the messages that ended with neither a commit
    nor an abandon (attempts - 1 - "<mid>|c", the abandons that counted the attempt): the
    worker died during the turn (the turn watchdog's crash count)
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
local msgs = tag_messages(KEYS[8], KEYS[9], token, tonumber(ARGV[4]), now)
if #msgs == 0 then
  redis.call('HDEL', KEYS[2], iid)
  redis.call('ZREM', KEYS[3], iid)
  requeue_instance(KEYS[8], KEYS[4], KEYS[3], KEYS[5], iid, now)
  return {5}
end
local lease = lock_reply(KEYS[6], KEYS[10], ARGV[5], deadline, msgs)
local crashes = 0
for i = 1, #msgs, 3 do
  local clean = tonumber(redis.call('HGET', KEYS[9], msgs[i] .. '|c') or '0')
  local c = tonumber(msgs[i + 2]) - 1 - clean
  if c > crashes then crashes = c end
end
lease[#lease + 1] = crashes
return {0, unpack(lease)}
