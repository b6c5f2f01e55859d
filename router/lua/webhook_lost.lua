-- webhook_lost: the events trimmed from the log (event_log_max) before a webhook's consumer group
-- read them, counted once each (§4: the webhook's `lost` deliveries).
-- Redis counts a group's reads (`entries-read`, one per entry read, none for an entry trimmed
-- before it was read), and the log counts its entries (`entries-added`). Where both are known, the
-- difference is the entries lost: before the oldest entry kept (every kept entry is unread:
-- `entries-added - length` were read or lost), and at the log's end (all were read or lost).
-- Elsewhere nothing is counted, until the group is at either place again. The count found is
-- recorded as read (XGROUP SETID ... ENTRIESREAD), so that it is not found again; so is an unknown
-- count (a group just made), from which losses are counted from then on.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, group}
-- Returns  {'ok', lost} | {'not_found'}: no log, or no such group
local key = M.keys.events

-- A reply of XINFO (field, value, field, value...) as a table.
local function fields(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

-- Whether the entry id `a` comes before `b` ('<ms>-<seq>').
local function before(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  a_ms, b_ms = tonumber(a_ms), tonumber(b_ms)
  return a_ms < b_ms or (a_ms == b_ms and tonumber(a_seq) < tonumber(b_seq))
end

if redis.call('EXISTS', key) == 0 then return M.reply('not_found') end
local group
for _, found in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  found = fields(found)
  if found.name == M.args.group then group = found end
end
if not group then return M.reply('not_found') end
local log = fields(redis.call('XINFO', 'STREAM', key))
local position = group['last-delivered-id']
local accounted  -- the entries the group has read or lost, where it is known
if position == log['last-generated-id'] then
  accounted = log['entries-added']
elseif log['first-entry'] and before(position, log['first-entry'][1]) then
  accounted = log['entries-added'] - log.length
else
  return M.reply('ok', 0)
end
local read = group['entries-read']  -- false: Redis does not know it
if read and read >= accounted then return M.reply('ok', 0) end
redis.call('XGROUP', 'SETID', key, M.args.group, position, 'ENTRIESREAD', accounted)
return M.reply('ok', read and accounted - read or 0)
