--[[
pause_job_queue: pause or resume a job queue in one partition. A paused queue keeps its jobs
queued (enqueue, retries and expired leases still add to it) and no fetch takes any; running
jobs finish and ack as usual. Resuming wakes the queue's waiting workers when jobs are ready.

KEYS
  1 pmeta          partition metadata HASH (field "qp:<queue>" = paused)
  2 jq_jobs        HASH of jobs (its name gives the queue's keys, job_qkeys)
ARGV
  1 epoch
  2 queue
  3 paused         "1" pause, "0" resume
RETURNS
  {0, 1 if it was paused before else 0}
STATUS
  0 OK, 2 NAMESPACE_MISSING
]]
-- @include common
-- @include jobs
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local jobs, q = KEYS[2], ARGV[2]
local was = queue_paused(KEYS[1], q) and 1 or 0
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'qp:' .. q, '1')
  if q ~= 'default' then redis.call('SADD', string.sub(jobs, 1, #jobs - 4) .. 'queues', q) end
  return {0, was}
end
redis.call('HDEL', KEYS[1], 'qp:' .. q)
local ready, delayed, marker = job_qkeys(jobs, q)
if redis.call('ZCARD', ready) > 0 then wake_now(marker) end
local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if #first > 0 then arm_marker(marker, tonumber(first[2]), server_now()) end
return {0, was}
