--[[
cancel_job: cancel a queued, delayed or running job. A running job's lease is stolen: its
worker learns it at the next renewal, and its late ack is refused. A terminal job is left as it
is. The cancelled job is kept for its result ttl and announced on the jq_done channel.

KEYS
  1 pmeta          partition metadata HASH
  2 jq_jobs        HASH of jobs
  3 jq_ready       ZSET job -> priority and FIFO score (a job of another queue: its own)
  4 jq_delayed     ZSET job -> visible at
  5 jq_leases      ZSET job -> lease deadline
  6 jq_done        ZSET terminal job -> expiry (and the completion channel's name)
ARGV
  1 epoch
  2 job_id
  3 error          the encoded cancellation failure
RETURNS
  {0, status before the call}
STATUS
  0 OK, 2 NAMESPACE_MISSING, 4 NOT_FOUND
]]
-- @include common
-- @include jobs
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local now = server_now()
local jobs, done = KEYS[2], KEYS[6]
local id = ARGV[2]
local st = redis.call('HGET', jobs, id .. '|s')
if not st then return {4} end
if st == 'completed' or st == 'failed' or st == 'cancelled' then return {0, st} end
local qn = job_queue(jobs, id)
local qready, qdelayed, qmarker = job_qkeys(jobs, qn)  -- "default": KEYS[3], KEYS[4]
job_unqueue(jobs, qready, qdelayed, id, qn)
if redis.call('ZREM', KEYS[5], id) == 1
   and flow_release(jobs, qready, qdelayed, qn, id, now) and not queue_paused(KEYS[1], qn) then
  wake_now(qmarker)  -- its group's slot freed
end
redis.call('HDEL', jobs, id .. '|t', id .. '|w')
redis.call('HSET', jobs, id .. '|s', 'cancelled', id .. '|e', ARGV[3], id .. '|f', fmt(now))
local ended = {}
job_ended(ended, jobs, id, 'cancelled', ARGV[3])
job_retain(jobs, done, id, now)
job_announce(done, ended)
return {0, st}
