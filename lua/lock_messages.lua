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
-- KEYS and ARGV, each named once (the header's names) ---------------------------------------
local K_pmeta = KEYS[1]         -- partition metadata HASH
local K_oq_lock = KEYS[2]       -- HASH instance -> lock token
local K_oq_locks = KEYS[3]      -- ZSET instance -> lock deadline
local K_oq_ready = KEYS[4]      -- ZSET instance -> earliest visible message
local K_oq_marker = KEYS[5]     -- wake-up marker ZSET
local K_inst = KEYS[6]          -- instance record HASH
local K_done = KEYS[7]          -- ids consumed by the last turn
local K_mz = KEYS[8]            -- instance message ZSET
local K_mh = KEYS[9]            -- instance message HASH
local K_hist = KEYS[10]         -- history LIST of ARGV[5]'s execution   h:<exec>:<iid>
local A_epoch = ARGV[1]
local A_iid = ARGV[2]
local A_token = ARGV[3]
local A_max_messages = ARGV[4]
local A_exec_guess = ARGV[5]    -- execution id whose history KEYS[10] is
if not epoch_ok(K_pmeta, A_epoch) then return {2} end
local now = server_now()
local iid = A_iid
local token = A_token
local deadline = tonumber(redis.call('ZSCORE', K_oq_locks, iid) or '0')
if redis.call('HGET', K_oq_lock, iid) ~= token or deadline <= now then return {1} end
if redis.call('EXISTS', K_inst) == 0 then
  redis.call('DEL', K_done, K_mz, K_mh)
  redis.call('HDEL', K_oq_lock, iid)
  redis.call('ZREM', K_oq_locks, iid)
  redis.call('ZREM', K_oq_ready, iid)
  return {4}
end
local msgs = tag_messages(K_mz, K_mh, token, tonumber(A_max_messages), now)
if #msgs == 0 then
  redis.call('HDEL', K_oq_lock, iid)
  redis.call('ZREM', K_oq_locks, iid)
  requeue_instance(K_mz, K_oq_ready, K_oq_locks, K_oq_marker, iid, now)
  return {5}
end
local lease = lock_reply(K_inst, K_hist, A_exec_guess, deadline, msgs)
local crashes = 0
for i = 1, #msgs, 3 do
  local clean = tonumber(redis.call('HGET', K_mh, msgs[i] .. '|c') or '0')
  local c = tonumber(msgs[i + 2]) - 1 - clean
  if c > crashes then crashes = c end
end
lease[#lease + 1] = crashes
return {0, unpack(lease)}
