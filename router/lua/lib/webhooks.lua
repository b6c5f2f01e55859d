-- Webhooks: each webhook's consumer group keeps its own count of the log's entries it has read or
-- lost (K.webhook_reads: group -> '<count> <position>'), so that the entries the log's trimming
-- takes before the group reads them are counted exactly, and once (webhook_next.lua). The count
-- is trusted only while the group is where it was counted: a read outside these functions (an
-- older router) or a group made anew makes it unknown until the log tells it again.

local K = M.keys

-- Whether the entry id `a` comes before `b` ('<ms>-<seq>').
function M.id_before(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  a_ms, b_ms = tonumber(a_ms), tonumber(b_ms)
  return a_ms < b_ms or (a_ms == b_ms and tonumber(a_seq) < tonumber(b_seq))
end

-- The group's position (`last-delivered-id`); nil when the log or the group does not exist.
function M.group_position(group)
  if redis.call('EXISTS', K.events) == 0 then return nil end
  for _, found in ipairs(redis.call('XINFO', 'GROUPS', K.events)) do
    found = M.pairs_table(found)
    if found.name == group then return found['last-delivered-id'] end
  end
  return nil
end

-- The group's count, if it was counted at `position`; else nil (unknown).
function M.webhook_count(group, position)
  local stored = redis.call('HGET', K.webhook_reads, group)
  if not stored then return nil end
  local count, at = string.match(stored, '^(%d+) (.+)$')
  if at == position then return tonumber(count) end
  return nil
end

function M.save_webhook_count(group, count, position)
  if count then
    redis.call('HSET', K.webhook_reads, group, M.int(count) .. ' ' .. position)
  else
    redis.call('HDEL', K.webhook_reads, group)
  end
end

-- Where the log tells the count of a group at `position` (`count` if known, `oldest` the oldest
-- entry's id, nil for an empty log): at its end, every entry was read or lost; before its oldest
-- entry, every entry the trimming took (`entries-added - length`) was, and those beyond `count`
-- were lost. Returns the count (nil where the log does not tell it) and the entries lost.
function M.webhook_count_known(position, count, oldest)
  local log = M.pairs_table(redis.call('XINFO', 'STREAM', K.events))
  if position == log['last-generated-id'] then return log['entries-added'], 0 end
  if oldest and M.id_before(position, oldest) then
    local trimmed = log['entries-added'] - log.length
    if count and count < trimmed then return trimmed, trimmed - count end
    return trimmed, 0
  end
  return count, 0
end

-- The oldest entry's id of the log; nil when it is empty.
function M.oldest_event_id()
  local oldest = redis.call('XRANGE', K.events, '-', '+', 'COUNT', 1)[1]
  return oldest and oldest[1]
end
