--[[
renew_jobs: extend the leases of jobs held with live tokens, and store their progress.

KEYS
  1 pmeta          partition metadata HASH
  2 jq_jobs        HASH of jobs
  3 jq_leases      ZSET job -> lease deadline
ARGV
  1 epoch
  2 lock_ms
  3... groups of 3: job_id, token, progress ("" = unchanged)
RETURNS
  {0, lease_until_ms, {lost job ids...}}
STATUS
  0 OK, 2 NAMESPACE_MISSING
]]
-- @include common
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {2} end
local now = server_now()
local jobs, leases = KEYS[2], KEYS[3]
local deadline = now + tonumber(ARGV[2])
local lost = {}
for at = 3, #ARGV, 3 do
  local id = ARGV[at]
  if redis.call('HGET', jobs, id .. '|t') == ARGV[at + 1]
     and tonumber(redis.call('ZSCORE', leases, id) or '0') > now then
    redis.call('ZADD', leases, fmt(deadline), id)
    if ARGV[at + 2] ~= '' then redis.call('HSET', jobs, id .. '|p', ARGV[at + 2]) end
  else
    lost[#lost + 1] = id
  end
end
return {0, deadline, lost}
