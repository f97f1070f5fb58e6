-- Shared helpers, inlined by the loader (scripts.py) where a script includes "common".
-- Builds no key names (every key reaches these helpers as an argument taken from KEYS), but for
-- wq_qkeys: the keys of a non-default activity queue, in the partition of the items HASH.

local unpack = unpack or table.unpack

local function server_now()
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  -- @test_clock  (a comment in production; the loader puts includes/test_clock.lua here only
  -- for a store built with test_clock=True: durable_redis.testing, docs/testing.md)
  return now
end

local function fmt(n)
  return string.format('%d', n)
end

-- Doorbell (Redis Cluster mode, docs/storage.md "Cluster"): when the partition metadata (KEYS[1]
-- of every script) has bell=1, arming a marker also SPUBLISHes on the marker key's own name
-- (same slot), payload "0" (work now) or the due time. Read once per call, only when arming.
local bell_on = nil
local function ring(marker, due)
  if bell_on == nil then bell_on = redis.call('HGET', KEYS[1], 'bell') == '1' end
  if bell_on then redis.call('SPUBLISH', marker, due) end
end

-- Tell waiting clients that something ended: a message on the pub/sub channel named after a key
-- of this partition (the jobs' jq:done, the instances' idx:terminal), sharded (SPUBLISH, same
-- slot) on a cluster. Nobody subscribed costs Redis one channel lookup.
local function announce(channel, message)
  if bell_on == nil then bell_on = redis.call('HGET', KEYS[1], 'bell') == '1' end
  redis.call(bell_on and 'SPUBLISH' or 'PUBLISH', channel, message)
end

-- Marker member "0": work now.
local function wake_now(marker)
  redis.call('ZADD', marker, 0, '0')
  ring(marker, '0')
end

-- Wake-up hint on a marker ZSET: member "0" = work now, member "1" = next due time (score).
local function arm_marker(marker, due, now)
  if due <= now then
    wake_now(marker)
  else
    local cur = redis.call('ZSCORE', marker, '1')
    -- a due time already past (nobody popped it: a cluster waiter reads the doorbell) is stale
    if (not cur) or due < tonumber(cur) or tonumber(cur) <= now then
      redis.call('ZADD', marker, fmt(due), '1')
      ring(marker, fmt(due))
    end
  end
end

-- ZADD with "keep the lower score" semantics (ZADD LT, spelled out for every server/fake).
local function zadd_min(key, score, member)
  local cur = redis.call('ZSCORE', key, member)
  if (not cur) or score < tonumber(cur) then
    redis.call('ZADD', key, fmt(score), member)
  end
end

-- Orchestration queue of one instance: mz (ZSET "<seq>|<mid>" -> visible_at), mh (HASH
-- "<mid>|d" data, "<mid>|a" attempts, "<mid>|t" lock token, "<mid>|m" ZSET member, "<mid>|c"
-- attempts handed back counted: abandon_orchestration).
-- Returns 1 if added, 0 if the message id is queued already or was consumed by the last turn.
local function add_message(seq, mz, mh, done, mid, data, vis)
  if redis.call('HEXISTS', mh, mid .. '|d') == 1 then return 0 end
  if redis.call('SISMEMBER', done, mid) == 1 then return 0 end
  local n = redis.call('INCR', seq)
  local member = string.format('%016d', n) .. '|' .. mid
  redis.call('ZADD', mz, fmt(vis), member)
  redis.call('HSET', mh, mid .. '|d', data, mid .. '|a', '0', mid .. '|m', member)
  return 1
end

-- After a message was added (or a lock released): make an unlocked instance fetchable by the
-- time of its earliest queued message, and arm the wake-up marker.
local function requeue_instance(mz, ready, locks, marker, iid, now)
  if locks and redis.call('ZSCORE', locks, iid) then return end  -- locks nil: known unlocked
  local first = redis.call('ZRANGE', mz, 0, 0, 'WITHSCORES')
  if #first == 0 then
    redis.call('ZREM', ready, iid)
    return
  end
  local due = tonumber(first[2])
  zadd_min(ready, due, iid)
  arm_marker(marker, due, now)
end

