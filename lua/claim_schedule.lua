--[[
claim_schedule: claim an activity schedule's due tick(s) and enqueue their jobs, atomically, so every
tick runs once however many workers race for it. The claim is a compare-and-set on the
schedule's next due time, judged on the Redis clock: a worker that read an older due time, a
paused or deleted schedule, or a tick not yet due changes nothing. With overlap "skip", ticks are
claimed but no job is enqueued while the previous job is still queued or running.

KEYS
  1 pmeta          partition metadata HASH
  2 seq            partition sequence counter (FIFO order)
  3 sc_defs        HASH of schedules
  4 sc_due         ZSET schedule -> next due time
  5 jq_jobs        HASH of jobs
  6 jq_ready       ZSET job -> priority and FIFO score (of the job's queue: job_qkeys)
  7 jq_marker      job wake-up marker (of the job's queue)
ARGV
  1 epoch
  2 name           the schedule
  3 expected_due   the due time the caller read
  4 next_due       the tick after the claimed ones
  5 overlap        "skip" / "allow"
  6 activity
  7 task           the encoded job task
  8 priority
  9 ttl_ms         result ttl
  10 queue         the job queue ("default" or a name; docs/routing.md)
  11... job ids, one per claimed tick (all in this partition)
RETURNS
  {0, jobs enqueued, "overlap" if skipped for overlap else ""}
STATUS
  0 OK, 2 NAMESPACE_MISSING, 8 NOT_ELIGIBLE (not due, claimed already, paused or deleted)
]]
-- @include common
-- @include jobs
-- @include schedules
if not epoch_ok(KEYS[1], ARGV[1]) then return {2} end
local now = server_now()
local defs, jobs = KEYS[3], KEYS[5]
local name = ARGV[2]
if not tick_claimable(defs, name, ARGV[3], now) then return {8} end
advance_schedule(defs, KEYS[4], name, ARGV[4])
if ARGV[5] == 'skip' then
  local last = redis.call('HGET', defs, name .. '|j')
  if last then
    local st = redis.call('HGET', jobs, last .. '|s')
    if st == 'queued' or st == 'running' then return {0, 0, 'overlap'} end
  end
end
local made = 0
local tail = ' ' .. ARGV[9] .. ' ' .. fmt(now) .. ' ' .. ARGV[6] .. '\n' .. ARGV[7]
local base = -tonumber(ARGV[8]) * 68719476736
for at = 11, #ARGV do
  local id = ARGV[at]
  if not redis.call('HGET', jobs, id .. '|s') then
    local score = fmt(base + redis.call('INCR', KEYS[2]))
    redis.call('HSET', jobs, id .. '|d', score .. tail, id .. '|s', 'queued')
    if ARGV[10] ~= 'default' then redis.call('HSET', jobs, id .. '|q', ARGV[10]) end
    redis.call('ZADD', KEYS[6], score, id)
    made = made + 1
  end
  redis.call('HSET', defs, name .. '|j', id)
end
if ARGV[10] ~= 'default' then
  redis.call('SADD', string.sub(jobs, 1, #jobs - 4) .. 'queues', ARGV[10])
end
if made > 0 and not queue_paused(KEYS[1], ARGV[10]) then wake_now(KEYS[7]) end
return {0, made, ''}
