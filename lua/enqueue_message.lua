--[[
enqueue_message: enqueue a message for an existing instance (idempotent by message id).

KEYS
  1 pmeta          partition metadata HASH
  2 seq            partition sequence counter
  3 inst           instance record HASH
  4 done           ids consumed by the last turn
  5 mz             instance message ZSET
  6 mh             instance message HASH
  7 oq_ready       ZSET instance -> earliest visible message
  8 oq_locks       ZSET instance -> lock deadline
  9 oq_marker      wake-up marker ZSET
ARGV
  1 epoch
  2 iid
  3 message_id
  4 data
  5 visible_at     ms since epoch, "" = now
RETURNS
  {0, 1} enqueued; {0, 0} duplicate message id (nothing written)
STATUS
  0 OK, 2 NAMESPACE_MISSING, 4 NOT_FOUND (no such instance),
  9 ENDED {9, status} (the instance is completed, failed or cancelled: nothing written)
]]
-- @include common
if not epoch_ok(KEYS[1], ARGV[1]) then return {2} end
local status = redis.call('HGET', KEYS[3], 'status')
if not status then return {4} end
if is_terminal(status) then return {9, status} end
local now = server_now()
local vis = now
if ARGV[5] ~= '' then vis = tonumber(ARGV[5]) end
local added = add_message(KEYS[2], KEYS[5], KEYS[6], KEYS[4], ARGV[3], ARGV[4], vis)
if added == 1 then requeue_instance(KEYS[5], KEYS[7], KEYS[8], KEYS[9], ARGV[2], now) end
return {0, added}
