--[[
outbox_apply: apply cross-partition messages (taken from another partition's outbox) in this,
the destination, partition. Idempotent by "<target iid>\n<message id>": an applied message
leaves a tombstone in the inbox ZSET (expiry = now + ttl), so a redelivery after the message was
consumed is dropped. Creates the target when the message carries a create (the parent, in
another partition, links the child itself); a message to a missing instance is dropped.
Expired tombstones are pruned (at most 100 per call).

KEYS
  1 pmeta          partition metadata HASH
  2 seq            partition sequence counter
  3 oq_ready       ZSET instance -> earliest visible message
  4 oq_locks       ZSET instance -> lock deadline
  5 oq_marker      orchestration wake-up marker
  6 inbox          ZSET "<iid>\n<message id>" -> tombstone expiry
  7 idx_created    ZSET instance -> created_at
  8 idx_pending    status index ZSET (pending)
  9... 4 keys per message, in ARGV order: inst, done, mz, mh of its target
ARGV
  1 epoch
  2 tombstone_ttl_ms
  3 n_msgs
  4... (target_iid, message_id, data, visible_at, create, name, version, parent, has_input,
        input) per message
RETURNS
  {0, applied}     applied = messages applied now (the rest were duplicates or dropped)
STATUS
  0 OK, 2 NAMESPACE_MISSING
]]
-- @include common
if not epoch_ok(KEYS[1], ARGV[1]) then return {2} end
local now = server_now()
local ttl = tonumber(ARGV[2])
local applied = 0
for i = 1, tonumber(ARGV[3]) do
  local a = 3 + (i - 1) * 10
  local k = 8 + (i - 1) * 4
  local tiid, mid = ARGV[a + 1], ARGV[a + 2]
  local inst, done, mz, mh = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local tomb = tiid .. '\n' .. mid
  if not redis.call('ZSCORE', KEYS[6], tomb) then
    if ARGV[a + 5] == '1' and redis.call('EXISTS', inst) == 0 then
      create_record(inst, KEYS[7], KEYS[8], false, tiid, ARGV[a + 6], ARGV[a + 7], ARGV[a + 8],
                    ARGV[a + 10], ARGV[a + 9], now)
      redis.call('HSET', inst, 'smid', mid)
      redis.call('DEL', done)
    end
    if redis.call('EXISTS', inst) == 1 then
      local vis = now
      if ARGV[a + 4] ~= '' then vis = tonumber(ARGV[a + 4]) end
      if add_message(KEYS[2], mz, mh, done, mid, ARGV[a + 3], vis) == 1 then
        requeue_instance(mz, KEYS[3], KEYS[4], KEYS[5], tiid, now)
        applied = applied + 1
      end
    end
    redis.call('ZADD', KEYS[6], fmt(now + ttl), tomb)
  end
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', fmt(now), 'LIMIT', 0, 100)
if #expired > 0 then redis.call('ZREM', KEYS[6], unpack(expired)) end
return {0, applied}
