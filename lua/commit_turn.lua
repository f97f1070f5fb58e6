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
With a claim_nonce (ARGV[25]) it then claims the partition's next claimable instance for the
committing worker, as claim_orchestration would (phase 1 of its next fetch, one call saved;
the caller runs lock_messages on it next).
A terminal status or an update's reply is announced: the instance id is published on the
channel named after idx_terminal (clients waiting on the instance wake at once).
Every fixed key and argument below is named once at the top of the body (K_<name>, A_<name>);
storage/packing.py packs them from the same names (tests/storage/test_packing.py pins both).

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
  14 idx_pending   status index ZSETs, in STATUSES order (common.lua): pending, running,
  15 idx_running     completed, failed, cancelled, continued_as_new
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
  33 values        HASH key-value state of the instance       kv:<iid>
  34 replies       HASH update id -> encoded reply            u:<iid>
  35 stream        STREAM progress stream of the instance     st:<iid>
  36... target groups, 5 keys each (inst, done, mz, mh, children of its parent) for every
      other instance of this partition a message goes to (n_groups groups), then the wake key
      of each session owner named at the end of ARGV (n_wake keys): owners of sessions that get
      new work (woken for it) or are purged (woken to reuse the slot)
ARGV
  1 epoch
  2 iid
  3 token
  4 execution_id
  5 expected_history_len
  6 status
  7 name_set      "1" set name, "0" leave it
  8 name
  9 version_set
  10 version
  11 input_set
  12 input
  13 output_set   "1" set, "2" clear
  14 output
  15 error_set
  16 error
  17 custom_set   "1" set, "2" clear, "0" leave it
  18 custom
  19 n_groups
  20 n_wake
  21 take_worker  "" = lease nothing; else the worker id the taken items are leased to
  22 take_nonce   lease tokens are "<seq>:<nonce>"
  23 take_limit
  24 take_lock_ms
  25 claim_nonce  "" = claim nothing; else the nonce of the next claim's token "<seq>:<nonce>"
  26 claim_lock_ms
  27... n_events, events...;
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
  {0, due, lease_until_ms, {item_id, token, iid, activity_key, session_id, data, attempt, ...},
   purge_pending, {claimed iid, token, lock deadline} or {}}
    committed; due = 1 if an instance of the partition is claimable now (a visible message or
    an expired lock), else 0: a hint that lets the committing worker block on the marker at
    once instead of running a claim that finds nothing; then the work items taken (leased to
    take_worker until lease_until_ms; none without a take_worker); purge_pending = 1 if a
    terminal status left more than PURGE_BATCH work items under a tombstone (the caller runs
    purge_work until it is done); then the instance claimed for the committing worker (with a
    claim_nonce; due is then whether more is claimable after that claim)
  {0, 1, lease_until_ms, {item, ...}} this exact commit already ran (same token): nothing
    written; the items the first run took for take_worker (same nonce) are returned again
