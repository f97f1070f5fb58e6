--[[
release_sessions: make sessions this worker owns claimable at once (others: no-op).

KEYS
  1 pmeta          partition metadata HASH
  2 sess           HASH of sessions
  3 wq_smarker     session work wake-up marker
ARGV
  1 epoch
  2 worker_id
  3... session keys "<iid>\n<sid>"
RETURNS
  {0, released count}
STATUS
  0 OK, 2 NAMESPACE_MISSING
]]
-- @include common
if not epoch_ok(KEYS[1], ARGV[1]) then return {2} end
local released = 0
for k = 3, #ARGV do
  local sk = ARGV[k]
  if redis.call('HGET', KEYS[2], sk .. '|o') == ARGV[2] then
    redis.call('HSET', KEYS[2], sk .. '|o', '', sk .. '|u', '0')
    released = released + 1
  end
end
if released > 0 then wake_now(KEYS[3]) end
return {0, released}
