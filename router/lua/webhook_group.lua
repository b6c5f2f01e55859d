-- webhook_group: make a webhook's consumer group on the event log at `position` (§4), with its
-- count of the log's entries read or lost (webhook_next.lua): known when the group starts at the
-- log's end (`$`: a new webhook) or before the oldest entry kept (a log made anew); unknown in the
-- middle, until the group is at either place.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, group, position}: '$' or an entry id
-- Returns  a RESP array: {'made'} | {'exists'}: another loop or router made it
local key, group = M.keys.events, M.args.group
local made = redis.pcall('XGROUP', 'CREATE', key, group, M.args.position, 'MKSTREAM')
if type(made) == 'table' and made.err then
  if string.find(made.err, 'BUSYGROUP', 1, true) then return {'exists'} end
  return redis.error_reply(made.err)
end
local position = M.group_position(group)
M.save_webhook_count(group, (M.webhook_count_known(position, nil, M.oldest_event_id())), position)
return {'made'}
