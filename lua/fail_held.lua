--[[
fail_held: ask the workers to fail a held instance (its code diverged from its history) at its
next retried turn, instead of holding it again. Only a held instance is marked; the mark goes
with the held marker when a turn commits (commit_turn).

KEYS
  1 pmeta          partition metadata HASH
  2 inst           instance record HASH
ARGV
  1 epoch
RETURNS
  {0, 1} marked
  {0, 0} the instance is not held (or does not exist): nothing changed
STATUS
  0 OK, 2 NAMESPACE_MISSING
]]
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
if not redis.call('HGET', KEYS[2], 'held') then return {0, 0} end
redis.call('HSET', KEYS[2], 'held_fail', '1')
return {0, 1}
