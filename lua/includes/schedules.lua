-- Schedule helpers, inlined where a script includes "schedules" (after "common").
-- A schedule is "<name>|<f>" fields of `defs`: s spec, h spec hash, n next due, p paused,
-- j the last run's job or instance id.

-- Whether the caller may claim the tick it read as due at `expected` (a compare-and-set on the
-- next due time, judged at `now` on the Redis clock): false when not due, claimed already,
-- paused or deleted.
local function tick_claimable(defs, name, expected, now)
  local due = redis.call('HGET', defs, name .. '|n')
  return due and due == expected and redis.call('HGET', defs, name .. '|p') ~= '1'
     and tonumber(due) <= now
end

-- Move the schedule on to its next due tick.
local function advance_schedule(defs, due_idx, name, next_due)
  redis.call('HSET', defs, name .. '|n', next_due)
  redis.call('ZADD', due_idx, next_due, name)
end
