--[[
commit_turn: the one atomic commit of an orchestration turn. Checks the lock token, its lease
and the expected history length before any write; then deletes the turn's tagged messages,
appends the events, updates the instance, purges closed sessions, opens sessions, enqueues work
items, deletes cancelled work (after the enqueue), purges every session on a terminal status,
delivers messages (creating child instances; a message to another partition is written to this
partition's outbox instead, and delivered after the commit), and releases the lock.
With a take_worker (ARGV[21]) it also leases up to take_limit of the new plain work items that
are visible now to that worker, as fetch_work_items would, while no older plain item waits
(FIFO holds); those wake nobody.

KEYS
  1 pmeta          partition metadata HASH
  2 seq            partition sequence counter
  3 oq_lock        HASH instance -> lock token
  4 oq_locks       ZSET instance -> lock deadline
  5 oq_ready       ZSET instance -> earliest visible message
  6 oq_marker      orchestration wake-up marker
  7 inst           instance record HASH
  8 done           ids consumed by the last turn
  9 mz             instance message ZSET
  10 mh            instance message HASH
  11 hist          history LIST of ARGV[4]'s execution   h:<exec>:<iid>
  12 idx_created   ZSET instance -> created_at
  13 idx_terminal  ZSET instance -> completed_at
  14 idx_pending   status index ZSETs, in this order: pending, running, completed,
  15 idx_running     failed, cancelled, continued_as_new
  16 idx_completed
  17 idx_failed
  18 idx_cancelled
  19 idx_continued_as_new
  20 witems        SET of the instance's work item ids   w:<iid>
  21 sset          SET of the instance's open sessions   s:<iid>
  22 children      SET of the instance's children        c:<iid>
  23 wq_items      HASH of work items
  24 wq_ready      ZSET plain work, FIFO seq
  25 wq_sready     ZSET session work, FIFO seq
  26 wq_delayed    ZSET work -> visible_at
  27 wq_leases     ZSET work -> lease deadline
  28 wq_marker     plain work wake-up marker
  29 wq_smarker    session work wake-up marker
  30 sess          HASH of sessions "<iid>\n<sid>|o" owner, "|u" locked_until, "|l" last activity
  31 outbox        ZSET "<target iid>\n<message id>" -> partition seq (delivery order)
  32 outbox_data   HASH "<entry>|<f>": d data, v visible_at, c create, n name, r version,
                   p parent, h has_input, i input
  33... target groups, 5 keys each (inst, done, mz, mh, parent_children) for every other
      instance a message goes to (ARGV[19] groups), then the wake key of each session owner
      named at the end of ARGV (ARGV[20] keys): owners of sessions that get new work (woken
      for it) or are purged (woken to reuse the slot), then (appended, docs/messaging.md):
  +1 values        HASH key-value state of the instance       kv:<iid>
  +2 replies       HASH update id -> encoded reply            u:<iid>
  +3 stream        STREAM progress stream of the instance     st:<iid>
ARGV
  1 epoch
  2 iid
  3 token
  4 execution_id
  5 expected_history_len
  6 status
  7 name_set   8 name   9 version_set   10 version   11 input_set   12 input
  13 output_set  14 output  15 error_set  16 error  17 custom_set  18 custom
  19 n_groups
  20 n_wake
  21 take_worker   "" = lease nothing; else the worker id the taken items are leased to
  22 take_nonce    lease tokens are "<seq>:<nonce>"
  23 take_limit
  24 take_lock_ms
  25... n_events, events...;
        n_work, (item_id, activity_key, session_id, visible_at, data) each; visible_at is
          "<ms or empty>;<queue>;<priority>" for an item routed off "default" or prioritised
          (docs/routing.md: an item of another queue is never taken by take_worker);
        n_cancel, item ids...;  n_open, session ids...;  n_close, session ids...;
        n_msgs, (group, target_iid, message_id, data, visible_at, create, name, version,
                 parent, has_input, input) each, group 0 = this instance, -1 = the outbox
                 (a target in another partition);
        wake owners... (n_wake);
        n_values, (key, flag "1" set / "2" delete, value) each;
        n_replies, (update id, reply) each; replies_ttl_ms;
        n_stream, items...; stream_maxlen; stream_ttl_ms
RETURNS
  {0, due, lease_until_ms, {item_id, token, iid, activity_key, session_id, data, attempt, ...}}
    committed; due = 1 if an instance of the partition is claimable now (a visible message or
    an expired lock), else 0: a hint that lets the committing worker block on the marker at
    once instead of running a claim that finds nothing; then the work items taken (leased to
    take_worker until lease_until_ms; none without a take_worker)
  {0, 1, lease_until_ms, {item, ...}} this exact commit already ran (same token): nothing
    written; the items the first run took for take_worker (same nonce) are returned again
STATUS
  0 OK, 1 LEASE_LOST (token stale, lease expired, instance gone, or history length mismatch:
  {1, reason}), 2 NAMESPACE_MISSING
]]
-- @include common
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local now = server_now()
local iid = ARGV[2]
local token = ARGV[3]
local exec = tonumber(ARGV[4])
local status = ARGV[6]
-- preconditions -------------------------------------------------------------------------
local rerun = false
if redis.call('HGET', KEYS[3], iid) ~= token then
  if redis.call('HGET', KEYS[7], 'ct') ~= token then return {1, 'token'} end
  rerun = true  -- this exact commit already ran: change nothing (see below)
end
if not rerun then
  if tonumber(redis.call('ZSCORE', KEYS[4], iid) or '0') <= now then return {1, 'expired'} end
  if redis.call('EXISTS', KEYS[7]) == 0 then return {1, 'instance'} end
  local cur_exec = tonumber(redis.call('HGET', KEYS[7], 'exec') or '0')
  if exec < cur_exec then return {1, 'execution'} end
  if redis.call('LLEN', KEYS[11]) ~= tonumber(ARGV[5]) then return {1, 'history'} end
  if status_key(status, 14) == nil then return {1, 'status'} end
end
-- argument cursor -------------------------------------------------------------------------
local groups = tonumber(ARGV[19])
local n_wake = tonumber(ARGV[20])
local pos = 25
local function take()
  local v = ARGV[pos]
  pos = pos + 1
  return v
end
local events = {}
for _ = 1, tonumber(take()) do events[#events + 1] = take() end
local work = {}
for _ = 1, tonumber(take()) do
  work[#work + 1] = {take(), take(), take(), take(), take()}
end
local cancels = {}
for _ = 1, tonumber(take()) do cancels[#cancels + 1] = take() end
local opens = {}
for _ = 1, tonumber(take()) do opens[#opens + 1] = take() end
local closes = {}
for _ = 1, tonumber(take()) do closes[#closes + 1] = take() end
local msgs = {}
for _ = 1, tonumber(take()) do
  msgs[#msgs + 1] = {take(), take(), take(), take(), take(), take(), take(), take(), take(),
                     take(), take()}
end
local wake = {}
local wake_base = 32 + groups * 5
for w = 1, n_wake do wake[take()] = KEYS[wake_base + w] end
if rerun then
  -- A re-sent commit (its reply was lost) writes nothing; it hands back again the leases of
  -- the work items the first run took (same worker, same nonce), so none waits for its expiry.
  local again, until_ms = {}, nil
  local suffix = ':' .. ARGV[22]
  for _, w in ipairs(work) do
    local f = redis.call('HMGET', KEYS[23], w[1] .. '|t', w[1] .. '|w', w[1] .. '|a')
    if ARGV[21] ~= '' and f[2] == ARGV[21] and f[1]
       and string.sub(f[1], -#suffix) == suffix then
      local dl = tonumber(redis.call('ZSCORE', KEYS[27], w[1]) or '0')
      if dl > now then
        if until_ms == nil or dl < until_ms then until_ms = dl end
        for _, v in ipairs({w[1], f[1], iid, w[2], '', w[5], f[3]}) do again[#again + 1] = v end
      end
    end
  end
  return {0, 1, until_ms or now, again}
end
-- 1. consume the messages tagged with this lock ------------------------------------------
redis.call('DEL', KEYS[8])
local queued = redis.call('ZRANGE', KEYS[9], 0, -1)
for _, member in ipairs(queued) do
  local mid = string.sub(member, 18)
  if redis.call('HGET', KEYS[10], mid .. '|t') == token then
    delete_message(KEYS[9], KEYS[10], mid)
    redis.call('SADD', KEYS[8], mid)
  end
end
-- 2. history ---------------------------------------------------------------------------------
for i = 1, #events, 1000 do
  redis.call('RPUSH', KEYS[11], unpack(events, i, math.min(i + 999, #events)))
end
-- 3. instance record and indexes --------------------------------------------------------
local inst = KEYS[7]
local old_status = redis.call('HGET', inst, 'status')
redis.call('HSET', inst, 'exec', fmt(exec), 'status', status, 'updated', fmt(now))
redis.call('HDEL', inst, 'held', 'held_at', 'held_fail') -- a committed turn is not held
local function set_or_clear(flag, field, value)
  if flag == '1' then redis.call('HSET', inst, field, value)
  elseif flag == '2' then redis.call('HDEL', inst, field) end
end
set_or_clear(ARGV[7], 'name', ARGV[8])
set_or_clear(ARGV[9], 'version', ARGV[10])
set_or_clear(ARGV[11], 'input', ARGV[12])
set_or_clear(ARGV[13], 'output', ARGV[14])
set_or_clear(ARGV[15], 'error', ARGV[16])
set_or_clear(ARGV[17], 'custom', ARGV[18])
local created = redis.call('HGET', inst, 'created')
if old_status ~= status then
  local old_key = status_key(old_status or '', 14)
  if old_key then redis.call('ZREM', old_key, iid) end
  redis.call('ZADD', status_key(status, 14), created, iid)
end
local terminal = is_terminal(status)
if terminal then
  redis.call('HSET', inst, 'completed', fmt(now))
  redis.call('ZADD', KEYS[13], fmt(now), iid)
else
  redis.call('HDEL', inst, 'completed')
  redis.call('ZREM', KEYS[13], iid)
end
-- 4. sessions closed (purged), then opened --------------------------------------------------
local items, ready, sready, delayed, leases = KEYS[23], KEYS[24], KEYS[25], KEYS[26], KEYS[27]
-- a purged session frees a slot of its owner: wake it (a worker at its limit re-checks then)
local function purge(sid)
  local owner = redis.call('HGET', KEYS[30], iid .. '\n' .. sid .. '|o')
  purge_session(items, ready, sready, delayed, leases, KEYS[20], KEYS[30], KEYS[21], iid, sid)
  if owner and owner ~= '' then
    if wake[owner] then
      wake_now(wake[owner])
      redis.call('PEXPIRE', wake[owner], 3600000)
    else
      wake_now(KEYS[29])
    end
  end
end
for _, sid in ipairs(closes) do purge(sid) end
for _, sid in ipairs(opens) do
  local sk = iid .. '\n' .. sid
  if redis.call('HEXISTS', KEYS[30], sk .. '|o') == 0 then
    redis.call('HSET', KEYS[30], sk .. '|o', '', sk .. '|u', '0', sk .. '|l', fmt(now))
  end
  redis.call('SADD', KEYS[21], sid)
end
-- 5. work items, then cancelled work ----------------------------------------------------------
local take_worker = ARGV[21]
local take_left = 0
if take_worker ~= '' and redis.call('ZCARD', ready) == 0
   and redis.call('HEXISTS', KEYS[1], 'qp:default') == 0 then  -- a paused queue: none taken
  take_left = tonumber(ARGV[23])
end
local take_until = now + tonumber(ARGV[24] ~= '' and ARGV[24] or '0')
-- new session work: wake the session's live owner (its own marker), if it has one we know
local function wake_session_owner(iid, sid)
  local sk = iid .. '\n' .. sid
  local owner = redis.call('HGET', KEYS[30], sk .. '|o')
  local until_ms = tonumber(redis.call('HGET', KEYS[30], sk .. '|u') or '0')
  if owner and owner ~= '' and until_ms > now and wake[owner] then
    wake_now(wake[owner])
    redis.call('PEXPIRE', wake[owner], 3600000)
    return true
  end
  return false
end
local taken = {}
for _, w in ipairs(work) do
  local id, sid = w[1], w[3]
  if redis.call('HEXISTS', items, id .. '|d') == 0 then
    -- w[4] is "<visible_at>" or, routed (docs/routing.md), "<visible_at>;<queue>;<priority>"
    -- and for a keyed call ";<flow limits> <key>" after it (the item's g field)
    local vis_s, wq, wpr, wg = string.match(w[4], '^([^;]*);([^;]*);(-?%d*);?(.*)$')
    if not vis_s then vis_s, wq, wpr, wg = w[4], '', '', '' end
    if wg ~= '' and sid == '' then  -- a session's work is not flow-controlled
      redis.call('HSET', items, id .. '|g', wg)
    end
    local n = redis.call('INCR', KEYS[2]) - tonumber(wpr ~= '' and wpr or '0') * 68719476736
    redis.call('HSET', items, id .. '|d', w[5], id .. '|i', iid, id .. '|k', w[2],
               id .. '|s', sid, id .. '|a', '0', id .. '|n', fmt(n))
    if wq ~= '' and wq ~= 'default' then
      redis.call('HSET', items, id .. '|q', wq)
      redis.call('SADD', string.sub(items, 1, #items - 8) .. 'jq:queues', wq)
    end
    redis.call('SADD', KEYS[20], id)
    local vis = now
    if vis_s ~= '' then vis = tonumber(vis_s) end
    local where, q = place_item(items, ready, sready, delayed, id, vis, now)
    if q then
      -- another queue: never taken here (the committing worker may not serve it); a paused
      -- one's workers are not woken (its backlog must not make them fetch in vain)
      if redis.call('HEXISTS', KEYS[1], 'qp:' .. q) == 1 then
        -- paused: it stays queued, nobody is woken (resume_queue wakes its workers)
      elseif where == 'delayed' then
        arm_marker(wq_marker_of(items, q, where), vis, now)
      elseif where == 'plain' or where == 'group' or not wake_session_owner(iid, sid) then
        if where ~= 'held' then wake_now(wq_marker_of(items, q, where)) end
      end
    elseif where == 'plain' and take_left > 0 and wpr == '' then
      take_left = take_left - 1
      redis.call('ZREM', ready, id)
      local tok = redis.call('INCR', KEYS[2]) .. ':' .. ARGV[22]
      local attempt = redis.call('HINCRBY', items, id .. '|a', 1)
      redis.call('HSET', items, id .. '|t', tok, id .. '|w', take_worker)
      redis.call('ZADD', leases, fmt(take_until), id)
      for _, v in ipairs({id, tok, iid, w[2], '', w[5], tostring(attempt)}) do
        taken[#taken + 1] = v
      end
    elseif where == 'plain' or where == 'group' or where == 'held' then
      take_left = 0  -- an item waits in the queue now: later ones must not pass it
      if where ~= 'held' then wake_now(KEYS[28]) end
    elseif where == 'delayed' then
      arm_marker(KEYS[28], vis, now)
    elseif not wake_session_owner(iid, sid) then
      wake_now(KEYS[29])
    end
  end
end
for _, id in ipairs(cancels) do
  delete_item(items, ready, sready, delayed, leases, KEYS[20], id)
end
-- 6. a terminal status purges every session of the instance --------------------------------
if terminal then
  local sids = redis.call('SMEMBERS', KEYS[21])
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[20])) do
    local sid = redis.call('HGET', items, id .. '|s')
    if sid and sid ~= '' then sids[#sids + 1] = sid end
  end
  for _, sid in ipairs(sids) do purge(sid) end
end
-- 7. messages (timers are messages to this instance with a visible time) -------------------
for _, m in ipairs(msgs) do
  local g = tonumber(m[1])
  if g < 0 then
    local entry = m[2] .. '\n' .. m[3]
    if not redis.call('ZSCORE', KEYS[31], entry) then
      redis.call('ZADD', KEYS[31], redis.call('INCR', KEYS[2]), entry)
      redis.call('HSET', KEYS[32], entry .. '|d', m[4], entry .. '|v', m[5], entry .. '|c', m[6],
                 entry .. '|n', m[7], entry .. '|r', m[8], entry .. '|p', m[9],
                 entry .. '|h', m[10], entry .. '|i', m[11])
    end
    if m[6] == '1' and m[9] == iid then redis.call('SADD', KEYS[22], m[2]) end
  else
    local t_inst, t_done, t_mz, t_mh, t_children = KEYS[7], KEYS[8], KEYS[9], KEYS[10],
                                                    KEYS[22]
    if g > 0 then
      local b = 32 + (g - 1) * 5
      t_inst, t_done, t_mz, t_mh, t_children = KEYS[b + 1], KEYS[b + 2], KEYS[b + 3], KEYS[b + 4],
                                                KEYS[b + 5]
    end
    local tiid = m[2]
    if m[6] == '1' and redis.call('EXISTS', t_inst) == 0 then
      create_record(t_inst, KEYS[12], KEYS[14], t_children, tiid, m[7], m[8], m[9], m[11], m[10],
                    now)
      redis.call('HSET', t_inst, 'smid', m[3])
      redis.call('DEL', t_done)
    end
    if redis.call('EXISTS', t_inst) == 1 then
      local vis = now
      if m[5] ~= '' then vis = tonumber(m[5]) end
      local added = add_message(KEYS[2], t_mz, t_mh, t_done, m[3], m[4], vis)
      if added == 1 and g > 0 then
        requeue_instance(t_mz, KEYS[5], KEYS[4], KEYS[6], tiid, now)
      end
    end
  end
end
-- 7b. key-value state and update replies (absent tail = none) -------------------------------
local ext = wake_base + n_wake
local values = {}
for _ = 1, tonumber(take() or '0') do values[#values + 1] = {take(), take(), take()} end
local replies = {}
for _ = 1, tonumber(take() or '0') do replies[#replies + 1] = {take(), take()} end
local replies_ttl = take()
for _, v in ipairs(values) do
  if v[2] == '1' then redis.call('HSET', KEYS[ext + 1], v[1], v[3])
  else redis.call('HDEL', KEYS[ext + 1], v[1]) end
end
for _, r in ipairs(replies) do redis.call('HSET', KEYS[ext + 2], r[1], r[2]) end
if #replies > 0 then redis.call('PEXPIRE', KEYS[ext + 2], tonumber(replies_ttl)) end
local stream_items = {}
for _ = 1, tonumber(take() or '0') do stream_items[#stream_items + 1] = take() end
local stream_maxlen, stream_ttl = take(), take()
for _, item in ipairs(stream_items) do
  redis.call('XADD', KEYS[ext + 3], 'MAXLEN', '~', stream_maxlen, '*', 'd', item)
end
if #stream_items > 0 then redis.call('PEXPIRE', KEYS[ext + 3], tonumber(stream_ttl)) end
-- 8. release the lock -----------------------------------------------------------------------
redis.call('HDEL', KEYS[3], iid)
redis.call('ZREM', KEYS[4], iid)
redis.call('HSET', inst, 'ct', token)
requeue_instance(KEYS[9], KEYS[5], KEYS[4], KEYS[6], iid, now)
local due = 0
if #redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', fmt(now), 'LIMIT', 0, 1) > 0
    or #redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', fmt(now), 'LIMIT', 0, 1) > 0 then
  due = 1
end
return {0, due, take_until, taken}
