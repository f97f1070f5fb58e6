--[[
retry_job: queue a failed or cancelled job again, from its first attempt, with its input and
options (its output, error and progress are cleared).

KEYS
  1 pmeta          partition metadata HASH
  2 jq_jobs        HASH of jobs
  3 jq_ready       ZSET job -> priority and FIFO score (a job of another queue: its own)
  4 jq_marker      job wake-up marker
  5 jq_done        ZSET terminal job -> expiry
ARGV
  1 epoch
  2 job_id
RETURNS
  {0}
STATUS
  0 OK, 2 NAMESPACE_MISSING, 4 NOT_FOUND, 8 NOT_ELIGIBLE ({8, status}: not failed or cancelled)
]]
-- @include common
-- @include jobs
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local jobs = KEYS[2]
local id = ARGV[2]
local st = redis.call('HGET', jobs, id .. '|s')
if not st then return {4} end
if st ~= 'failed' and st ~= 'cancelled' then return {8, st} end
redis.call('ZREM', KEYS[5], id)
redis.call('HDEL', jobs, id .. '|o', id .. '|e', id .. '|f', id .. '|a', id .. '|k', id .. '|l',
           id .. '|p', id .. '|b')
redis.call('HSET', jobs, id .. '|s', 'queued')
local qn = job_queue(jobs, id)
local ready, delayed, marker = job_qkeys(jobs, qn)
local now = server_now()
if job_place(jobs, ready, delayed, id, now, now, qn) and not queue_paused(KEYS[1], qn) then
  wake_now(marker)
end
return {0}
