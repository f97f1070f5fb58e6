--[[
renew_work_items: extend work item leases held with live tokens; for session work also extend
the session lease (when session_lock_ms is given) and its last activity, if the session is still
owned by the worker holding the item.

KEYS
  1 pmeta          partition metadata HASH
  2 wq_items       HASH of work items
  3 wq_leases      ZSET work -> lease deadline
  4 sess           HASH of sessions
ARGV
  1 epoch
  2 lock_ms
  3 session_lock_ms   "" = leave the session lease's deadline alone
  4... item_id, token pairs
RETURNS
  {0, lease_until_ms, {lost item ids...}}
STATUS
  0 OK, 2 NAMESPACE_MISSING
]]
-- @include common
if not epoch_ok(KEYS[1], ARGV[1]) then return {2} end
local now = server_now()
local items = KEYS[2]
local deadline = now + tonumber(ARGV[2])
local lost = {}
local check_dead = purging(KEYS[4])
for k = 4, #ARGV, 2 do
  local id, token = ARGV[k], ARGV[k + 1]
  if redis.call('HGET', items, id .. '|t') == token
     and tonumber(redis.call('ZSCORE', KEYS[3], id) or '0') > now
     and not (check_dead and item_dead(items, KEYS[4], id)) then
    redis.call('ZADD', KEYS[3], fmt(deadline), id)
    local f = redis.call('HMGET', items, id .. '|i', id .. '|s', id .. '|w')
    if f[2] and f[2] ~= '' then
      local sk = f[1] .. '\n' .. f[2]
      if redis.call('HGET', KEYS[4], sk .. '|o') == f[3] then
        redis.call('HSET', KEYS[4], sk .. '|l', fmt(now))
        if ARGV[3] ~= '' then
          local u = now + tonumber(ARGV[3])
          if u > tonumber(redis.call('HGET', KEYS[4], sk .. '|u') or '0') then
            redis.call('HSET', KEYS[4], sk .. '|u', fmt(u))
          end
        end
      end
    end
  else
    lost[#lost + 1] = id
  end
end
return {0, deadline, lost}
