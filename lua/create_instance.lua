--[[
create_instance: create an instance record (status pending) and enqueue its start message.
With a flow key (ARGV[12], docs/routing.md "Orchestration starts"), the start is judged first
against the key's state in the partition's oq:flow HASH (KEYS[13]; the instance id is in the
key's partition): "singleton" keeps the key's instance while it is not terminal, "debounce
<ms>" replaces the input of the key's instance still in its quiet period (pending, its start
not visible yet) and pushes its start to now + ms, "throttle <ms>" keeps the key's instance
while its window is open; a kept start writes nothing else and returns the kept id.

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
  13 oq_flow       HASH "<key>|s" singleton holder, "|d" debounced pending, "|h" throttle
                   window "<iid> <end ms>" (only read with a flow key)
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
  12 flow_key      "" = none
  13 flow_mode     "singleton" | "debounce <ms>" | "throttle <ms>"
RETURNS
  {0, 1} created (also when this exact create already ran: same start message id)
  {0, 0} existed, policy ignore: nothing written
  {0, 2, iid} kept by the flow key's singleton, debounce or throttle: this start is the
    instance iid's (debounce: its input replaced, its start pushed); nothing else written
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
local fkey = ARGV[12] or ''
local mode, mode_ms = string.match(ARGV[13] or '', '^(%a+) ?(%d*)$')
local vis = now
if ARGV[10] ~= '' then vis = tonumber(ARGV[10]) end
if fkey ~= '' then
  local prefix = string.sub(KEYS[1], 1, #KEYS[1] - 5)  -- strip 'pmeta'
  local flows = KEYS[13]
  local function status_of(x) return redis.call('HGET', prefix .. 'i:' .. x, 'status') end
  if mode == 'singleton' then
    local x = redis.call('HGET', flows, fkey .. '|s')
    local st = x and status_of(x)
    if st and not is_terminal(st) then return {0, 2, x} end
  elseif mode == 'debounce' then
    vis = now + tonumber(mode_ms)
    local x = redis.call('HGET', flows, fkey .. '|d')
    if x and status_of(x) == 'pending' and not redis.call('ZSCORE', KEYS[8], x) then
      local xinst, xmz, xmh = prefix .. 'i:' .. x, prefix .. 'mz:' .. x, prefix .. 'mh:' .. x
      local smid = redis.call('HGET', xinst, 'smid')
      local member = smid and redis.call('HGET', xmh, smid .. '|m')
      local due = member and redis.call('ZSCORE', xmz, member)
      if due and tonumber(due) > now then  -- still in its quiet period
        redis.call('HSET', xmh, smid .. '|d', ARGV[9])
        redis.call('ZADD', xmz, fmt(vis), member)
        if ARGV[6] == '1' then
          redis.call('HSET', xinst, 'input', ARGV[7], 'updated', fmt(now))
        else
          redis.call('HDEL', xinst, 'input')
          redis.call('HSET', xinst, 'updated', fmt(now))
        end
        redis.call('ZREM', KEYS[7], x)
        requeue_instance(xmz, KEYS[7], KEYS[8], KEYS[9], x, now)
        return {0, 2, x}
      end
    end
  elseif mode == 'throttle' then
    local h = redis.call('HGET', flows, fkey .. '|h')
    if h then
      local x, until_ms = string.match(h, '^(.*) (%d+)$')
      if tonumber(until_ms) > now then return {0, 2, x} end
    end
  end
end
create_record(KEYS[3], KEYS[10], KEYS[11], KEYS[12], iid, ARGV[3], ARGV[4], ARGV[5], ARGV[7],
              ARGV[6], now)
redis.call('HSET', KEYS[3], 'smid', ARGV[8])
redis.call('DEL', KEYS[4])
if fkey ~= '' then
  if mode == 'singleton' then
    redis.call('HSET', KEYS[13], fkey .. '|s', iid)
  elseif mode == 'debounce' then
    redis.call('HSET', KEYS[13], fkey .. '|d', iid)
  elseif mode == 'throttle' then
    redis.call('HSET', KEYS[13], fkey .. '|h', iid .. ' ' .. fmt(now + tonumber(mode_ms)))
  end
end
add_message(KEYS[2], KEYS[5], KEYS[6], KEYS[4], ARGV[8], ARGV[9], vis)
requeue_instance(KEYS[5], KEYS[7], KEYS[8], KEYS[9], iid, now)
return {0, 1}
