--[[
abandon_work_item: give a leased work item back to its queue, visible again after delay_ms;
count_attempt "0" gives back the attempt the fetch counted (never below 0).

KEYS
  1 pmeta          partition metadata HASH
  2 wq_items       HASH of work items
  3 wq_leases      ZSET work -> lease deadline
  4 wq_ready       ZSET plain work
  5 wq_sready      ZSET session work
  6 wq_delayed     ZSET delayed work
  7 wq_marker      plain work wake-up marker
  8 wq_smarker     session work wake-up marker
ARGV
  1 epoch
  2 item_id
  3 token
  4 delay_ms
  5 count_attempt  "1" / "0"
RETURNS
  {0}
STATUS
  0 OK, 1 LEASE_LOST (the token no longer holds the item), 2 NAMESPACE_MISSING
]]
-- @include common
if not epoch_ok(KEYS[1], ARGV[1]) then return {2} end
local now = server_now()
local id = ARGV[2]
local items = KEYS[2]
if redis.call('HGET', items, id .. '|t') ~= ARGV[3] then return {1} end
redis.call('ZREM', KEYS[3], id)
unlease_item(items, KEYS[4], KEYS[6], id, now)  -- a keyed item's slot frees
if ARGV[5] == '0' then
  local a = tonumber(redis.call('HGET', items, id .. '|a') or '0')
  if a > 0 then redis.call('HSET', items, id .. '|a', fmt(a - 1)) end
end
local vis = now + tonumber(ARGV[4])
local where, q = place_item(items, KEYS[4], KEYS[5], KEYS[6], id, vis, now)
local marker = wq_marker_of(items, q, where)  -- its queue's (KEYS[7] / KEYS[8] for "default")
if where == 'delayed' then
  arm_marker(marker, vis, now)
elseif where ~= 'held' then
  wake_now(marker)
end
return {0}
