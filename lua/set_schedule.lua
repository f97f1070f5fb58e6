--[[
set_schedule: create, replace, pause, resume or delete a schedule.
"declare" creates it, or replaces its spec when the spec's hash changed (keeping its paused
state; next_due is reset only then); the same hash again changes nothing (every worker declares
the schedules of its app at start). "pause" takes it off the due index, "resume" puts it back
due at next_due, "delete" removes it (its jobs stay).

KEYS
  1 pmeta          partition metadata HASH
  2 sc_defs        HASH of schedules
  3 sc_due         ZSET schedule -> next due time
ARGV
  1 epoch
  2 op             "declare" / "pause" / "resume" / "delete"
  3 name
  4 spec           (declare) the encoded schedule, else ""
  5 spec_hash      (declare) else ""
  6 next_due       (declare, resume) else ""
RETURNS
  {0, "created" / "updated" / "unchanged" / "paused" / "resumed" / "deleted"}
STATUS
  0 OK, 2 NAMESPACE_MISSING, 4 NOT_FOUND (pause, resume, delete of an unknown schedule)
]]
-- @include common
if not epoch_ok(KEYS[1], ARGV[1]) then return {2} end
local defs, due_idx = KEYS[2], KEYS[3]
local op, name = ARGV[2], ARGV[3]
local exists = redis.call('HEXISTS', defs, name .. '|s') == 1
if op == 'declare' then
  if exists and redis.call('HGET', defs, name .. '|h') == ARGV[5] then return {0, 'unchanged'} end
  redis.call('HSET', defs, name .. '|s', ARGV[4], name .. '|h', ARGV[5], name .. '|n', ARGV[6])
  if redis.call('HGET', defs, name .. '|p') ~= '1' then redis.call('ZADD', due_idx, ARGV[6], name) end
  return {0, exists and 'updated' or 'created'}
end
if not exists then return {4} end
if op == 'pause' then
  redis.call('HSET', defs, name .. '|p', '1')
  redis.call('ZREM', due_idx, name)
  return {0, 'paused'}
end
if op == 'resume' then
  if redis.call('HGET', defs, name .. '|p') == '1' then
    redis.call('HDEL', defs, name .. '|p')
    redis.call('HSET', defs, name .. '|n', ARGV[6])
    redis.call('ZADD', due_idx, ARGV[6], name)
  end
  return {0, 'resumed'}
end
redis.call('HDEL', defs, name .. '|s', name .. '|h', name .. '|n', name .. '|p', name .. '|j')
redis.call('ZREM', due_idx, name)
return {0, 'deleted'}
