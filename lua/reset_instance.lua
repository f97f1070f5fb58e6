--[[
reset_instance: start execution N+1 of an instance as a copy of events 1..keep of execution N
(docs/deploying.md, "Reset"). Execution N's history is left as it is (readable as execution N).
The new history is: started (event 1 renumbered N+1, encoded by the caller), events 2..keep of
N copied here, reset_event (ExecutionReset). The instance becomes running; its held marker,
output, error and completion time are cleared; a worker's lock is stolen (its commit is then
refused); the work items of execution N are deleted (their late completions would be stale);
its queued messages stay, visible now and with their attempts reset; the events to re-deliver
(raised after the point, consumed by execution N) are queued before them; a wake-up message
(stale for every execution: dropped by the turn it wakes) is queued so a worker runs the new
execution.

KEYS
  1 pmeta          partition metadata HASH
  2 seq            partition sequence counter
  3 oq_ready       ZSET instance -> earliest visible message
  4 oq_locks       ZSET instance -> lock deadline
  5 oq_lock        HASH instance -> lock token
  6 oq_marker      wake-up marker ZSET
  7 inst           instance record HASH
  8 done           ids consumed by the last turn
  9 mz             instance message ZSET
  10 mh            instance message HASH
  11 hist_old      history LIST of execution N       h:<N>:<iid>
  12 hist_new      history LIST of execution N+1     h:<N+1>:<iid>
  13 idx_terminal  ZSET instance -> completed_at
  14 idx_pending   status index ZSETs, in this order: pending, running, completed,
  15 idx_running     failed, cancelled, continued_as_new
  16 idx_completed
  17 idx_failed
  18 idx_cancelled
  19 idx_continued_as_new
  20 wq_items      HASH of work items
  21 wq_ready      ZSET plain work
  22 wq_sready     ZSET session work
  23 wq_delayed    ZSET delayed work
  24 wq_leases     ZSET work -> lease deadline
  25 witems        SET of the instance's work item ids
ARGV
  1 epoch
  2 iid
  3 exec           N: the execution the caller read (must still be the current one)
  4 history_len    length of N's history the caller read (must still be it)
  5 keep           events 1..keep are kept (1 <= keep <= history_len)
  6 started        encoded OrchestrationStarted of execution N+1
  7 reset_event    encoded ExecutionReset (event keep + 1)
  8 wake_id        message id of the wake-up message
  9 wake_data      the wake-up message
  10... reapply    message id, message, ...: events to re-deliver, in order
RETURNS
  {0, N+1} reset
STATUS
  0 OK, 2 NAMESPACE_MISSING, 4 NOT_FOUND,
  6 RUNNING {6, status} (running and not held, pending, or continued as new: nothing changed),
  7 RETRY (the execution or its history changed since the caller read them: nothing changed)
]]
-- @include common
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local now = server_now()
local iid = ARGV[2]
local inst = KEYS[7]
if redis.call('EXISTS', inst) == 0 then return {4} end
local f = redis.call('HMGET', inst, 'status', 'exec', 'held', 'created')
local status, held = f[1], f[3]
local exec = tonumber(ARGV[3])
local keep = tonumber(ARGV[5])
if tonumber(f[2] or '0') ~= exec then return {7} end
if not is_terminal(status) and not (status == 'running' and held) then return {6, status} end
local len = redis.call('LLEN', KEYS[11])
if len ~= tonumber(ARGV[4]) or keep < 1 or keep > len then return {7} end
if redis.call('EXISTS', KEYS[12]) == 1 then return {7} end
-- 1. the new execution's history --------------------------------------------------------------
redis.call('RPUSH', KEYS[12], ARGV[6])
local from = 1 -- 0-based index of event 2
while from < keep do
  local to = math.min(from + 999, keep - 1)
  redis.call('RPUSH', KEYS[12], unpack(redis.call('LRANGE', KEYS[11], from, to)))
  from = to + 1
end
redis.call('RPUSH', KEYS[12], ARGV[7])
-- 2. the record and its indexes ------------------------------------------------------------------
redis.call('HSET', inst, 'exec', fmt(exec + 1), 'status', 'running', 'updated', fmt(now))
redis.call('HDEL', inst, 'output', 'error', 'completed', 'held', 'held_at', 'held_fail')
local by_status = status_keys(14)
if by_status[status] then redis.call('ZREM', by_status[status], iid) end
redis.call('ZADD', by_status['running'], f[4] or fmt(now), iid)
redis.call('ZREM', KEYS[13], iid)
-- 3. steal the lock; drop execution N's work items -------------------------------------------
redis.call('HDEL', KEYS[5], iid)
redis.call('ZREM', KEYS[4], iid)
for _, id in ipairs(redis.call('SMEMBERS', KEYS[25])) do
  delete_item(KEYS[20], KEYS[21], KEYS[22], KEYS[23], KEYS[24], KEYS[25], id)
end
-- 4. queued messages: visible now, attempts from 0; the wake-up message ----------------------
for _, member in ipairs(redis.call('ZRANGE', KEYS[9], 0, -1)) do
  local mid = string.sub(member, 18)
  redis.call('HDEL', KEYS[10], mid .. '|t', mid .. '|c') -- attempts and their counts from 0
  redis.call('HSET', KEYS[10], mid .. '|a', '0')
  redis.call('ZADD', KEYS[9], fmt(now), member)
end
redis.call('DEL', KEYS[8])
for i = 10, #ARGV - 1, 2 do -- visible a moment earlier than what was queued: delivered first
  add_message(KEYS[2], KEYS[9], KEYS[10], KEYS[8], ARGV[i], ARGV[i + 1], now - 1)
end
add_message(KEYS[2], KEYS[9], KEYS[10], KEYS[8], ARGV[8], ARGV[9], now)
requeue_instance(KEYS[9], KEYS[3], KEYS[4], KEYS[6], iid, now)
return {0, exec + 1}
