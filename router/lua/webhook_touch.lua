-- webhook_touch: an entry a webhook's delivery loop is retrying (§4): kept from being taken over
-- (its idle time reset), or found trimmed from the log meanwhile (event_log_max): lost, and counted
-- once, by the call that removes it from the pending entries.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, group, consumer, id}
-- Returns  a RESP array: {'held'} | {'gone'}: not this consumer's (taken over by another loop,
--          which delivers it, or acknowledged) | {'lost'}: trimmed, no longer pending
local key, group, id = M.keys.events, M.args.group, M.args.id
local pending = redis.call('XPENDING', key, group, id, id, 1)[1]
-- Another loop's: taken over while this one stalled (it delivers it now), or acknowledged.
if not pending or pending[2] ~= M.args.consumer then return {'gone'} end
if #redis.call('XCLAIM', key, group, M.args.consumer, 0, id, 'JUSTID') > 0 then
  return {'held'}
end
redis.call('XACK', key, group, id)  -- XCLAIM dropped it already (7.0+); before, it is left
return {'lost'}