STATUS
  0 OK, 1 LEASE_LOST (token stale, lease expired, instance gone, or history length mismatch:
  {1, reason}), 2 NAMESPACE_MISSING
]]
-- @include common
-- KEYS, each named once (the header's names; storage/packing.py COMMIT_TURN_KEYS) ------------
local K_pmeta = KEYS[1]            -- partition metadata
local K_seq = KEYS[2]              -- partition sequence counter
local K_oq_lock = KEYS[3]          -- instance -> lock token
local K_oq_locks = KEYS[4]         -- instance -> lock deadline
local K_oq_ready = KEYS[5]         -- instance -> earliest visible message
local K_oq_marker = KEYS[6]        -- orchestration wake-up marker
local K_inst = KEYS[7]             -- this instance's record
local K_done = KEYS[8]             -- ids its last turn consumed
local K_mz = KEYS[9]               -- its message ZSET
local K_mh = KEYS[10]              -- its message HASH
local K_hist = KEYS[11]            -- history LIST of A_execution_id
local K_idx_created = KEYS[12]     -- instance -> created_at
local K_idx_terminal = KEYS[13]    -- instance -> completed_at
local K_idx_status = status_keys(14)  -- KEYS[14..19]: status -> its index ZSET
local K_witems = KEYS[20]          -- the instance's work item ids
local K_sset = KEYS[21]            -- the instance's open sessions
local K_children = KEYS[22]        -- the instance's children
local K_wq_items = KEYS[23]        -- work item HASH
local K_wq_ready = KEYS[24]        -- plain work, FIFO
local K_wq_sready = KEYS[25]       -- session work, FIFO
local K_wq_delayed = KEYS[26]      -- work -> visible_at
local K_wq_leases = KEYS[27]       -- work -> lease deadline
local K_wq_marker = KEYS[28]       -- plain work wake-up marker
local K_wq_smarker = KEYS[29]      -- session work wake-up marker
local K_sess = KEYS[30]            -- sessions HASH
local K_outbox = KEYS[31]          -- outbox entries -> delivery order
local K_outbox_data = KEYS[32]     -- outbox entry fields
local K_values = KEYS[33]          -- key-value state
local K_replies = KEYS[34]         -- update replies
local K_stream = KEYS[35]          -- progress stream
local N_FIXED_KEYS = 35            -- then 5 keys per target group, then the wake keys
-- ARGV, each named once (storage/packing.py COMMIT_TURN_ARGV) --------------------------------
local A_epoch = ARGV[1]
local A_iid = ARGV[2]
local A_token = ARGV[3]
local A_execution_id = ARGV[4]
local A_expected_history_len = ARGV[5]
local A_status = ARGV[6]
local A_name_set = ARGV[7]
local A_name = ARGV[8]
local A_version_set = ARGV[9]
local A_version = ARGV[10]
local A_input_set = ARGV[11]
local A_input = ARGV[12]
local A_output_set = ARGV[13]
local A_output = ARGV[14]
local A_error_set = ARGV[15]
local A_error = ARGV[16]
local A_custom_set = ARGV[17]
local A_custom = ARGV[18]
local A_n_groups = ARGV[19]
local A_n_wake = ARGV[20]
local A_take_worker = ARGV[21]
local A_take_nonce = ARGV[22]
local A_take_limit = ARGV[23]
local A_take_lock_ms = ARGV[24]
local A_claim_nonce = ARGV[25]
local A_claim_lock_ms = ARGV[26]
local N_FIXED_ARGV = 26            -- then the sections, read by take() below
-- the variable KEYS: target group g (1-based) and wake key w (1-based)
local n_groups = tonumber(A_n_groups)
local n_wake = tonumber(A_n_wake)
local function group_keys(g)  -- inst, done, mz, mh, children of its parent
  local b = N_FIXED_KEYS + (g - 1) * 5
  return KEYS[b + 1], KEYS[b + 2], KEYS[b + 3], KEYS[b + 4], KEYS[b + 5]
end
local function wake_key(w)
  return KEYS[N_FIXED_KEYS + n_groups * 5 + w]
end

if not epoch_ok(K_pmeta, A_epoch) then return {2} end
local now = server_now()
local iid = A_iid
local token = A_token
local exec = tonumber(A_execution_id)
local status = A_status
-- preconditions -------------------------------------------------------------------------
local rerun = false
if redis.call('HGET', K_oq_lock, iid) ~= token then
  if redis.call('HGET', K_inst, 'ct') ~= token then return {1, 'token'} end
  rerun = true  -- this exact commit already ran: change nothing (see below)
end
if not rerun then
  if tonumber(redis.call('ZSCORE', K_oq_locks, iid) or '0') <= now then return {1, 'expired'} end
  if redis.call('EXISTS', K_inst) == 0 then return {1, 'instance'} end
  local cur_exec = tonumber(redis.call('HGET', K_inst, 'exec') or '0')
  if exec < cur_exec then return {1, 'execution'} end
  if redis.call('LLEN', K_hist) ~= tonumber(A_expected_history_len) then
    return {1, 'history'}
  end
  if K_idx_status[status] == nil then return {1, 'status'} end
end
-- argument cursor -------------------------------------------------------------------------
local pos = N_FIXED_ARGV + 1
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
for w = 1, n_wake do wake[take()] = wake_key(w) end
local items, ready, sready = K_wq_items, K_wq_ready, K_wq_sready
local delayed, leases = K_wq_delayed, K_wq_leases
if rerun then
  -- A re-sent commit (its reply was lost) writes nothing; it hands back again the leases of
  -- the work items the first run took (same worker, same nonce), so none waits for its expiry.
  local again, until_ms = {}, nil
  local suffix = ':' .. A_take_nonce
  for _, w in ipairs(work) do
    local f = redis.call('HMGET', items, w[1] .. '|t', w[1] .. '|w', w[1] .. '|a')
    if A_take_worker ~= '' and f[2] == A_take_worker and f[1]
       and string.sub(f[1], -#suffix) == suffix then
      local dl = tonumber(redis.call('ZSCORE', leases, w[1]) or '0')
      if dl > now then
        if until_ms == nil or dl < until_ms then until_ms = dl end
        for _, v in ipairs({w[1], f[1], iid, w[2], '', w[5], f[3]}) do again[#again + 1] = v end
      end
    end
  end
  return {0, 1, until_ms or now, again}
end
-- 1. consume the messages tagged with this lock ------------------------------------------
redis.call('DEL', K_done)
local queued = redis.call('ZRANGE', K_mz, 0, -1)
for _, member in ipairs(queued) do
  local mid = string.sub(member, 18)
  if redis.call('HGET', K_mh, mid .. '|t') == token then
    delete_message(K_mz, K_mh, mid, member)
    redis.call('SADD', K_done, mid)
  end
end
-- 2. history ---------------------------------------------------------------------------------
for i = 1, #events, 1000 do
  redis.call('RPUSH', K_hist, unpack(events, i, math.min(i + 999, #events)))
end
-- 3. instance record and indexes --------------------------------------------------------
-- (one HMGET, one HDEL, one HSET: each field set or cleared is collected first)
local inst = K_inst
local record = redis.call('HMGET', inst, 'status', 'created')
local old_status, created = record[1], record[2]
local terminal = is_terminal(status)
-- ct: the token of the last commit (a re-sent commit is recognised by it, above)
local sets = {'exec', fmt(exec), 'status', status, 'updated', fmt(now), 'ct', token}
local clears = {'held', 'held_at', 'held_fail'}  -- a committed turn is not held
local function set_or_clear(flag, field, value)
  if flag == '1' then
    sets[#sets + 1] = field
    sets[#sets + 1] = value
  elseif flag == '2' then
    clears[#clears + 1] = field
  end
end
set_or_clear(A_name_set, 'name', A_name)
set_or_clear(A_version_set, 'version', A_version)
set_or_clear(A_input_set, 'input', A_input)
set_or_clear(A_output_set, 'output', A_output)
set_or_clear(A_error_set, 'error', A_error)
set_or_clear(A_custom_set, 'custom', A_custom)
set_or_clear(terminal and '1' or '2', 'completed', fmt(now))
redis.call('HDEL', inst, unpack(clears))
redis.call('HSET', inst, unpack(sets))
if old_status ~= status then
  local old_key = K_idx_status[old_status or '']
  if old_key then redis.call('ZREM', old_key, iid) end
  redis.call('ZADD', K_idx_status[status], created, iid)
end
if terminal then
  redis.call('ZADD', K_idx_terminal, fmt(now), iid)
else
  redis.call('ZREM', K_idx_terminal, iid)
end
-- 4. sessions closed (purged), then opened --------------------------------------------------
-- a purged session frees a slot of its owner: wake it (a worker at its limit re-checks then)
local function purge(sid, records_only)
  local owner = redis.call('HGET', K_sess, iid .. '\n' .. sid .. '|o')
  purge_session(items, ready, sready, delayed, leases, K_witems, K_sess, K_sset, iid, sid,
                records_only)
  if owner and owner ~= '' then
    if wake[owner] then
      wake_now(wake[owner])
      redis.call('PEXPIRE', wake[owner], 3600000)
    else
      wake_now(K_wq_smarker)
    end
  end
end
-- a terminal status with more than PURGE_BATCH work items purges under a tombstone (step 6)
local big_purge = terminal and redis.call('SCARD', K_witems) > PURGE_BATCH
for _, sid in ipairs(closes) do purge(sid, big_purge) end
for _, sid in ipairs(opens) do
  local sk = iid .. '\n' .. sid
  if redis.call('HEXISTS', K_sess, sk .. '|o') == 0 then
    redis.call('HSET', K_sess, sk .. '|o', '', sk .. '|u', '0', sk .. '|l', fmt(now))
  end
  redis.call('SADD', K_sset, sid)
end
-- 5. work items, then cancelled work ----------------------------------------------------------
local take_worker = A_take_worker
local take_left = 0
if take_worker ~= '' and redis.call('ZCARD', ready) == 0
   and redis.call('HEXISTS', K_pmeta, 'qp:default') == 0 then  -- a paused queue: none taken
  take_left = tonumber(A_take_limit)
end
local take_until = now + tonumber(A_take_lock_ms ~= '' and A_take_lock_ms or '0')
-- new session work: wake the session's live owner (its own marker), if it has one we know
local function wake_session_owner(iid, sid)
  local sk = iid .. '\n' .. sid
  local owner = redis.call('HGET', K_sess, sk .. '|o')
  local until_ms = tonumber(redis.call('HGET', K_sess, sk .. '|u') or '0')
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
    local n = redis.call('INCR', K_seq) - tonumber(wpr ~= '' and wpr or '0') * 68719476736
    local vis = now
    if vis_s ~= '' then vis = tonumber(vis_s) end
    local routed = wq ~= '' and wq ~= 'default'
    -- a plain item visible now, taken while no older plain item waits (FIFO): leased as it is
    -- written, never in the ready ZSET (4 calls; placing it, then taking it, took 8)
    local take_now = not routed and sid == '' and wg == '' and vis <= now and take_left > 0
      and wpr == ''
    local fields = {id .. '|d', w[5], id .. '|i', iid, id .. '|k', w[2], id .. '|s', sid,
                    id .. '|a', take_now and '1' or '0', id .. '|n', fmt(n)}
    local tok
    if take_now then
      take_left = take_left - 1
      tok = redis.call('INCR', K_seq) .. ':' .. A_take_nonce
      for _, v in ipairs({id .. '|t', tok, id .. '|w', take_worker}) do fields[#fields + 1] = v end
    elseif routed then
      fields[#fields + 1] = id .. '|q'
      fields[#fields + 1] = wq
      redis.call('SADD', string.sub(items, 1, #items - 8) .. 'jq:queues', wq)
    end
    if wg ~= '' and sid == '' then  -- a session's work is not flow-controlled
      fields[#fields + 1] = id .. '|g'
      fields[#fields + 1] = wg
    end
    redis.call('HSET', items, unpack(fields))
    redis.call('SADD', K_witems, id)
    if take_now then
      redis.call('ZADD', leases, fmt(take_until), id)
      for _, v in ipairs({id, tok, iid, w[2], '', w[5], '1'}) do taken[#taken + 1] = v end
    else
      local where, q = place_item(items, ready, sready, delayed, id, vis, now)
      if q then
        -- another queue: never taken here (the committing worker may not serve it); a paused
        -- one's workers are not woken (its backlog must not make them fetch in vain)
        if redis.call('HEXISTS', K_pmeta, 'qp:' .. q) == 1 then
          -- paused: it stays queued, nobody is woken (resume_queue wakes its workers)
        elseif where == 'delayed' then
          arm_marker(wq_marker_of(items, q, where), vis, now)
        elseif where == 'plain' or where == 'group' or not wake_session_owner(iid, sid) then
          if where ~= 'held' then wake_now(wq_marker_of(items, q, where)) end
        end
      elseif where == 'plain' or where == 'group' or where == 'held' then
        take_left = 0  -- an item waits in the queue now: later ones must not pass it
        if where ~= 'held' then wake_now(K_wq_marker) end
      elseif where == 'delayed' then
        arm_marker(K_wq_marker, vis, now)
      elseif not wake_session_owner(iid, sid) then
        wake_now(K_wq_smarker)
      end
    end
  end
end
for _, id in ipairs(cancels) do
  delete_item(items, ready, sready, delayed, leases, K_witems, id)
end
-- 6. a terminal status purges every session of the instance --------------------------------
-- (more than PURGE_BATCH work items: a tombstone now, purge_work deletes them in batches)
local purge_pending = 0
if terminal then
  local sids = redis.call('SMEMBERS', K_sset)
  local work_left = {}  -- the instance's work items (not read for a big purge)
  if big_purge then
    set_tombstone(K_sess, iid, redis.call('INCR', K_seq))
    purge_pending = 1
  else
    work_left = redis.call('SMEMBERS', K_witems)
    for _, id in ipairs(work_left) do
      local sid = redis.call('HGET', items, id .. '|s')
      if sid and sid ~= '' then sids[#sids + 1] = sid end
    end
  end
  for _, sid in ipairs(sids) do purge(sid, purge_pending == 1) end
  -- the cancelled work a caller left out of a big terminal turn (none left: nothing to read)
  if purge_pending == 0 and #work_left > 0 then
    for _, id in ipairs(redis.call('SMEMBERS', K_witems)) do
      delete_item(items, ready, sready, delayed, leases, K_witems, id)
    end
  end
end
-- 7. messages (timers are messages to this instance with a visible time) -------------------
for _, m in ipairs(msgs) do
  local g = tonumber(m[1])
  if g < 0 then
    local entry = m[2] .. '\n' .. m[3]
    if not redis.call('ZSCORE', K_outbox, entry) then
      redis.call('ZADD', K_outbox, redis.call('INCR', K_seq), entry)
      redis.call('HSET', K_outbox_data, entry .. '|d', m[4], entry .. '|v', m[5],
                 entry .. '|c', m[6], entry .. '|n', m[7], entry .. '|r', m[8],
                 entry .. '|p', m[9], entry .. '|h', m[10], entry .. '|i', m[11])
    end
    if m[6] == '1' and m[9] == iid then redis.call('SADD', K_children, m[2]) end
  else
    local t_inst, t_done, t_mz, t_mh, t_children = K_inst, K_done, K_mz, K_mh, K_children
    if g > 0 then t_inst, t_done, t_mz, t_mh, t_children = group_keys(g) end
    local tiid = m[2]
    if m[6] == '1' and redis.call('EXISTS', t_inst) == 0 then
      create_record(t_inst, K_idx_created, K_idx_status.pending, t_children, tiid, m[7], m[8],
                    m[9], m[11], m[10], now)
      redis.call('HSET', t_inst, 'smid', m[3])
      redis.call('DEL', t_done)
    end
    if redis.call('EXISTS', t_inst) == 1 then
      local vis = now
      if m[5] ~= '' then vis = tonumber(m[5]) end
      local added = add_message(K_seq, t_mz, t_mh, t_done, m[3], m[4], vis)
      if added == 1 and g > 0 then
        requeue_instance(t_mz, K_oq_ready, K_oq_locks, K_oq_marker, tiid, now)
      end
    end
  end
end
-- 7b. key-value state, update replies, progress stream (docs/messaging.md) ------------------
local values = {}
for _ = 1, tonumber(take()) do values[#values + 1] = {take(), take(), take()} end
local replies = {}
for _ = 1, tonumber(take()) do replies[#replies + 1] = {take(), take()} end
local replies_ttl = take()
for _, v in ipairs(values) do
  if v[2] == '1' then redis.call('HSET', K_values, v[1], v[3])
  else redis.call('HDEL', K_values, v[1]) end
end
for _, r in ipairs(replies) do redis.call('HSET', K_replies, r[1], r[2]) end
if #replies > 0 then redis.call('PEXPIRE', K_replies, tonumber(replies_ttl)) end
local stream_items = {}
for _ = 1, tonumber(take()) do stream_items[#stream_items + 1] = take() end
local stream_maxlen, stream_ttl = take(), take()
for _, item in ipairs(stream_items) do
  redis.call('XADD', K_stream, 'MAXLEN', '~', stream_maxlen, '*', 'd', item)
end
if #stream_items > 0 then redis.call('PEXPIRE', K_stream, tonumber(stream_ttl)) end
-- 7c. tell the clients waiting on this instance: its end, or an update's reply (the channel is
-- named after idx_terminal; storage/jobs.py "completion channel") ----------------------------
if terminal or #replies > 0 then announce(K_idx_terminal, iid) end
-- 8. release the lock -----------------------------------------------------------------------
redis.call('HDEL', K_oq_lock, iid)
redis.call('ZREM', K_oq_locks, iid)
requeue_instance(K_mz, K_oq_ready, nil, K_oq_marker, iid, now)  -- unlocked just now
local claimed = {}
if A_claim_nonce ~= '' then
  local c_iid, c_token, c_deadline = claim_instance(K_seq, K_oq_ready, K_oq_locks, K_oq_lock,
    K_oq_marker, A_claim_nonce, tonumber(A_claim_lock_ms), now, nil, 0)
  if c_iid ~= nil then claimed = {c_iid, c_token, c_deadline} end
end
local due = 0
if #redis.call('ZRANGEBYSCORE', K_oq_ready, '-inf', fmt(now), 'LIMIT', 0, 1) > 0
    or #redis.call('ZRANGEBYSCORE', K_oq_locks, '-inf', fmt(now), 'LIMIT', 0, 1) > 0 then
  due = 1
end
return {0, due, take_until, taken, purge_pending, claimed}
