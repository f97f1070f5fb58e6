-- Job helpers, inlined where a script includes "jobs" (after "common").
-- Jobs live in one partition HASH `jobs` with "<job id>|<f>" fields:
-- d "<ready score> <result ttl ms> <created ms> <name>\n<spec>" (set once at enqueue; the score
-- orders by priority, then FIFO; the spec, encoded by core, holds the input and options),
-- s status, a deliveries of the current attempt, k retry-policy attempt (absent = 1), t lease
-- token, w worker, b started, f finished, o output, e error, p progress, l the token whose ack
-- made the job terminal (a repeated ack is recognised by it), q its queue (absent = "default"),
-- g its flow key and limits (absent = none; see "Flow control" below).
local JOB_FIELDS = {'d', 's', 'a', 'k', 't', 'w', 'b', 'f', 'o', 'e', 'p', 'l', 'q', 'g'}

-- The ready ZSET, delayed ZSET and wake-up marker of queue `q` in the partition of the `jobs`
-- HASH (same hash tag; storage/keys.py PartitionKeys.jq_queue_keys names them alike). The
-- "default" queue keeps the plain jq:ready / jq:delayed / jq:marker keys.
local function job_qkeys(jobs, q)
  local base = string.sub(jobs, 1, #jobs - 7)  -- strip 'jq:jobs'
  if q == nil or q == '' or q == 'default' then
    return base .. 'jq:ready', base .. 'jq:delayed', base .. 'jq:marker'
  end
  local p = base .. 'jq:q:' .. q .. ':'
  return p .. 'ready', p .. 'delayed', p .. 'marker'
end

-- The queue of a job ("default" when none was named).
local function job_queue(jobs, id)
  return redis.call('HGET', jobs, id .. '|q') or 'default'
end

-- True when queue `q` is paused (pmeta field "qp:<q>"): its jobs stay queued, none is fetched.
local function queue_paused(pmeta, q)
  return redis.call('HEXISTS', pmeta, 'qp:' .. q) == 1
end

-- The ready score and the result ttl of a job, from its `d` field.
local function job_meta(jobs, id)
  local d = redis.call('HGET', jobs, id .. '|d')
  if not d then return nil, 0 end
  local q, ttl = string.match(d, '^(%S+) (%S+) ')
  return q, tonumber(ttl)
end

local function job_fields(id, names)
  local out = {}
  for i, f in ipairs(names) do out[i] = id .. '|' .. f end
  return out
end

local function job_delete(jobs, id)
  redis.call('HDEL', jobs, unpack(job_fields(id, JOB_FIELDS)))
end

-- A job that just became terminal: kept for its result ttl (the `done` ZSET holds the expiry),
-- or deleted at once when the ttl is 0.
local function job_retain(jobs, done, id, now)
  local _, ttl = job_meta(jobs, id)
  if ttl <= 0 then
    job_delete(jobs, id)
    redis.call('ZREM', done, id)
  else
    redis.call('ZADD', done, fmt(now + ttl), id)
  end
end

-- Remove up to `n` retained jobs whose ttl ran out.
local function job_expire(jobs, done, now, n)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', done, '-inf', fmt(now), 'LIMIT', 0, n)) do
    redis.call('ZREM', done, id)
    job_delete(jobs, id)
  end
end

-- Queue an unleased job of queue `q`: delayed until `vis`, else ready by its score (a keyed
-- job: in its group, the group in the round robin). True when it (or its group) is ready.
local function job_place(jobs, ready, delayed, id, vis, now, q)
  if vis > now then
    redis.call('ZADD', delayed, fmt(vis), id)
    return false
  end
  local score = job_meta(jobs, id)
  local g = redis.call('HGET', jobs, id .. '|g')
  if not g then
    redis.call('ZADD', ready, score, id)
    return true
  end
  return flow_place(jobs, ready, delayed, q or 'default', id, score, g)
end

-- Remove a queued job from wherever it waits (its queue's ready and delayed sets, its group).
local function job_unqueue(jobs, ready, delayed, id, q)
  redis.call('ZREM', ready, id)
  redis.call('ZREM', delayed, id)
  local g = redis.call('HGET', jobs, id .. '|g')
  if g then redis.call('ZREM', (flow_keys(jobs, q, (flow_parse(g)))), id) end
end

-- Tell waiting clients that jobs ended (PUBLISH on the `done` key's name; SPUBLISH in cluster).
-- `ended` holds one entry per job: "<id>\n<score>\n<state>\n<n>\n<payload>" where the score
-- (unique per creation) tells incarnations of one id apart and the payload is the output or
-- error when n >= 0 (n = its length; -1 = too large, read the job instead). Call it before
-- job_retain (which may delete the job).
local function job_ended(ended, jobs, id, state, payload)
  local head = id .. '\n' .. (job_meta(jobs, id) or '') .. '\n' .. state .. '\n'
  if #payload > 4096 then
    ended[#ended + 1] = head .. '-1\n'
  else
    ended[#ended + 1] = head .. #payload .. '\n' .. payload
  end
end

local function job_announce(done, ended)
  if #ended == 0 then return end
  announce(done, table.concat(ended))
end
