--[[
claim_schedule_start: claim an orchestration schedule's due tick(s) and create their instances,
atomically, so every tick starts one instance however many workers race for it (the claim is
claim_schedule's compare-and-set on the next due time, on the Redis clock). Each tick's instance
id is deterministic and in this partition; an instance that exists already is left alone, so a
re-run changes nothing. With overlap "skip", ticks are claimed but nothing is started while the
schedule's previous instance is still pending or running.

KEYS
  1 pmeta          partition metadata HASH
  2 seq            partition sequence counter
  3 sc_defs        HASH of schedules
  4 sc_due         ZSET schedule -> next due time
  5 oq_ready       ZSET instance -> earliest visible message
  6 oq_locks       ZSET instance -> lock deadline
  7 oq_marker      wake-up marker of the orchestration queue
  8 idx_created    ZSET instance -> created_at
  9 idx_pending    status index ZSET (pending)
  10 last          record of the previous instance the caller read (any record if none)
  11... four per tick: record i:<iid>, done d:<iid>, messages mz:<iid>, mh:<iid>
ARGV
  1 epoch
  2 name           the schedule
  3 expected_due   the due time the caller read
  4 next_due       the tick after the claimed ones
  5 overlap        "skip" / "allow"
  6 last_id        the previous instance id the caller read ("" for none)
  7 orchestration
  8 version
  9 input          the encoded input
  10 start         the encoded start message
  11... instance ids, one per claimed tick (all in this partition)
RETURNS
  {0, instances started, "overlap" if skipped for overlap else ""}
STATUS
  0 OK, 2 NAMESPACE_MISSING, 8 NOT_ELIGIBLE (not due, claimed already, paused, deleted, or
  the previous instance is not the one the caller read)
]]
-- @include common
-- @include schedules
if not epoch_ok(KEYS[1], ARGV[1]) then return {2} end
local now = server_now()
local defs = KEYS[3]
local name = ARGV[2]
if not tick_claimable(defs, name, ARGV[3], now) then return {8} end
local last = redis.call('HGET', defs, name .. '|j')
if (last or '') ~= ARGV[6] then return {8} end
advance_schedule(defs, KEYS[4], name, ARGV[4])
if ARGV[5] == 'skip' and last then
  local st = redis.call('HGET', KEYS[10], 'status')
  if st and not is_terminal(st) then  -- the last run is still going
    return {0, 0, 'overlap'}
  end
end
local made = 0
for at = 11, #ARGV do
  local iid = ARGV[at]
  local k = 11 + (at - 11) * 4
  local inst, done, mz, mh = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  if redis.call('EXISTS', inst) == 0 then
    create_record(inst, KEYS[8], KEYS[9], false, iid, ARGV[7], ARGV[8], '', ARGV[9], '1', now)
    redis.call('HSET', inst, 'smid', 'start:' .. iid)
    redis.call('DEL', done)
    add_message(KEYS[2], mz, mh, done, 'start:' .. iid, ARGV[10], now)
    requeue_instance(mz, KEYS[5], KEYS[6], KEYS[7], iid, now)
    made = made + 1
  end
  redis.call('HSET', defs, name .. '|j', iid)
end
return {0, made, ''}
