--[[
ack_jobs: record the outcome of leased jobs, one partition, one call per batch. Per job the
token must still hold the lease (else nothing changes for it and its code is 1, except a repeat
of the ack that made it terminal, code 0). Outcomes: "c" completed (payload = output), "f"
failed (payload = error), "r" retry: the error is kept, the retry-policy attempt counted, and the
job is queued again after delay_ms (a durable timer on the Redis clock), "b" hand back: queued
again after delay_ms, payload "0" gives back the delivery the fetch counted. Terminal jobs are
kept for their result ttl and announced on the jq_done channel. A keyed job's ack frees its
group's slot (flow_release in includes/jobs.lua: the group goes back in the round robin).

KEYS
  1 pmeta          partition metadata HASH
  2 jq_jobs        HASH of jobs
  3 jq_ready       ZSET job -> priority and FIFO score (queue "default"; a job of another
  4 jq_delayed     ZSET job -> visible at              queue goes back to its own keys)
  5 jq_leases      ZSET job -> lease deadline
  6 jq_marker      job wake-up marker
  7 jq_done        ZSET terminal job -> expiry (and the completion channel's name)
ARGV
  1 epoch
  2... groups of 5: job_id, token, outcome, payload, delay_ms
RETURNS
  {0, {0 recorded or repeated, 1 lease lost; per job}}
STATUS
  0 OK, 2 NAMESPACE_MISSING
]]
-- @include common
-- @include jobs
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local now = server_now()
local jobs, ready, delayed, leases, marker, done = KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local codes = {}
local ended = {}
local wake = {}   -- marker -> true: a job of its queue is ready now
local due = {}    -- marker -> the earliest visible time of a job placed in its queue
local paused = {}  -- queue -> paused?
local freed = {}  -- "<queue>\n<flow>" -> {queue, flow, a job id, jobs, ready, delayed, marker}
for at = 2, #ARGV, 5 do
  local id, token, outcome, payload = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  local qg = redis.call('HMGET', jobs, id .. '|t', id .. '|q', id .. '|g')
  local live = qg[1] == token and tonumber(redis.call('ZSCORE', leases, id) or '0') > now
  if not live then
    if redis.call('HGET', jobs, id .. '|l') == token then
      codes[#codes + 1] = 0
    else
      codes[#codes + 1] = 1
    end
  else
    redis.call('ZREM', leases, id)
    redis.call('HDEL', jobs, id .. '|t', id .. '|w')
    local qn = qg[2] or 'default'
    local qready, qdelayed, qmarker = ready, delayed, marker
    if qn ~= 'default' then qready, qdelayed, qmarker = job_qkeys(jobs, qn) end
    if paused[qn] == nil then paused[qn] = queue_paused(KEYS[1], qn) end
    if qg[3] then  -- its group's slot frees (once per group and call, below)
      local slot = qn .. '\n' .. qg[3]
      local r = freed[slot]
      if r then
        r[4] = r[4] + 1
      else
        freed[slot] = {qn, qg[3], id, 1, qready, qdelayed, qmarker}
      end
    end
    if outcome == 'c' or outcome == 'f' then
      redis.call('HSET', jobs, id .. '|s', outcome == 'c' and 'completed' or 'failed',
                 id .. (outcome == 'c' and '|o' or '|e'), payload, id .. '|f', fmt(now),
                 id .. '|l', token)
      job_ended(ended, jobs, id, outcome == 'c' and 'completed' or 'failed', payload)
      job_retain(jobs, done, id, now)
    else
      if outcome == 'r' then
        local k = tonumber(redis.call('HGET', jobs, id .. '|k') or '1')
        redis.call('HSET', jobs, id .. '|k', fmt(k + 1), id .. '|e', payload, id .. '|a', '0')
      elseif payload == '0' then
        local a = tonumber(redis.call('HGET', jobs, id .. '|a') or '0')
        if a > 0 then redis.call('HSET', jobs, id .. '|a', fmt(a - 1)) end
      end
      redis.call('HSET', jobs, id .. '|s', 'queued')
      local vis = now + tonumber(ARGV[at + 4])
      if job_place(jobs, qready, qdelayed, id, vis, now, qn) then
        if not paused[qn] then wake[qmarker] = true end
      elseif due[qmarker] == nil or vis < due[qmarker] then
        due[qmarker] = vis
      end
    end
    codes[#codes + 1] = 0
  end
end
for _, r in pairs(freed) do
  if flow_release(jobs, r[5], r[6], r[1], r[3], now, r[2], r[4]) and not paused[r[1]] then
    wake[r[7]] = true  -- the group's next job is ready
  end
end
for m in pairs(wake) do wake_now(m) end
for m, vis in pairs(due) do arm_marker(m, vis, now) end
job_announce(done, ended)
return {0, codes}
