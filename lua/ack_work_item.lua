--[[
ack_work_item: delete a leased work item and enqueue its completion to its instance, atomically.
Refreshes the session's last activity when the session is still owned by the acking worker.
With a nonce (ARGV[7]), the instance unlocked and no other work item of the instance left (so
a fan-out's completions still gather into few turns), it also locks the instance for the acking
worker and tags its visible messages, as claim_orchestration + lock_messages would (no wake-up:
the acking worker runs the turn itself).

KEYS
  1 pmeta          partition metadata HASH
  2 seq            partition sequence counter
  3 wq_items       HASH of work items
  4 wq_leases      ZSET work -> lease deadline
  5 wq_ready       ZSET plain work
  6 wq_sready      ZSET session work
  7 wq_delayed     ZSET delayed work
  8 sess           HASH of sessions
  9 witems         SET of the instance's work item ids
  10 inst          instance record HASH
  11 done          ids consumed by the instance's last turn
  12 mz            instance message ZSET
  13 mh            instance message HASH
  14 oq_ready      ZSET instance -> earliest visible message
  15 oq_locks      ZSET instance -> lock deadline
  16 oq_marker     orchestration wake-up marker
  17 oq_lock       HASH instance -> lock token
  18 hist          history LIST of ARGV[10]'s execution   h:<exec>:<iid>
ARGV
  1 epoch
  2 item_id
  3 token
  4 iid
  5 message_id     of the completion
  6 completion
  7 nonce          "" = do not lock; else the lock token is "<seq>:<nonce>"
  8 lock_ms
  9 max_messages
  10 exec_guess    execution id whose history KEYS[18] is
RETURNS
  {0} acked (also when this completion was already delivered: a repeated ack, which returns
  the lock below again if its first run took it, same nonce, still held);
  the completion is dropped if the instance no longer exists
  {0, token, lease_until_ms, {instance field, value, ...}, {mid, data, attempt, ...}, read,
   {event, ...}} acked, and the instance locked for the caller (as lock_messages returns it)
STATUS
  0 OK, 1 LEASE_LOST (stale token, expired lease, or item cancelled or purged),
  2 NAMESPACE_MISSING
]]
-- @include common
if not epoch_ok(KEYS[1], ARGV[1]) then return {2} end
local now = server_now()
local id, iid, mid = ARGV[2], ARGV[4], ARGV[5]
local items = KEYS[3]
local f = redis.call('HMGET', items, id .. '|t', id .. '|i', id .. '|s', id .. '|w')
local live = f[1] == ARGV[3]
  and tonumber(redis.call('ZSCORE', KEYS[4], id) or '0') > now
  and f[2] == iid
  and not (purging(KEYS[8]) and item_dead(items, KEYS[8], id))
if not live then
  if redis.call('HEXISTS', KEYS[13], mid .. '|d') == 1
     or redis.call('SISMEMBER', KEYS[11], mid) == 1 then
    -- a repeated ack (its reply was lost): if the first run locked the instance for us (same
    -- nonce) and the lock holds, hand its lease back again rather than let it expire
    local held = redis.call('HGET', KEYS[17], iid)
    local suffix = ':' .. ARGV[7]
    local deadline = tonumber(redis.call('ZSCORE', KEYS[15], iid) or '0')
    if ARGV[7] ~= '' and held and string.sub(held, -#suffix) == suffix and deadline > now then
      local msgs = tag_messages(KEYS[12], KEYS[13], held, tonumber(ARGV[9]), now)
      return {0, held, unpack(lock_reply(KEYS[10], KEYS[18], ARGV[10], deadline, msgs))}
    end
    return {0}
  end
  return {1}
end
delete_item(items, KEYS[5], KEYS[6], KEYS[7], KEYS[4], KEYS[9], id)
if f[3] and f[3] ~= '' then  -- session work: its session was active now
  local sk = iid .. '\n' .. f[3]
  if redis.call('HGET', KEYS[8], sk .. '|o') == f[4] then
    redis.call('HSET', KEYS[8], sk .. '|l', fmt(now))
  end
end
if redis.call('EXISTS', KEYS[10]) == 1 then
  if add_message(KEYS[2], KEYS[12], KEYS[13], KEYS[11], mid, ARGV[6], now) == 1 then
    if ARGV[7] ~= '' and not redis.call('ZSCORE', KEYS[15], iid)
       and redis.call('SCARD', KEYS[9]) == 0 then
      local token = redis.call('INCR', KEYS[2]) .. ':' .. ARGV[7]
      local deadline = now + tonumber(ARGV[8])
      redis.call('HSET', KEYS[17], iid, token)
      redis.call('ZADD', KEYS[15], fmt(deadline), iid)
      redis.call('ZREM', KEYS[14], iid)
      local msgs = tag_messages(KEYS[12], KEYS[13], token, tonumber(ARGV[9]), now)
      return {0, token, unpack(lock_reply(KEYS[10], KEYS[18], ARGV[10], deadline, msgs))}
    end
    requeue_instance(KEYS[12], KEYS[14], KEYS[15], KEYS[16], iid, now)
  end
end
return {0}
