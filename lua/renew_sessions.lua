--[[
renew_sessions: extend the leases of sessions this worker owns.

KEYS
  1 pmeta          partition metadata HASH
  2 sess           HASH of sessions
ARGV
  1 epoch
  2 worker_id
  3 lock_ms
  4... session keys "<iid>\n<sid>"
RETURNS
  {0, {1-based positions (among ARGV[4...]) of the sessions LOST: gone or owned by another},
   {positions of those gone or unowned (closed by their orchestration, purged): a subset}}
STATUS
  0 OK, 2 NAMESPACE_MISSING
]]
-- @include common
if not epoch_ok(KEYS[1], ARGV[1]) then return {2} end
local now = server_now()
local lost, gone = {}, {}
for k = 4, #ARGV do
  local sk = ARGV[k]
  local owner = redis.call('HGET', KEYS[2], sk .. '|o')
  if owner == ARGV[2] then
    redis.call('HSET', KEYS[2], sk .. '|u', fmt(now + tonumber(ARGV[3])))
  else
    lost[#lost + 1] = k - 3
    if not owner or owner == '' then gone[#gone + 1] = k - 3 end
  end
end
return {0, lost, gone}
