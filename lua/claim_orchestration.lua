--[[
claim_orchestration: phase 1 of an orchestration fetch. Locks the instance whose lock expired
longest ago, else the one with the oldest visible message, using partition-level keys only.

KEYS
  1 pmeta          partition metadata HASH
  2 seq            partition sequence counter (lock epochs)
  3 oq_ready       ZSET instance -> earliest visible message (unlocked instances only)
  4 oq_locks       ZSET instance -> lock deadline
  5 oq_lock        HASH instance -> lock token
  6 oq_marker      wake-up marker ZSET
ARGV
  1 epoch
  2 nonce          random; the token is "<seq>:<nonce>"
  3 lock_ms
  4... skip        optional: instance ids this worker passes over (it lacks their orchestration
                   version: docs/deploying.md, "Version routing"); they stay queued for others,
                   and no marker is armed for them (a worker that skips them would spin)
RETURNS
  {0} nothing eligible
  {0, iid, token, lease_until_ms} locked; phase 2 (lock_messages) tags the messages
STATUS
  0 OK, 2 NAMESPACE_MISSING
]]
-- @include common
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local now = server_now()
local skip = nil
if #ARGV > 3 then
  skip = {}
  for i = 4, #ARGV do skip[ARGV[i]] = true end
end
-- the first member of a ZSET (by score up to max) that this worker does not skip
local function first_of(key, max)
  if skip == nil then
    return redis.call('ZRANGEBYSCORE', key, '-inf', max, 'LIMIT', 0, 1)[1]
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', max, 'LIMIT', 0, #ARGV - 2)) do
    if not skip[id] then return id end
  end
  return nil
end
-- the earliest due time among the instances this worker does not skip, or nil
local function next_due()
  local n = (skip == nil) and 0 or (#ARGV - 3)
  local first = redis.call('ZRANGE', KEYS[3], 0, n, 'WITHSCORES')
  for i = 1, #first, 2 do
    if skip == nil or not skip[first[i]] then return tonumber(first[i + 1]) end
  end
  return nil
end
local iid = first_of(KEYS[4], fmt(now))
if iid == nil then
  iid = first_of(KEYS[3], fmt(now))
  if iid ~= nil then redis.call('ZREM', KEYS[3], iid) end
end
if iid == nil then
  local due = next_due()
  if due ~= nil then arm_marker(KEYS[6], due, now) end
  return {0}
end
local token = redis.call('INCR', KEYS[2]) .. ':' .. ARGV[2]
local deadline = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[5], iid, token)
redis.call('ZADD', KEYS[4], fmt(deadline), iid)
-- baton passing: more work now wakes the next idle fetcher; else arm the next due time
local due = next_due()
if first_of(KEYS[4], fmt(now)) ~= nil then
  wake_now(KEYS[6])
elseif due ~= nil then
  arm_marker(KEYS[6], due, now)
end
return {0, iid, token, deadline}
