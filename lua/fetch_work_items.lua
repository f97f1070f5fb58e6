--[[
fetch_work_items: lease up to `limit` activity work items of the queues served (ARGV[10], in
that order; a paused queue is skipped), by score (priority, then FIFO) among the items of each
queue this worker may take. Promotes due delayed items and reclaims expired leases first (at
most 100 each, of any queue; each goes back to its own queue, whose marker is woken).
A keyed item (flow control, docs/routing.md) waits in its group: the group's entry in the
ready ZSET takes its turn (flow_take) while the key's concurrency and rate allow; a slot is held
by the lease and frees at its ack, hand-back, cancel or expiry.
Work items dead under their instance's purge tombstone (common.lua, "Bounded purge") are
dropped, never leased. Plain mode (session_lock_ms "") takes non-session work only. Session mode
also takes the work of sessions this worker owns (refreshing their lease) and, if claim_new is "1", the work of
unowned or expired sessions, which it claims. Work of a session another live worker owns is
skipped and never blocks the items behind it (within a window of `window` session items).
A worker at its session limit (claim_new "0") names its sessions in ARGV[11...]: each one
no longer its own (closed by its orchestration, purged with it, or taken over) frees one claim of
a new session in this very call, so a freed slot is reused at once, not at the next renewal.

KEYS
  1 pmeta          partition metadata HASH
  2 seq            partition sequence counter (lease epochs)
  3 wq_items       HASH of work items
  4 wq_ready       ZSET plain work, score (queue "default"; other queues' keys are named by
  5 wq_sready      ZSET session work, score     wq_qkeys in the same partition)
  6 wq_delayed     ZSET work -> visible_at
  7 wq_leases      ZSET work -> lease deadline
  8 wq_marker      plain work wake-up marker
  9 wq_smarker     session work wake-up marker
  10 sess          HASH of sessions
ARGV
  1 epoch
  2 worker_id
  3 nonce
  4 limit
  5 lock_ms
  6 session_lock_ms   "" = plain work only
  7 claim_new         "1" / "0"
  8 window            session items examined per call
  9 claim_budget      new sessions it may claim besides (claim_new "0"): slots found free
                      by the checks in other partitions of the same fetch
  10 queues         the queues served, comma-separated ("" = "default")
  11... session keys "<iid>\n<sid>" to check (claim_new "0"; may be none)
RETURNS
  {0, lease_until_ms, {item_id, token, iid, activity_key, session_id, data, attempt, ...},
   {1-based positions among ARGV[11...] of the checked sessions CLOSED (gone or unowned)},
   {positions of those TAKEN (another owner)}, new sessions claimed}
STATUS
  0 OK, 2 NAMESPACE_MISSING
]]
-- @include common
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local now = server_now()
local items, delayed, leases = KEYS[3], KEYS[6], KEYS[7]
local worker = ARGV[2]
local limit = tonumber(ARGV[4])
local deadline = now + tonumber(ARGV[5])
local session_mode = ARGV[6] ~= ''
local claim_new = ARGV[7] == '1'
local function paused(q) return redis.call('HEXISTS', KEYS[1], 'qp:' .. q) == 1 end
-- the queues served, not paused: {name, ready, sready, marker, smarker}
local served = {}
for q in string.gmatch(ARGV[10] ~= '' and ARGV[10] or 'default', '[^,]+') do
  if not paused(q) then
    local r, sr, m, sm = wq_qkeys(items, q)
    if q == 'default' then r, sr, m, sm = KEYS[4], KEYS[5], KEYS[8], KEYS[9] end
    served[#served + 1] = {q, r, sr, m, sm}
  end
end
-- checked sessions: each one gone frees a claim -------------------------------------------------
local gone_closed, gone_taken = {}, {}
local budget = tonumber(ARGV[9] or '0') or 0
for k = 11, #ARGV do
  local owner = redis.call('HGET', KEYS[10], ARGV[k] .. '|o')
  if owner ~= worker then
    if owner and owner ~= '' then
      gone_taken[#gone_taken + 1] = k - 10
    else
      gone_closed[#gone_closed + 1] = k - 10
    end
    budget = budget + 1
  end
end
local claimed = 0
-- maintenance: due delayed work, expired leases (each back to its queue, its marker woken) ----
local woken = {}
local function wake(q, where)
  local marker = wq_marker_of(items, q, where)
  if not woken[marker] and not paused(q or 'default') then
    woken[marker] = true
    wake_now(marker)
  end
end
local function replace(id)
  local where, q = place_item(items, KEYS[4], KEYS[5], delayed, id, now, now)
  if where ~= 'held' then wake(q, where) end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', fmt(now), 'LIMIT', 0, 100)) do
  redis.call('ZREM', delayed, id)
  local gq, gkey = string.match(id, '^\n([^\n]*)\n(.*)$')
  if gq then  -- a rate-limited group whose time came
    if flow_activate(items, (wq_qkeys(items, gq)), delayed, gq, gkey) then wake(gq, 'plain') end
  else
    replace(id)
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', fmt(now), 'LIMIT', 0, 100)) do
  redis.call('ZREM', leases, id)
  unlease_item(items, KEYS[4], delayed, id, now)
  replace(id)
end
local out = {}
local taken = 0
local decision = {}
local function lease(id, zset)
  redis.call('ZREM', zset, id)
  local f = redis.call('HMGET', items, id .. '|i', id .. '|k', id .. '|s', id .. '|d')
  if not f[4] then return false end  -- a stale id whose item is gone (an older worker's delete)
  local token = redis.call('INCR', KEYS[2]) .. ':' .. ARGV[3]
  local attempt = redis.call('HINCRBY', items, id .. '|a', 1)
  redis.call('HSET', items, id .. '|t', token, id .. '|w', worker)
  redis.call('ZADD', leases, fmt(deadline), id)
  out[#out + 1] = id
  out[#out + 1] = token
  out[#out + 1] = f[1]
  out[#out + 1] = f[2]
  out[#out + 1] = f[3]
  out[#out + 1] = f[4]
  out[#out + 1] = tostring(attempt)
  taken = taken + 1
  return true
end
local function may_take_session(id)
  local f = redis.call('HMGET', items, id .. '|i', id .. '|s')
  if not f[1] or not f[2] then return true end  -- a stale id: lease() drops it
  local sk = f[1] .. '\n' .. f[2]
  local d = decision[sk]
  if d == nil then
    local owner = redis.call('HGET', KEYS[10], sk .. '|o')
    local until_ms = tonumber(redis.call('HGET', KEYS[10], sk .. '|u') or '0')
    local live = owner and owner ~= '' and until_ms > now
    if live and owner ~= worker then
      d = false
    elseif live or owner == worker or claim_new or claimed < budget then
      if not (live or owner == worker or claim_new) then claimed = claimed + 1 end
      local new_until = now + tonumber(ARGV[6])
      if live and until_ms > new_until then new_until = until_ms end
      redis.call('HSET', KEYS[10], sk .. '|o', worker, sk .. '|u', fmt(new_until),
                 sk .. '|l', fmt(now))
      d = true
    else
      d = false
    end
    decision[sk] = d
  end
  return d
end
-- work of an instance purged under a tombstone is dropped, never leased; at PURGE_DROPS dropped
-- the call ends (no wake-up for more: purge_work deletes the rest)
local check_dead = purging(KEYS[10])
local dropped = 0
local function dead(id)
  if check_dead and item_dead(items, KEYS[10], id) then
    drop_item(items, KEYS[4], KEYS[5], delayed, leases, id)
    dropped = dropped + 1
    return true
  end
  return false
end
-- each queue in turn: candidates by score (priority, then FIFO), plain and session merged ----
-- a keyed group's entry "\n<key>" among the plain work takes its turn (flow_take: one item,
-- or, when the range emptied the ready set, a share of what is left of the batch; at most a
-- few rounds, so groups alone still fill a batch)
local function round(q)
  local ready, sready = q[2], q[3]
  local want = limit - taken
  local plain = redis.call('ZRANGE', ready, 0, want - 1, 'WITHSCORES')
  local sess_c = {}
  if session_mode then
    sess_c = redis.call('ZRANGE', sready, 0, tonumber(ARGV[8]) - 1, 'WITHSCORES')
  end
  local share, n_groups = 1, 0
  for k = 1, #plain, 2 do
    if string.byte(plain[k], 1) == 10 then n_groups = n_groups + 1 end
  end
  if n_groups > 0 and #plain / 2 < want then share = math.ceil(want / n_groups) end
  local i, j = 1, 1
  while taken < limit and (i <= #plain or j <= #sess_c) and dropped < PURGE_DROPS do
    local use_plain
    if i > #plain then
      use_plain = false
    elseif j > #sess_c then
      use_plain = true
    else
      use_plain = tonumber(plain[i + 1]) <= tonumber(sess_c[j + 1])
    end
    if use_plain and string.byte(plain[i], 1) == 10 then
      redis.call('ZREM', ready, plain[i])
      flow_take(items, ready, delayed, q[1], string.sub(plain[i], 2),
                math.min(share, limit - taken), now,
                function(id) return not dead(id) and lease(id, ready) end)
      i = i + 2
    elseif use_plain then
      if not dead(plain[i]) then lease(plain[i], ready) end
      i = i + 2
    else
      if not dead(sess_c[j]) and may_take_session(sess_c[j]) then lease(sess_c[j], sready) end
      j = j + 2
    end
  end
  return n_groups
end
for _, q in ipairs(served) do
  if taken >= limit then break end
  for _ = 1, 4 do
    local before = taken
    if round(q) == 0 or taken >= limit or taken == before then break end
  end
end
-- baton passing -------------------------------------------------------------------------------
for _, q in ipairs(served) do
  if redis.call('ZCARD', q[2]) > 0 then wake_now(q[4]) end
  if limit > 0 and taken >= limit and redis.call('ZCARD', q[3]) > 0 then wake_now(q[5]) end
end
local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if #first > 0 then
  local fq = string.match(first[1], '^\n([^\n]*)\n') or redis.call('HGET', items, first[1] .. '|q')
  arm_marker(wq_marker_of(items, fq, 'delayed'), tonumber(first[2]), now)
end
return {0, deadline, out, gone_closed, gone_taken, claimed}
