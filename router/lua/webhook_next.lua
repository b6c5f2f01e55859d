-- webhook_next: the next entry of the event log for a webhook's delivery loop (§4), counting the
-- events the log's trimming (event_log_max) took before the webhook's consumer group read them.
-- Every read of a group goes through here, so the count is exact and made once: the group's own
-- count of the log's entries it has read or lost (K.webhook_reads) is kept beside its position,
-- and, atomically before each read, a group whose position is behind the oldest entry kept lost
-- the entries between (the log counts every entry it was ever given: `entries-added`). At the
-- log's end every entry was read or lost: the count is set there (a new group starts so), and it
-- is unknown, so nothing is counted, until the group first is at the end or behind the oldest.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, group, consumer, claim_idle_ms, ack}: `ack` the ids the loop has
--          handled since its last read (acknowledged first); with claim_idle_ms > 0, an entry
--          pending that long (its consumer presumably dead) is taken over first
-- Returns  a RESP array, not msgpack (an entry's fields are binary):
--          {'entry', lost, id, fields} a new entry, read for `consumer`
--          | {'claimed', lost, id, fields} an entry taken over from a dead consumer
--          | {'none', lost, position} nothing to read: wait for an entry after `position`
--          | {'no_group', 0} the group (or the log) does not exist
--          where `lost` counts the events found lost in this call.
local key, group, consumer = M.keys.events, M.args.group, M.args.consumer
local position = M.group_position(group)
if not position then return {'no_group', 0} end
if #M.args.ack > 0 then redis.call('XACK', key, group, unpack(M.args.ack)) end

local lost = 0
if M.args.claim_idle_ms > 0 then
  -- Oldest first; an entry trimmed meanwhile is dropped from the pending entries by XCLAIM (7.0+;
  -- returned without fields before): lost, and counted here, where it is removed.
  local idle = M.int(M.args.claim_idle_ms)
  for _ = 1, 100 do
    local pending = redis.call('XPENDING', key, group, 'IDLE', idle, '-', '+', 1)
    if #pending == 0 then break end
    local id = pending[1][1]
    local claimed = redis.call('XCLAIM', key, group, consumer, idle, id)
    if claimed[1] and claimed[1][2] then return {'claimed', lost, id, claimed[1][2]} end
    redis.call('XACK', key, group, id)
    lost = lost + 1
  end
end

local stored = M.webhook_count(group, position)
local count = stored
local oldest = M.oldest_event_id()
-- XINFO STREAM (which copies the first and last entries) only where the count is made or a gap
-- is found: the rest of the time the count goes on by one a read.
if not count or (oldest and M.id_before(position, oldest)) then
  local found
  count, found = M.webhook_count_known(position, count, oldest)
  lost = lost + found
end
local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1, 'STREAMS', key, '>')
local entry = read and read[1][2][1]
if entry then
  position = entry[1]
  if count then count = count + 1 end
end
if entry or count ~= stored then M.save_webhook_count(group, count, position) end
if entry then return {'entry', lost, entry[1], entry[2]} end
return {'none', lost, position}
