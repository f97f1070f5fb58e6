--[[
queue_status: the state of one queue in one partition, for jobs and activity work items alike
(docs/routing.md "Drain"): paused or not, ready and delayed counts, and the work in flight
(leased). With wake "1" (a resume) it also wakes the queue's work-item markers, as
pause_job_queue does its job marker, so waiting workers start the backlog at once.
Keyed work items (flow control) count as ready while they wait in their group (at their limit
included), not their group's round-robin entry; a group waiting for its rate is not an item.

KEYS
  1 pmeta          partition metadata HASH (field "qp:<queue>" = paused)
  2 wq_items       HASH of work items (names the queue's keys, wq_qkeys)
  3 wq_delayed     ZSET delayed work (every queue)
  4 wq_leases      ZSET work -> lease deadline (every queue)
  5 jq_jobs        HASH of jobs
  6 jq_leases      ZSET job -> lease deadline (every queue)
ARGV
  1 epoch
  2 queue
  3 wake           "1" wake the queue's work-item markers (when not paused), "0" read only
RETURNS
  {0, paused 1/0, work items ready, work items delayed, work items leased, jobs leased}
STATUS
  0 OK, 2 NAMESPACE_MISSING
]]
-- @include common
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local q = ARGV[2]
local items = KEYS[2]
local paused = redis.call('HEXISTS', KEYS[1], 'qp:' .. q)
local ready, sready, marker, smarker = wq_qkeys(items, q)
local function of_queue(hash, id)
  return (redis.call('HGET', hash, id .. '|q') or 'default') == q
end
local function count(zset, hash)
  local n = 0
  for _, id in ipairs(redis.call('ZRANGE', zset, 0, -1)) do
    if string.byte(id, 1) ~= 10 and of_queue(hash, id) then n = n + 1 end
  end
  return n
end
local n_ready = redis.call('ZCARD', ready) + redis.call('ZCARD', sready)
-- keyed items: in their groups (fields "<queue>:<key>|c" of wq:groups), less the entries
local _, groups = flow_keys(items, q, '')
for _, f in ipairs(redis.call('HKEYS', groups)) do
  if string.sub(f, 1, #q + 1) == q .. ':' and string.sub(f, -2) == '|c' then
    local key = string.sub(f, #q + 2, -3)
    n_ready = n_ready + redis.call('ZCARD', (flow_keys(items, q, key)))
    if redis.call('ZSCORE', ready, '\n' .. key) then n_ready = n_ready - 1 end
  end
end
if ARGV[3] == '1' and paused == 0 then
  if redis.call('ZCARD', ready) > 0 then wake_now(marker) end
  if redis.call('ZCARD', sready) > 0 then wake_now(smarker) end
end
return {0, paused, n_ready, count(KEYS[3], items), count(KEYS[4], items), count(KEYS[6], KEYS[5])}
