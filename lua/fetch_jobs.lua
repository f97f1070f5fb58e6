--[[
fetch_jobs: lease up to `limit` ready jobs, highest priority first, FIFO within a priority.
Promotes due delayed jobs and requeues jobs whose lease expired first (at most 100 + limit
each), and removes up to 100 retained results whose ttl ran out. Every job of one call gets the
same token (a job's token still changes on every lease).

KEYS
  1 pmeta          partition metadata HASH
  2 seq            partition sequence counter (lease epochs)
  3 jq_jobs        HASH of jobs
  4 jq_ready       ZSET job -> priority and FIFO score
  5 jq_delayed     ZSET job -> visible at
  6 jq_leases      ZSET job -> lease deadline
  7 jq_marker      job wake-up marker
  8 jq_done        ZSET terminal job -> expiry
ARGV
  1 epoch
  2 worker_id
  3 nonce
  4 limit
  5 lock_ms
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
local jobs, ready, delayed, leases, marker, done = KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local limit = tonumber(ARGV[4])
local deadline = now + tonumber(ARGV[5])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', fmt(now), 'LIMIT', 0, 100 + limit)) do
  redis.call('ZREM', delayed, id)
  job_place(jobs, ready, delayed, id, now, now)
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', fmt(now), 'LIMIT', 0, 100 + limit)) do
  redis.call('ZREM', leases, id)
  redis.call('HDEL', jobs, id .. '|t', id .. '|w')
  redis.call('HSET', jobs, id .. '|s', 'queued')
  job_place(jobs, ready, delayed, id, now, now)
end
job_expire(jobs, done, now, 100)
local popped = redis.call('ZPOPMIN', ready, limit)
local out = {}
local token = ''
if #popped > 0 then
  token = redis.call('INCR', KEYS[2]) .. ':' .. ARGV[3]
  local zargs = {}
  local worker = ARGV[2]
  local snow = fmt(now)
  for i = 1, #popped, 2 do
    local id = popped[i]
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
  redis.call('ZADD', leases, unpack(zargs))
end
if redis.call('ZCARD', ready) > 0 then wake_now(marker) end
local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if #first > 0 then arm_marker(marker, tonumber(first[2]), now) end
return {0, deadline, token, out}
