--[[
enqueue_jobs: create jobs (queued, or delayed until their visible time) in one partition.
A job id that exists already is kept as it is (dedupe) unless the policy says otherwise:
"keep" returns its status, "replace" re-creates a job that is terminal (completed, failed,
cancelled) and keeps a live one, "fail" refuses the whole call if any id exists (nothing written).
Also removes up to 20 retained results whose ttl ran out.

KEYS
  1 pmeta          partition metadata HASH
  2 seq            partition sequence counter (FIFO order)
  3 jq_jobs        HASH of jobs
  4 jq_ready       ZSET job -> priority and FIFO score
  5 jq_delayed     ZSET job -> visible at
  6 jq_marker      job wake-up marker
  7 jq_done        ZSET terminal job -> expiry
ARGV
  1 epoch
  2 policy         "keep" / "replace" / "fail"
  3... groups of 7: job_id, name, spec, priority, delay_ms ("" none), at_ms ("" none), ttl_ms
RETURNS
  {0, {"new" or the existing job's status, per job}}
STATUS
  0 OK, 2 NAMESPACE_MISSING, 3 EXISTS ({3, job_id, status}: policy "fail", nothing written)
]]
-- @include common
-- @include jobs
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local now = server_now()
local jobs, ready, delayed, marker, done = KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local policy = ARGV[2]
local n = math.floor((#ARGV - 2) / 7)
if policy == 'fail' then
  for g = 0, n - 1 do
    local id = ARGV[3 + g * 7]
    local st = redis.call('HGET', jobs, id .. '|s')
    if st then return {3, id, st} end
  end
end
job_expire(jobs, done, now, 20)
local out = {}
local creates = 0
for g = 0, n - 1 do
  local id = ARGV[3 + g * 7]
  local st = redis.call('HGET', jobs, id .. '|s')
  if not st or (policy == 'replace' and (st == 'completed' or st == 'failed' or st == 'cancelled')) then
    out[g + 1] = true
    creates = creates + 1
  else
    out[g + 1] = st
  end
end
local seq = 0
if creates > 0 then seq = redis.call('INCRBY', KEYS[2], creates) - creates end
local wake = false
local first_due = nil
for g = 0, n - 1 do
  local at = 3 + g * 7
  local id = ARGV[at]
  if out[g + 1] == true then
    redis.call('ZREM', done, id)
    job_delete(jobs, id)
    seq = seq + 1
    local score = -tonumber(ARGV[at + 3]) * 68719476736 + seq
    local vis = now
    if ARGV[at + 5] ~= '' then
      vis = tonumber(ARGV[at + 5])
    elseif ARGV[at + 4] ~= '' then
      vis = now + tonumber(ARGV[at + 4])
    end
    redis.call('HSET', jobs, id .. '|n', ARGV[at + 1], id .. '|d', ARGV[at + 2], id .. '|s', 'queued',
               id .. '|q', fmt(score), id .. '|r', ARGV[at + 6], id .. '|c', fmt(now))
    if job_place(jobs, ready, delayed, id, vis, now) then
      wake = true
    elseif first_due == nil or vis < first_due then
      first_due = vis
    end
    out[g + 1] = 'new'
  end
end
if wake then wake_now(marker) end
if first_due then arm_marker(marker, first_due, now) end
return {0, out}
