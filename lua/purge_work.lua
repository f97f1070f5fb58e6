--[[
purge_work: delete up to `batch` work items of an instance dead under its purge tombstone
(common.lua, "Bounded purge"), SSCAN-ing the instance's SET of work item ids from the cursor kept
beside the tombstone; ids a fetch dropped already leave the SET here. Removes the tombstone when
the scan completes. A no-op without a tombstone.

KEYS
  1 pmeta          partition metadata HASH
  2 wq_items       HASH of work items
  3 wq_ready       ZSET plain work
  4 wq_sready      ZSET session work
  5 wq_delayed     ZSET delayed work
  6 wq_leases      ZSET work -> lease deadline
  7 witems         SET of the instance's work item ids
  8 sess           HASH of sessions (holds the tombstone)
ARGV
  1 epoch
  2 iid
  3 batch          SSCAN COUNT (ids examined per call, about)
RETURNS
  {0, deleted, done}   done = 1 when no tombstone is left
STATUS
  0 OK, 2 NAMESPACE_MISSING
]]
-- @include common
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local iid = ARGV[2]
local tomb = redis.call('HGET', KEYS[8], iid .. '\n|p')
if not tomb then return {0, 0, 1} end
tomb = tonumber(tomb)
local cursor = redis.call('HGET', KEYS[8], iid .. '\n|c') or '0'
local scan = redis.call('SSCAN', KEYS[7], cursor, 'COUNT', ARGV[3])
local deleted = 0
for _, id in ipairs(scan[2]) do
  local n = redis.call('HGET', KEYS[2], id .. '|n')
  if not n then
    redis.call('SREM', KEYS[7], id)
  elseif item_seq(n) < tomb then
    delete_item(KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], id)
    deleted = deleted + 1
  end
end
if scan[1] == '0' then
  clear_tombstone(KEYS[8], iid)
  return {0, deleted, 1}
end
redis.call('HSET', KEYS[8], iid .. '\n|c', scan[1])
return {0, deleted, 0}
