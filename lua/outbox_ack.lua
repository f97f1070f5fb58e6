--[[
outbox_ack: remove delivered entries from this (the source) partition's outbox. Idempotent.

KEYS
  1 pmeta          partition metadata HASH
  2 outbox         ZSET "<target iid>\n<message id>" -> partition seq
  3 outbox_data    HASH "<entry>|<f>" (see commit_turn)
ARGV
  1 epoch
  2... entries
RETURNS
  {0, removed}
STATUS
  0 OK, 2 NAMESPACE_MISSING
]]
-- @include common
if not epoch_ok(KEYS[1], ARGV[1]) then return {2} end
local removed = 0
for i = 2, #ARGV do
  local e = ARGV[i]
  removed = removed + redis.call('ZREM', KEYS[2], e)
  redis.call('HDEL', KEYS[3], e .. '|d', e .. '|v', e .. '|c', e .. '|n', e .. '|r', e .. '|p',
             e .. '|h', e .. '|i')
end
return {0, removed}