-- Claim (phase 1 of an orchestration fetch) of partition-level keys only: lock the instance
-- whose lock expired longest ago, else the one with the oldest visible message, passing over
-- the ids in `skip` (a set, or nil; `nskip` of them: version routing, docs/deploying.md).
-- Baton passing: more claimable now wakes the next idle fetcher, else the next due time is
-- armed. Returns iid, token, deadline, or nil (nothing claimable: the next due time armed).
-- Used by claim_orchestration and by commit_turn's claim of the next instance.
local function claim_instance(seq, ready, locks, lockh, marker, nonce, lock_ms, now, skip, nskip)
  local function first_of(key, max)
    if skip == nil then
      return redis.call('ZRANGEBYSCORE', key, '-inf', max, 'LIMIT', 0, 1)[1]
    end
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', max, 'LIMIT', 0, nskip + 1)) do
      if not skip[id] then return id end
    end
    return nil
  end
  local function next_due()
    local first = redis.call('ZRANGE', ready, 0, nskip, 'WITHSCORES')
    for i = 1, #first, 2 do
      if skip == nil or not skip[first[i]] then return tonumber(first[i + 1]) end
    end
    return nil
  end
  local iid = first_of(locks, fmt(now))
  if iid == nil then
    iid = first_of(ready, fmt(now))
    if iid ~= nil then redis.call('ZREM', ready, iid) end
  end
  if iid == nil then
    local due = next_due()
    if due ~= nil then arm_marker(marker, due, now) end
    return nil
  end
  local token = redis.call('INCR', seq) .. ':' .. nonce
  local deadline = now + lock_ms
  redis.call('HSET', lockh, iid, token)
  redis.call('ZADD', locks, fmt(deadline), iid)
  local due = next_due()
  if first_of(locks, fmt(now)) ~= nil then
    wake_now(marker)
  elseif due ~= nil then
    arm_marker(marker, due, now)
  end
  return iid, token, deadline
end

