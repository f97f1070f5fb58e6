--[[
create_instance: create an instance record (status pending) and enqueue its start message.

KEYS
  1 pmeta          partition metadata HASH (namespace epoch)
  2 seq            partition sequence counter
  3 inst           instance record HASH            i:<iid>
  4 done           ids consumed by the last turn   d:<iid>
  5 mz             instance message ZSET           mz:<iid>
  6 mh             instance message HASH           mh:<iid>
  7 oq_ready       ZSET instance -> earliest visible message
  8 oq_locks       ZSET instance -> lock deadline
  9 oq_marker      wake-up marker ZSET of the orchestration queue
  10 idx_created   ZSET instance -> created_at
  11 idx_pending   status index ZSET (pending)
  12 parent_children  SET of the parent's children c:<parent> (c:<iid> when no parent)
ARGV
  1 epoch          namespace epoch
  2 iid
  3 name
  4 version
  5 parent         "" for none
  6 has_input      "1" / "0"
  7 input
  8 message_id     start message id
  9 data           start message
  10 visible_at    ms since epoch, "" = now
  11 policy        "fail" | "ignore"
RETURNS
  {0, 1} created (also when this exact create already ran: same start message id)
  {0, 0} existed, policy ignore: nothing written
  {3, status} existed, policy fail: nothing written
STATUS
  0 OK, 2 NAMESPACE_MISSING, 3 EXISTS
]]
-- @include common
if not epoch_ok(KEYS[1], ARGV[1]) then return {2} end
local now = server_now()
local iid = ARGV[2]
if redis.call('EXISTS', KEYS[3]) == 1 then
  if redis.call('HGET', KEYS[3], 'smid') == ARGV[8] then return {0, 1} end
  if ARGV[11] == 'ignore' then return {0, 0} end
  return {3, redis.call('HGET', KEYS[3], 'status')}
end
create_record(KEYS[3], KEYS[10], KEYS[11], KEYS[12], iid, ARGV[3], ARGV[4], ARGV[5], ARGV[7],
              ARGV[6], now)
redis.call('HSET', KEYS[3], 'smid', ARGV[8])
redis.call('DEL', KEYS[4])
local vis = now
if ARGV[10] ~= '' then vis = tonumber(ARGV[10]) end
add_message(KEYS[2], KEYS[5], KEYS[6], KEYS[4], ARGV[8], ARGV[9], vis)
requeue_instance(KEYS[5], KEYS[7], KEYS[8], KEYS[9], iid, now)
return {0, 1}
