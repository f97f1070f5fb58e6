--[[
claim_orchestration: phase 1 of an orchestration fetch. Locks the instance whose lock expired
longest ago, else the one with the oldest visible message, using partition-level keys only.

KEYS
  1 pmeta          partition metadata HASH
  2 seq            partition sequence counter (lock epochs)
  3 oq_ready       ZSET instance -> earliest visible message (unlocked instances only)
  4 oq_locks       ZSET instance -> lock deadline
  5 oq_lock        HASH instance -> lock token
  6 oq_marker      wake-up marker ZSET
ARGV
  1 epoch
  2 nonce          random; the token is "<seq>:<nonce>"
  3 lock_ms
  4... skip        optional: instance ids this worker passes over (it lacks their orchestration
                   version: docs/deploying.md, "Version routing"); they stay queued for others,
                   and no marker is armed for them (a worker that skips them would spin)
RETURNS
  {0} nothing eligible
  {0, iid, token, lease_until_ms} locked; phase 2 (lock_messages) tags the messages
STATUS
  0 OK, 2 NAMESPACE_MISSING
]]
-- @include common
-- KEYS and ARGV, each named once (the header's names) ---------------------------------------
local K_pmeta = KEYS[1]      -- partition metadata HASH
local K_seq = KEYS[2]        -- partition sequence counter (lock epochs)
local K_oq_ready = KEYS[3]   -- ZSET instance -> earliest visible message (unlocked instances only)
local K_oq_locks = KEYS[4]   -- ZSET instance -> lock deadline
local K_oq_lock = KEYS[5]    -- HASH instance -> lock token
local K_oq_marker = KEYS[6]  -- wake-up marker ZSET
local A_epoch = ARGV[1]
local A_nonce = ARGV[2]      -- random; the token is "<seq>:<nonce>"
local A_lock_ms = ARGV[3]
if not epoch_ok(K_pmeta, A_epoch) then return {2} end
local now = server_now()
-- ARGV[4]...: the instance ids this worker passes over (version routing)
local skip, nskip = nil, 0
if #ARGV > 3 then
  skip = {}
  for pos = 4, #ARGV do skip[ARGV[pos]] = true end
  nskip = #ARGV - 3
end
local iid, token, deadline = claim_instance(K_seq, K_oq_ready, K_oq_locks, K_oq_lock,
  K_oq_marker, A_nonce, tonumber(A_lock_ms), now, skip, nskip)
if iid == nil then return {0} end
return {0, iid, token, deadline}