-- Tag the instance's visible messages (at most max_messages) with a lock token: attempt + 1
-- each, once per token. Returns {mid, data, attempt, ...} (empty: nothing visible).
local function tag_messages(mz, mh, token, max_messages, now)
  local visible = redis.call('ZRANGEBYSCORE', mz, '-inf', fmt(now), 'LIMIT', 0, max_messages)
  local msgs = {}
  for _, member in ipairs(visible) do
    local mid = string.sub(member, 18)
    local f = redis.call('HMGET', mh, mid .. '|t', mid .. '|d', mid .. '|a')
    local attempt = f[3]
    if f[1] ~= token then
      redis.call('HSET', mh, mid .. '|t', token)
      attempt = redis.call('HINCRBY', mh, mid .. '|a', 1)
    end
    msgs[#msgs + 1] = mid
    msgs[#msgs + 1] = f[2]
    msgs[#msgs + 1] = tostring(attempt)
  end
  return msgs
end

-- The lease part of a lock reply: {deadline, {record field, value, ...}, msgs, read, {event...}}
-- with the history of the current execution when it is exec_guess's (hist is that key).
local function lock_reply(inst, hist, exec_guess, deadline, msgs)
  local events = {}
  local read = 0
  if redis.call('HGET', inst, 'exec') == exec_guess then
    read = 1
    events = redis.call('LRANGE', hist, 0, -1)
  end
  return {deadline, redis.call('HGETALL', inst), msgs, read, events}
end

local function delete_message(mz, mh, mid, member)  -- member: its ZSET member, when known
  member = member or redis.call('HGET', mh, mid .. '|m')
  if member then redis.call('ZREM', mz, member) end
  redis.call('HDEL', mh, mid .. '|d', mid .. '|a', mid .. '|t', mid .. '|m', mid .. '|c')
end

-- The instance statuses, in the order of the status index keys wherever a script takes them:
-- the definition order of durable_redis.contract.InstanceStatus (tests/storage/test_packing.py
-- pins the two), and the terminal ones.
local STATUSES = {'pending', 'running', 'completed', 'failed', 'cancelled', 'continued_as_new'}
local TERMINAL = {completed = true, failed = true, cancelled = true}

-- The status index keys KEYS[first .. first + 5], by status name.
local function status_keys(first)
  local keys = {}
  for i, status in ipairs(STATUSES) do keys[status] = KEYS[first + i - 1] end
  return keys
end

local function is_terminal(status)
  return TERMINAL[status] == true
end

-- The namespace guard a script opens with (`if not epoch_ok(K_pmeta, A_epoch) then return {2}
-- end`): the partition metadata's epoch is the caller's (else the namespace was re-created).
local function epoch_ok(pmeta, epoch)
  return redis.call('HGET', pmeta, 'epoch') == epoch
end

-- New instance record, status pending, indexed by creation time.
local function create_record(inst, idx_created, pending_idx, parent_children, iid, name,
                             version, parent, input, has_input, now)
  redis.call('HSET', inst, 'name', name, 'version', version, 'status', 'pending', 'exec', '0',
             'created', fmt(now), 'updated', fmt(now))
  if parent ~= '' then
    redis.call('HSET', inst, 'parent', parent)
    -- false when the parent lives in another partition (its creator links the child)
    if parent_children then redis.call('SADD', parent_children, iid) end
  end
  if has_input == '1' then redis.call('HSET', inst, 'input', input) end
  redis.call('ZADD', idx_created, fmt(now), iid)
  redis.call('ZADD', pending_idx, fmt(now), iid)
end

-- Flow control by key (docs/routing.md), for jobs (the `jq:jobs` HASH) and for activity work
-- items (the `wq:items` HASH) alike; `h` below is either HASH. A keyed job or item has field
-- g = "<limit> <rate count> <rate per ms> <burst> <key>" ('-' = none). Its ready members wait
-- in the group ZSET jq:g:<queue>:<key> / wq:g:<queue>:<key> (score = the ready score); the
-- queue's ready ZSET holds one member "\n<key>" (no id has a newline) per group that has ready
-- members and a free slot, scored by its head's priority and then a round-robin sequence, so a
-- fetch takes groups in turn. A group at its concurrency limit is in neither set until a slot
-- frees; one over its rate waits in the delayed ZSET (member flow_dmember, score = when it may
-- run). HASH jq:groups / wq:groups, fields "<queue>:<key>|c" the last g written, "|n" running,
-- "|t" the GCRA theoretical arrival time, "|d" the pending debounced job, "|h" the throttle
-- window "<job id> <end ms>" (the last two: jobs only).
local FLOW_SHIFT = 68719476736  -- 2^36: ready score = -priority * 2^36 + FIFO seq

local function flow_parse(g)
  local c, n, per, burst, key = string.match(g, '^(%S+) (%S+) (%S+) (%S+) (.*)$')
  return key, tonumber(c), tonumber(n), tonumber(per), tonumber(burst) or 1
end

-- (partition key prefix, "jq:" or "wq:") of the jobs or work items HASH `h`.
local function flow_space(h)
  if string.sub(h, -8) == 'wq:items' then return string.sub(h, 1, #h - 8), 'wq:' end
  return string.sub(h, 1, #h - 7), 'jq:'
end

-- (group ZSET, groups HASH, field prefix) of key `key` of queue `q`.
local function flow_keys(h, q, key)
  local base, space = flow_space(h)
  return base .. space .. 'g:' .. q .. ':' .. key, base .. space .. 'groups', q .. ':' .. key
end

-- A group's member in the delayed ZSET: "\n<key>" for jobs (one delayed ZSET per queue),
-- "\n<queue>\n<key>" for work items (one delayed ZSET for every queue of the partition).
local function flow_dmember(h, q, key)
  if select(2, flow_space(h)) == 'wq:' then return '\n' .. q .. '\n' .. key end
  return '\n' .. key
end

-- Put a group in its queue's round robin if it has ready members and a free slot and is not
-- in the ready or delayed set already. True when it is in the ready set now.
local function flow_activate(h, ready, delayed, q, key)
  local member = '\n' .. key
  local gz, groups, gf = flow_keys(h, q, key)
  local cur = redis.call('ZSCORE', ready, member)
  if cur then
    -- a member of a higher priority than the entry's came: the entry moves up to its level
    local top = redis.call('ZRANGE', gz, 0, 0, 'WITHSCORES')
    if #top > 0 then
      local level = math.floor(tonumber(top[2]) / FLOW_SHIFT) * FLOW_SHIFT
      local was = math.floor(tonumber(cur) / FLOW_SHIFT) * FLOW_SHIFT
      if level < was then redis.call('ZADD', ready, fmt(level + (tonumber(cur) - was)), member) end
    end
    return true
  end
  if redis.call('ZSCORE', delayed, flow_dmember(h, q, key)) then return false end
  local head = redis.call('ZRANGE', gz, 0, 0, 'WITHSCORES')
  if #head == 0 then return false end
  local f = redis.call('HMGET', groups, gf .. '|c', gf .. '|n')
  local limit = f[1] and select(2, flow_parse(f[1]))
  if limit and tonumber(f[2] or '0') >= limit then return false end
  local seq = redis.call('INCR', flow_space(h) .. 'seq')
  local score = math.floor(tonumber(head[2]) / FLOW_SHIFT) * FLOW_SHIFT + seq
  redis.call('ZADD', ready, fmt(score), member)
  return true
end

-- Queue a ready member `id` (score `score`, flow field `g`) of queue `q` in its group and the
-- group in the round robin. True when the group is in the ready set now.
local function flow_place(h, ready, delayed, q, id, score, g)
  local key = flow_parse(g)
  local gz, groups, gf = flow_keys(h, q, key)
  redis.call('ZADD', gz, score, id)
  redis.call('HSET', groups, gf .. '|c', g)
  return flow_activate(h, ready, delayed, q, key)
end

-- A group with nothing queued nor running: nothing kept for it but a GCRA time still ahead, a
-- debounced job still pending, a throttle window still open.
local function flow_idle(h, groups, gf, now)
  local f = redis.call('HMGET', groups, gf .. '|t', gf .. '|d', gf .. '|h')
  local drop = {gf .. '|n'}
  if tonumber(f[1] or '0') <= now then
    drop[#drop + 1] = gf .. '|t'
    drop[#drop + 1] = gf .. '|c'
  end
  if f[2] and redis.call('HGET', h, f[2] .. '|s') ~= 'queued' then
    drop[#drop + 1] = gf .. '|d'
  end
  if f[3] and tonumber(string.match(f[3], ' (%d+)$')) <= now then
    drop[#drop + 1] = gf .. '|h'
  end
  redis.call('HDEL', groups, unpack(drop))
end

-- A keyed member leaves its lease (ack, cancel, expiry, hand-back): its group's slot frees
-- (`count` at once: default 1). True when the group is in the ready set now (the caller
-- wakes the queue's marker).
local function flow_release(h, ready, delayed, q, id, now, known_g, count)
  local g = known_g or redis.call('HGET', h, id .. '|g')
  if not g then return false end
  local key = flow_parse(g)
  local gz, groups, gf = flow_keys(h, q, key)
  local n = redis.call('HINCRBY', groups, gf .. '|n', -(count or 1))
  if n <= 0 then
    if redis.call('ZCARD', gz) == 0 then
      flow_idle(h, groups, gf, now)
      return false
    end
    redis.call('HDEL', groups, gf .. '|n')
  end
  return flow_activate(h, ready, delayed, q, key)
end

-- An unleased keyed member leaves its group (deleted, cancelled); a group left empty with
-- nothing running leaves the round robin and its state.
local function flow_unqueue(h, ready, delayed, q, id, g, now)
  local key = flow_parse(g)
  local gz, groups, gf = flow_keys(h, q, key)
  redis.call('ZREM', gz, id)
  if redis.call('ZCARD', gz) > 0 then return end
  redis.call('ZREM', ready, '\n' .. key)
  redis.call('ZREM', delayed, flow_dmember(h, q, key))
  if tonumber(redis.call('HGET', groups, gf .. '|n') or '0') <= 0 then
    flow_idle(h, groups, gf, now)
  end
end

-- A fetch's turn of group `key` of queue `q` (its ready and delayed ZSETs given): up to
-- `room` members (its concurrency limit and rate allowing), each leased by `lease(id)`; then
-- the group goes back in the round robin (behind the others), waits for its rate in the
-- delayed set, or leaves both until a slot frees. Returns how many it leased.
local function flow_take(h, ready, delayed, q, key, room, now, lease)
  local gz, groups, gf = flow_keys(h, q, key)
  local f = redis.call('HMGET', groups, gf .. '|c', gf .. '|n', gf .. '|t')
  if not f[1] then return 0 end
  local _, climit, count, per, burst = flow_parse(f[1])
  local running = tonumber(f[2] or '0')
  local tat = tonumber(f[3] or '0')
  local rated = count ~= nil and per ~= nil
  local step, tau = 0, 0
  if rated then
    step = per / count
    tau = (burst - 1) * step
  end
  local later = nil
  local n = 0
  if climit then room = math.min(room, climit - running) end
  if not rated and room > 0 then  -- one pop for the group's whole turn
    local p = redis.call('ZPOPMIN', gz, room)
    for i = 1, #p, 2 do
      if lease(p[i]) ~= false then n = n + 1 end
    end
  end
  while rated and n < room do
    local t = math.max(tat, now)
    if t - now > tau then
      later = math.ceil(t - tau)
      break
    end
    local p = redis.call('ZPOPMIN', gz)
    if #p == 0 then break end
    if lease(p[1]) ~= false then
      tat = t + step
      n = n + 1
    end
  end
  running = running + n
  if n > 0 and rated then
    redis.call('HSET', groups, gf .. '|n', fmt(running), gf .. '|t', string.format('%.3f', tat))
  elseif n > 0 then
    redis.call('HSET', groups, gf .. '|n', fmt(running))
  end
  if climit and running >= climit then return n end  -- out until a slot frees
  local head = redis.call('ZRANGE', gz, 0, 0, 'WITHSCORES')
  if #head == 0 then return n end  -- drained (a new member puts it back)
  if later ~= nil then
    redis.call('ZADD', delayed, fmt(later), flow_dmember(h, q, key))
  else  -- behind the others of its priority (it was just taken from the ready set)
    local seq = redis.call('INCR', flow_space(h) .. 'seq')
    local s = math.floor(tonumber(head[2]) / FLOW_SHIFT) * FLOW_SHIFT + seq
    redis.call('ZADD', ready, fmt(s), '\n' .. key)
  end
  return n
end

-- Activity work items: one partition HASH `items` with "<id>|<f>" fields:
-- d data, i instance, k activity key, s session ("" none), a attempts, n FIFO seq,
-- t lease token, w worker holding the lease.
-- q its queue (absent = "default"; docs/routing.md). The "|n" score folds in the priority.
-- g its flow key and limits (absent = none; the flow control section above): a keyed plain
-- item waits in its group's ZSET, and holds a slot of the group while leased.
-- The ready ZSETs and markers of activity queue `q`, named from the `items` HASH's own name
-- like job_qkeys (same hash tag; storage/keys.py PartitionKeys.wq_queue_keys names them alike):
-- "default" keeps wq:ready / wq:sready / wq:marker / wq:smarker.
local function wq_qkeys(items, q)
  local base = string.sub(items, 1, #items - 8)  -- strip 'wq:items'
  if not q or q == '' or q == 'default' then  -- HGET of a missing field gives false
    return base .. 'wq:ready', base .. 'wq:sready', base .. 'wq:marker', base .. 'wq:smarker'
  end
  local p = base .. 'wq:q:' .. q .. ':'
  return p .. 'ready', p .. 'sready', p .. 'marker', p .. 'smarker'
end

-- drop_item leaves the id in the instance's SET of work item ids (witems; a caller that does
-- not declare that key: purge_work removes such ids later).
local function drop_item(items, ready, sready, delayed, leases, id)
  local f = redis.call('HMGET', items, id .. '|q', id .. '|g')
  local q, g = f[1], f[2]
  if q then ready, sready = wq_qkeys(items, q) end
  if g then  -- leased: its slot frees; else it leaves its group
    if redis.call('HEXISTS', items, id .. '|t') == 1 then
      if flow_release(items, ready, delayed, q or 'default', id, server_now(), g) then
        wake_now((select(3, wq_qkeys(items, q))))
      end
    else
      flow_unqueue(items, ready, delayed, q or 'default', id, g, server_now())
    end
  end
  redis.call('ZREM', ready, id)
  redis.call('ZREM', sready, id)
  redis.call('ZREM', delayed, id)
  redis.call('ZREM', leases, id)
  redis.call('HDEL', items, id .. '|d', id .. '|i', id .. '|k', id .. '|s', id .. '|a',
             id .. '|n', id .. '|t', id .. '|w', id .. '|q', id .. '|g')
end

-- A leased item leaves its lease (expiry, hand-back): its token and worker are cleared and a
-- keyed item's slot frees (its group back in the round robin; the caller places the item).
local function unlease_item(items, ready, delayed, id, now)
  redis.call('HDEL', items, id .. '|t', id .. '|w')
  local g = redis.call('HGET', items, id .. '|g')
  if g then
    local q = redis.call('HGET', items, id .. '|q')
    if q then ready = wq_qkeys(items, q) end
    flow_release(items, ready, delayed, q or 'default', id, now, g)
  end
end

local function delete_item(items, ready, sready, delayed, leases, witems, id)
  drop_item(items, ready, sready, delayed, leases, id)
  redis.call('SREM', witems, id)
end

-- Bounded purge (docs/storage.md "Big purge"): a terminal instance with more than PURGE_BATCH
-- work items is not purged in its commit. The commit leaves a tombstone in the session HASH,
-- field "<iid>\n|p" = the partition seq at the purge (no session id is empty, so no session
-- field is spelled so): every item of the instance created before (seq in |n) is dead.
-- Fetches drop dead items they meet, acks and renewals of them are refused (LEASE_LOST), and
-- purge_work deletes them PURGE_BATCH at a time ("<iid>\n|c" its SSCAN cursor). Field "\n|n"
-- counts the tombstones, so a fetch checks items only while there is one.
local PURGE_BATCH = 1000
local PURGE_DROPS = 50  -- dead items one fetch deletes at most (then it returns)

local function set_tombstone(sess, iid, seq)
  if redis.call('HSET', sess, iid .. '\n|p', fmt(seq)) == 1 then
    redis.call('HINCRBY', sess, '\n|n', 1)
  end
  redis.call('HDEL', sess, iid .. '\n|c')
end

local function clear_tombstone(sess, iid)
  redis.call('HDEL', sess, iid .. '\n|c')
  if redis.call('HDEL', sess, iid .. '\n|p') == 1
     and redis.call('HINCRBY', sess, '\n|n', -1) <= 0 then
    redis.call('HDEL', sess, '\n|n')
  end
end

local function purging(sess)
  return redis.call('HEXISTS', sess, '\n|n') == 1
end

-- A work item's creation seq: its "|n" is the seq minus priority * 2^36 (commit_turn).
local function item_seq(n)
  return tonumber(n or '0') % 68719476736
end

-- Is work item `id` dead under its instance's tombstone? (false for an item that is gone)
local function item_dead(items, sess, id)
  local f = redis.call('HMGET', items, id .. '|i', id .. '|n')
  if not f[1] then return false end
  local tomb = redis.call('HGET', sess, f[1] .. '\n|p')
  return tomb ~= false and item_seq(f[2]) < tonumber(tomb)
end

-- Put an (unleased) item in the queue it belongs to: delayed if not yet visible, else the
-- plain or the session ready ZSET of its queue by its score (a keyed item: its group). Returns
-- 'plain', 'session', 'delayed', 'group' (keyed, its group ready) or 'held' (keyed, its group
-- at its limit or waiting for its rate: nobody to wake), and the item's queue (nil =
-- "default").
local function place_item(items, ready, sready, delayed, id, vis, now)
  local f = redis.call('HMGET', items, id .. '|q', id .. '|n', id .. '|s', id .. '|g')
  local q, n, sid, g = f[1], f[2], f[3], f[4]
  if vis > now then
    redis.call('ZADD', delayed, fmt(vis), id)
    return 'delayed', q
  end
  if q then ready, sready = wq_qkeys(items, q) end
  if sid and sid ~= '' then
    redis.call('ZADD', sready, n, id)
    return 'session', q
  end
  if g then  -- in its group; 'group' when the group is in the round robin, else 'held'
    if flow_place(items, ready, delayed, q or 'default', id, n, g) then return 'group', q end
    return 'held', q
  end
  redis.call('ZADD', ready, n, id)
  return 'plain', q
end

-- The wake-up marker of an item placed by place_item in queue `q` ('plain' / 'delayed': the
-- queue's marker, 'session': its session marker).
local function wq_marker_of(items, q, where)
  local _, _, marker, smarker = wq_qkeys(items, q)  -- 'group' / 'held': the queue's marker
  if where == 'session' then return smarker end
  return marker
end

-- Purge one session of an instance: delete its queued and in-flight work items (in-flight
-- leases are thereby stolen) and remove the session record. Returns items deleted.
-- records_only: remove the record only (the instance's tombstone covers its items).
local function purge_session(items, ready, sready, delayed, leases, witems, sess, sset, iid, sid,
                             records_only)
  local deleted = 0
  local ids = records_only and {} or redis.call('SMEMBERS', witems)
  for _, id in ipairs(ids) do
    if redis.call('HGET', items, id .. '|s') == sid then
      delete_item(items, ready, sready, delayed, leases, witems, id)
      deleted = deleted + 1
    end
  end
  local sk = iid .. '\n' .. sid
  redis.call('HDEL', sess, sk .. '|o', sk .. '|u', sk .. '|l')
  redis.call('SREM', sset, sid)
  return deleted
end
