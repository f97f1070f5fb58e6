  -- Test environments only (docs/testing.md "The clock"): the virtual clock of a namespace
  -- that durable_redis.testing created (pmeta test_clock=1) runs clock_offset ms ahead.
  local tc = redis.call('HMGET', KEYS[1], 'test_clock', 'clock_offset')
  if tc[1] == '1' and tc[2] then now = now + tonumber(tc[2]) end
