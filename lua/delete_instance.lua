--[[
delete_instance: delete one instance with everything it owns in the partition: record, every
execution's history, queued messages, lock, work items (in-flight leases are stolen), sessions,
index entries, and its entry in its parent's children. The caller deletes trees bottom-up.

KEYS
  1 pmeta          partition metadata HASH
  2 oq_lock        HASH instance -> lock token
  3 oq_locks       ZSET instance -> lock deadline
  4 oq_ready       ZSET instance -> earliest visible message
  5 idx_created    ZSET instance -> created_at
  6 idx_terminal   ZSET instance -> completed_at
  7 idx_pending    status index ZSETs, in this order: pending, running, completed,
  8 idx_running      failed, cancelled, continued_as_new
  9 idx_completed
  10 idx_failed
  11 idx_cancelled
  12 idx_continued_as_new
  13 wq_items      HASH of work items
  14 wq_ready      ZSET plain work
  15 wq_sready     ZSET session work
  16 wq_delayed    ZSET delayed work
  17 wq_leases     ZSET work -> lease deadline
  18 sess          HASH of sessions
  19 inst          instance record HASH
  20 done          ids consumed by the last turn
  21 mz            instance message ZSET
  22 mh            instance message HASH
  23 witems        SET of the instance's work item ids
  24 sset          SET of the instance's open sessions
  25 children      SET of the instance's children
  26 parent_children  SET of the parent's children (c:<iid> when no parent)
  27... history LIST of executions 1..ARGV[4], then the key-value state (kv:<iid>), the
        update replies (u:<iid>) and the progress stream (st:<iid>): every key from 27 on is
        deleted
ARGV
  1 epoch
  2 iid
  3 force          "1" deletes a non-terminal instance too
  4 exec           the instance's current execution id (history keys declared for 1..exec)
  5 parent         the instance's parent id ("" none)
  6 min_age_ms     "" = any; else only a terminal instance completed at least this long ago
RETURNS
  {0} deleted
STATUS
  0 OK, 2 NAMESPACE_MISSING, 4 NOT_FOUND, 6 RUNNING {6, status} (not terminal, no force),
  7 RETRY (execution or parent changed since the caller read them),
  8 NOT_ELIGIBLE (min_age_ms given: not terminal or completed too recently)
]]
-- @include common
if not epoch_ok(KEYS[1], ARGV[1]) then return {2} end
local iid = ARGV[2]
local inst = KEYS[19]
if redis.call('EXISTS', inst) == 0 then return {4} end
local f = redis.call('HMGET', inst, 'status', 'exec', 'parent', 'completed')
local status = f[1]
if tonumber(f[2] or '0') ~= tonumber(ARGV[4]) or (f[3] or '') ~= ARGV[5] then return {7} end
if ARGV[6] ~= '' then
  local now = server_now()
  if not is_terminal(status) or tonumber(f[4] or now) > now - tonumber(ARGV[6]) then
    return {8}
  end
elseif ARGV[3] ~= '1' and not is_terminal(status) then
  return {6, status}
end
local items = KEYS[13]
local sids = redis.call('SMEMBERS', KEYS[24])
for _, id in ipairs(redis.call('SMEMBERS', KEYS[23])) do
  local sid = redis.call('HGET', items, id .. '|s')
  if sid and sid ~= '' then sids[#sids + 1] = sid end
  delete_item(items, KEYS[14], KEYS[15], KEYS[16], KEYS[17], KEYS[23], id)
end
clear_tombstone(KEYS[18], iid)
for _, sid in ipairs(sids) do
  local sk = iid .. '\n' .. sid
  redis.call('HDEL', KEYS[18], sk .. '|o', sk .. '|u', sk .. '|l')
end
for k = 27, #KEYS do redis.call('DEL', KEYS[k]) end
redis.call('DEL', inst, KEYS[20], KEYS[21], KEYS[22], KEYS[23], KEYS[24], KEYS[25])
redis.call('HDEL', KEYS[2], iid)
redis.call('ZREM', KEYS[3], iid)
redis.call('ZREM', KEYS[4], iid)
redis.call('ZREM', KEYS[5], iid)
redis.call('ZREM', KEYS[6], iid)
for k = 7, 12 do redis.call('ZREM', KEYS[k], iid) end
if ARGV[5] ~= '' then redis.call('SREM', KEYS[26], iid) end
announce(KEYS[6], iid)  -- a client waiting on it learns it is gone (channel: idx_terminal's name)
return {0}
