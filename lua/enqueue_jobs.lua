--[[
enqueue_jobs: create jobs of one activity with the same options (queued, or delayed until
their visible time) in one partition. A job id that exists already is kept as it is (dedupe)
unless the policy says otherwise: "keep" returns its status, "replace" re-creates a job that is
terminal (completed, failed, cancelled) and keeps a live one, "fail" refuses the whole call if
any id exists (nothing written). Also removes up to 20 retained results whose ttl ran out.
A keyed job (flow key, includes/jobs.lua "Flow control") waits in its key's group; debounce
replaces the key's pending job's input and pushes its time instead of creating one, throttle
keeps the job of the key's current window and creates none.

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
  9 flow           "" (no flow key) or "<limit> <rate count> <rate per ms> <burst>" ('-' none)
 10 mode           "" / "debounce <ms>" / "throttle <ms>" (per flow key, docs/routing.md)
 11... pairs: job_id, spec (flow ""), else triples: job_id, spec, flow key
RETURNS
  {0, {"new <ready score>", the existing job's status, or "kept <job id>" (debounced or
  throttled into that job), per job}}
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
local flow = ARGV[9]
local keyed = flow ~= ''
local stride = keyed and 3 or 2
local mode, window = string.match(ARGV[10], '^(%a+) (%d+)$')
window = tonumber(window)
local out = {}
local creates = 0
for at = 11, #ARGV, stride do
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
if mode == 'debounce' then vis = math.max(vis, now + window) end
local seq = redis.call('INCRBY', KEYS[2], creates) - creates
local base = -tonumber(ARGV[4]) * 68719476736
local tail = ' ' .. ARGV[7] .. ' ' .. fmt(now) .. ' ' .. ARGV[3] .. '\n'
local queue = ready
if vis > now then queue = delayed end
local zargs = {}
local grouped = {}  -- flow key -> {score, id, ...} of its ready jobs
local order = {}
local placed = false

-- debounce / throttle: the job that stands for this one, or nil (create it)
local function coalesced(id, spec, key)
  local _, groups, gf = flow_keys(jobs, qname, key)
  if mode == 'throttle' then
    local h = redis.call('HGET', groups, gf .. '|h')
    if h then
      local kid, till = string.match(h, '^(.*) (%d+)$')
      if tonumber(till) > now then return kid end
    end
    redis.call('HSET', groups, gf .. '|h', id .. ' ' .. fmt(now + window))
  elseif mode == 'debounce' then
    local pid = redis.call('HGET', groups, gf .. '|d')
    if pid and pid ~= id and redis.call('HGET', jobs, pid .. '|s') == 'queued'
       and redis.call('ZSCORE', delayed, pid) then
      local d = redis.call('HGET', jobs, pid .. '|d')
      local sc, created = string.match(d, '^(%S+) %S+ (%S+) ')
      redis.call('HSET', jobs, pid .. '|d', sc .. ' ' .. ARGV[7] .. ' ' .. created .. ' ' ..
                 ARGV[3] .. '\n' .. spec)
      redis.call('ZADD', delayed, fmt(vis), pid)
      return pid
    end
    redis.call('HSET', groups, gf .. '|d', id)
  end
  return nil
end

for i = 1, #out do
  local flag = out[i]
  if flag == true or flag == false then
    local at = 11 + stride * (i - 1)
    local id, key = ARGV[at], ARGV[at + 2]
    local kept = nil
    if keyed and mode then kept = coalesced(id, ARGV[at + 1], key) end
    if kept then
      out[i] = 'kept ' .. kept
    else
      if flag == false then
        redis.call('ZREM', done, id)
        job_delete(jobs, id)
      end
      seq = seq + 1
      local score = fmt(base + seq)
      redis.call('HSET', jobs, id .. '|d', score .. tail .. ARGV[at + 1], id .. '|s', 'queued')
      if qname ~= 'default' then redis.call('HSET', jobs, id .. '|q', qname) end
      if keyed then redis.call('HSET', jobs, id .. '|g', flow .. ' ' .. key) end
      if keyed and queue == ready then
        local g = grouped[key]
        if not g then
          g = {}
          grouped[key] = g
          order[#order + 1] = key
        end
        g[#g + 1] = score
        g[#g + 1] = id
      else
        zargs[#zargs + 1] = queue == ready and score or fmt(vis)
        zargs[#zargs + 1] = id
        placed = true
        if #zargs >= 1000 then
          redis.call('ZADD', queue, unpack(zargs))
          zargs = {}
        end
      end
      out[i] = 'new ' .. score
    end
  end
end
if #zargs > 0 then redis.call('ZADD', queue, unpack(zargs)) end
local woken = placed and queue == ready
for _, key in ipairs(order) do
  local gz, groups, gf = flow_keys(jobs, qname, key)
  redis.call('ZADD', gz, unpack(grouped[key]))
  redis.call('HSET', groups, gf .. '|c', flow .. ' ' .. key)
  if flow_activate(jobs, ready, delayed, qname, key) then woken = true end
end
if qname ~= 'default' then redis.call('SADD', string.sub(jobs, 1, #jobs - 4) .. 'queues', qname) end
if queue_paused(KEYS[1], qname) and queue == ready then return {0, out} end
if woken then wake_now(marker) elseif queue == delayed and (placed or mode) then
  arm_marker(marker, vis, now)
end
return {0, out}
