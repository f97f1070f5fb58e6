--[[
fetch_jobs: lease up to `limit` ready jobs of the queues served, queue by queue in the order
given, highest priority first and FIFO within a priority in each queue. A paused queue is
skipped (its jobs stay queued; its marker is not woken). Promotes the due delayed jobs of the
queues served and requeues jobs (of any queue) whose lease expired first (at most 100 + limit
each), and removes up to 100 retained results whose ttl ran out. Every job of one call gets the
same token (a job's token still changes on every lease).

KEYS
  1 pmeta          partition metadata HASH
  2 seq            partition sequence counter (lease epochs)
  3 jq_jobs        HASH of jobs
  4 jq_ready       ZSET job -> priority and FIFO score (queue "default"; other queues' keys
  5 jq_delayed     ZSET job -> visible at               are named by job_qkeys in the same
  6 jq_leases      ZSET job -> lease deadline           partition)
  7 jq_marker      job wake-up marker
  8 jq_done        ZSET terminal job -> expiry
ARGV
  1 epoch
  2 worker_id
  3 nonce
  4 limit
  5 lock_ms
  6... the queues served (none: "default")
RETURNS
  {0, lease_until_ms, token, {job_id, d (score, ttl, created, name and spec), delivery,
  attempt, ...}}
STATUS
  0 OK, 2 NAMESPACE_MISSING
]]
-- @include common
-- @include jobs
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local now = server_now()
local pmeta, jobs, leases, done = KEYS[1], KEYS[3], KEYS[6], KEYS[8]
local limit = tonumber(ARGV[4])
local deadline = now + tonumber(ARGV[5])
local served = {}
for at = 6, #ARGV do
  if not queue_paused(pmeta, ARGV[at]) then
    local ready, delayed, marker = job_qkeys(jobs, ARGV[at])
    served[#served + 1] = {ready, delayed, marker, ARGV[at]}
  end
end
if #ARGV < 6 and not queue_paused(pmeta, 'default') then
  served[1] = {KEYS[4], KEYS[5], KEYS[7], 'default'}
end
for _, q in ipairs(served) do
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', q[2], '-inf', fmt(now), 'LIMIT', 0, 100 + limit)) do
    redis.call('ZREM', q[2], id)
    if string.byte(id, 1) == 10 then  -- a rate-limited group whose time came
      flow_activate(jobs, q[1], q[2], q[4], string.sub(id, 2))
    else
      job_place(jobs, q[1], q[2], id, now, now, q[4])
    end
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', fmt(now), 'LIMIT', 0, 100 + limit)) do
  redis.call('ZREM', leases, id)
  redis.call('HDEL', jobs, id .. '|t', id .. '|w')
  redis.call('HSET', jobs, id .. '|s', 'queued')
  local qn = job_queue(jobs, id)
  local ready, delayed, marker = job_qkeys(jobs, qn)
  flow_release(jobs, ready, delayed, qn, id, now)
  job_place(jobs, ready, delayed, id, now, now, qn)
  if not queue_paused(pmeta, qn) then wake_now(marker) end
end
job_expire(jobs, done, now, 100)
local out = {}
local token = ''
local zargs = {}
local worker = ARGV[2]
local snow = fmt(now)

local function lease(id)
  if token == '' then token = redis.call('INCR', KEYS[2]) .. ':' .. ARGV[3] end
  local delivery = redis.call('HINCRBY', jobs, id .. '|a', 1)
  redis.call('HSET', jobs, id .. '|s', 'running', id .. '|t', token, id .. '|w', worker,
             id .. '|b', snow)
  local f = redis.call('HMGET', jobs, id .. '|d', id .. '|k')
  out[#out + 1] = id
  out[#out + 1] = f[1]
  out[#out + 1] = delivery
  out[#out + 1] = f[2] or '1'
  zargs[#zargs + 1] = deadline
  zargs[#zargs + 1] = id
end

for _, q in ipairs(served) do
  while #zargs / 2 < limit do
    local want = limit - #zargs / 2
    local popped = redis.call('ZPOPMIN', q[1], want)
    if #popped == 0 then break end
    local keyed = {}
    for i = 1, #popped, 2 do
      local id = popped[i]
      if string.byte(id, 1) == 10 then
        keyed[#keyed + 1] = i
      else
        lease(id)
      end
    end
    if #keyed > 0 then
      -- one job per group and turn; when the pop emptied the set, these groups are all there
      -- is, so they share what is left of the batch
      local share = 1
      if #popped / 2 < want then share = math.ceil((limit - #zargs / 2) / #keyed) end
      local back = {}
      for _, i in ipairs(keyed) do
        if #zargs / 2 < limit then
          flow_take(jobs, q[1], q[2], q[4], string.sub(popped[i], 2),
                    math.min(share, limit - #zargs / 2), now, lease)
        else  -- the batch is full: its place in the round robin is kept
          back[#back + 1] = popped[i + 1]
          back[#back + 1] = popped[i]
        end
      end
      if #back > 0 then redis.call('ZADD', q[1], unpack(back)) end
    end
  end
end
if #zargs > 0 then redis.call('ZADD', leases, unpack(zargs)) end
for _, q in ipairs(served) do
  if redis.call('ZCARD', q[1]) > 0 then wake_now(q[3]) end
  local first = redis.call('ZRANGE', q[2], 0, 0, 'WITHSCORES')
  if #first > 0 then arm_marker(q[3], tonumber(first[2]), now) end
end
return {0, deadline, token, out}
