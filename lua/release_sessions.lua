--[[
release_sessions: make sessions this worker owns claimable at once (others: no-op), and wake
the session markers of the queues it serves (a session is only ever claimed through one of
them, so its waiting work is in one of those).

KEYS
  1 pmeta          partition metadata HASH
  2 sess           HASH of sessions
  3 wq_smarker     session work wake-up marker (queue "default")
  4 wq_items       HASH of work items (names the other queues' markers, wq_qkeys)
ARGV
  1 epoch
  2 worker_id
  3 queues         the queues served, comma-separated ("" = "default")
  4... session keys "<iid>\n<sid>"
RETURNS
  {0, released count}
STATUS
  0 OK, 2 NAMESPACE_MISSING
]]
-- @include common
if not epoch_ok(KEYS[1], ARGV[1]) then return {2} end
local released = 0
for k = 4, #ARGV do
  local sk = ARGV[k]
  if redis.call('HGET', KEYS[2], sk .. '|o') == ARGV[2] then
    redis.call('HSET', KEYS[2], sk .. '|o', '', sk .. '|u', '0')
    released = released + 1
  end
end
if released > 0 then
  for q in string.gmatch(ARGV[3] ~= '' and ARGV[3] or 'default', '[^,]+') do
    if q == 'default' then
      wake_now(KEYS[3])
    else
      wake_now(wq_marker_of(KEYS[4], q, 'session'))
    end
  end
end
return {0, released}
