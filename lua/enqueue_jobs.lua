--[[
enqueue_jobs: create jobs of one activity with the same options (queued, or delayed until
their visible time) in one partition. A job id that exists already is kept as it is (dedupe)
unless the policy says otherwise: "keep" returns its status, "replace" re-creates a job that is
terminal (completed, failed, cancelled) and keeps a live one, "fail" refuses the whole call if
any id exists (nothing written). Also removes up to 20 retained results whose ttl ran out.

KEYS
  1 pmeta          partition metadata HASH
  2 seq            partition sequence counter (FIFO order)
  3 jq_jobs        HASH of jobs
  4 jq_ready       ZSET job -> priority and FIFO score (queue "default"; other queues: their
  5 jq_delayed     ZSET job -> visible at             own keys, named by job_qkeys in the
  6 jq_marker      job wake-up marker                 same partition)
  7 jq_done        ZSET terminal job -> expiry
ARGV
  1 epoch
  2 policy         "keep" / "replace" / "fail"
  3 name           the activity
  4 priority
  5 delay_ms       "" none
  6 at_ms          "" none (absolute, epoch ms)
  7 ttl_ms         result ttl
  8 queue          "default" or a queue name (kept in the job's q field; listed in jq:queues)
  9... pairs: job_id, spec
RETURNS
  {0, {"new <ready score>" or the existing job's status, per job}}
STATUS
  0 OK, 2 NAMESPACE_MISSING, 3 EXISTS ({3, job_id, status}: policy "fail", nothing written)
]]
-- @include common
-- @include jobs
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local now = server_now()
local jobs, done = KEYS[3], KEYS[7]
local qname = ARGV[8]
local ready, delayed, marker = job_qkeys(jobs, qname)
local policy = ARGV[2]
local out = {}
local creates = 0
for at = 9, #ARGV, 2 do
  local id = ARGV[at]
  local st = redis.call('HGET', jobs, id .. '|s')
  if not st then
    out[#out + 1] = true
    creates = creates + 1
  elseif policy == 'fail' then
    return {3, id, st}
  elseif policy == 'replace' and (st == 'completed' or st == 'failed' or st == 'cancelled') then
    out[#out + 1] = false
    creates = creates + 1
  else
    out[#out + 1] = st
  end
end
job_expire(jobs, done, now, 20)
if creates == 0 then return {0, out} end
local vis = now
if ARGV[6] ~= '' then
  vis = tonumber(ARGV[6])
elseif ARGV[5] ~= '' then
  vis = now + tonumber(ARGV[5])
end
local seq = redis.call('INCRBY', KEYS[2], creates) - creates
local base = -tonumber(ARGV[4]) * 68719476736
local tail = ' ' .. ARGV[7] .. ' ' .. fmt(now) .. ' ' .. ARGV[3] .. '\n'
local queue = ready
if vis > now then queue = delayed end
local zargs = {}
for i = 1, #out do
  local flag = out[i]
  if flag == true or flag == false then
    local at = 7 + 2 * i
    local id = ARGV[at]
    if flag == false then
      redis.call('ZREM', done, id)
      job_delete(jobs, id)
    end
    seq = seq + 1
    local score = fmt(base + seq)
    redis.call('HSET', jobs, id .. '|d', score .. tail .. ARGV[at + 1], id .. '|s', 'queued')
    if qname ~= 'default' then redis.call('HSET', jobs, id .. '|q', qname) end
    zargs[#zargs + 1] = queue == ready and score or fmt(vis)
    zargs[#zargs + 1] = id
    if #zargs >= 1000 then
      redis.call('ZADD', queue, unpack(zargs))
      zargs = {}
    end
    out[i] = 'new ' .. score
  end
end
if #zargs > 0 then redis.call('ZADD', queue, unpack(zargs)) end
if qname ~= 'default' then redis.call('SADD', string.sub(jobs, 1, #jobs - 4) .. 'queues', qname) end
if queue == ready and queue_paused(KEYS[1], qname) then return {0, out} end
if queue == ready then wake_now(marker) else arm_marker(marker, vis, now) end
return {0, out}
