-- Agents: capacity (§3.6), the class indexes of available agents and of their wrap-up ends, the
-- staffed sets of queues, state changes (§3.5) and wrap-up (§3.8). The record's fields:
-- router/store/records.py (AgentRecord).

local K = M.keys

-- Active interactions of the agent on one channel, and on any channel.
function M.active_on(ag, channel)
  local on, all = 0, 0
  for _, a in pairs(ag.act) do
    all = all + 1
    if a.ch == channel then on = on + 1 end
  end
  return on, all
end

-- Whether the agent could take an offer on `channel` now, and its active count there.
function M.free_on(ag, channel)
  if ag.state ~= 'available' or ag.wrap_until then return false, 0 end
  local cap = ag.channels[channel] or 0
  local on, all = M.active_on(ag, channel)
  if on >= cap then return false, on end
  if M.cfg.exclusive[channel] then
    if all > 0 then return false, on end
  else
    for _, a in pairs(ag.act) do
      if M.cfg.exclusive[a.ch] then return false, on end
    end
  end
  return true, on
end

-- What the class indexes hold of each agent this call touched, per channel: an entry
-- {on, idle_since} where it is indexed free, nothing where it is not. Taken from the record as
-- loaded (the indexes agree with the stored record between calls) and kept as this call
-- reindexes, so that a reindex writes only the channels whose entry changed: an agent that goes
-- from one call to the next, or from a call to wrap-up, touches no index. Absent: not known
-- (every class is written).
local pooled
local classes_of                       -- agent id -> the classes it qualifies for, read once
M.on_call(function() pooled, classes_of = {}, {} end)

-- The ids (strings) of the classes the agent qualifies for (`agcls:`), read once per call.
-- Callers must not change it.
function M.agent_classes(ag)
  local found = classes_of[ag.id]
  if not found then
    found = redis.call('SMEMBERS', K.agent_classes(ag.id))
    classes_of[ag.id] = found
  end
  return found
end

-- The agent's classes changed (joined, reclassified, left): read them again when needed.
function M.agent_classes_changed(ag) classes_of[ag.id] = nil end

local function pool_entry(ag, channel)
  local free, on = M.free_on(ag, channel)
  if free then return {on, ag.idle_since} end
  return false
end

local function same_entry(a, b)
  if not a or not b then return not a and not b end
  return a[1] == b[1] and a[2] == b[2]
end

-- The record as stored (lib/records.lua, M.load_ag): what the indexes hold of the agent.
function M.agent_loaded(ag)
  local entries = {}
  for ch in pairs(ag.channels or {}) do entries[ch] = pool_entry(ag, ch) end
  pooled[ag.id] = entries
end

-- Whether the class indexes of `channel` hold the agent as free; nil when not known.
function M.pooled(ag, channel)
  local entries = pooled[ag.id]
  if entries == nil then return nil end
  return entries[channel] and true or false
end

function M.index_agent_in(ag, cid)
  pooled[ag.id] = nil  -- one class written apart from the others
  M.write_index(ag, cid, M.class(cid), pool_entry(ag, M.class(cid).channel))
end

-- Writes the agent's entry in one class index: its strategy score where `entry` is free.
-- `scores` (optional, one per reindex) keeps the longest_idle score per channel, the same for
-- every class of the channel.
function M.write_index(ag, cid, cls, entry, scores)
  if entry then
    local score = scores and cls.strategy ~= 'best_skill' and scores[cls.channel]
    if not score then
      score = M.int(M.agent_score(ag, cls, entry[1]))
      if scores and cls.strategy ~= 'best_skill' then scores[cls.channel] = score end
    end
    redis.call('ZADD', K.class_agents(cid), score, ag.id)
  else
    redis.call('ZREM', K.class_agents(cid), ag.id)
  end
end

-- Brings every class index of the agent up to date with its record: O(classes it meets) for
-- the channels whose entry changed, nothing when none did.
function M.reindex_agent(ag)
  local was = pooled[ag.id]
  local now, changed = {}, {}
  local any = false
  for ch in pairs(ag.channels) do
    now[ch] = pool_entry(ag, ch)
    changed[ch] = was == nil or not same_entry(was[ch], now[ch])
    any = any or changed[ch]
  end
  if not any then return end
  local scores = {}
  for _, cid in ipairs(M.agent_classes(ag)) do
    cid = tonumber(cid)
    local cls = M.class(cid)
    if changed[cls.channel] ~= false then  -- nil: a channel it has no capacity on
      M.write_index(ag, cid, cls, now[cls.channel] or false, scores)
    end
  end
  pooled[ag.id] = now
end

-- Routes an agent whose record changed, then indexes it: when it gets an offer, the offer's
-- reindex is the only one (indexing it free first would add it to every class, then remove it).
-- `unsaved`: the caller has not saved the record; the offer saves it, else it is saved here
-- (without the agent's instant of idleness counted in between: the same totals).
function M.route_agent(ag, unsaved)
  if M.match_agent(ag) then return end
  if unsaved then M.save_ag(ag) end
  M.reindex_agent(ag)
end

-- Whether the end of the agent's wrap-up frees it for offers: in wrap-up while available.
function M.wrapping(ag) return ag.wrap_until ~= nil and ag.state == 'available' end

-- Puts the end of the agent's wrap-up in (or takes it out of) the wrap-up index of each class
-- it qualifies for (`clswu:<class>`, read by the EWT), as M.wrapping says: at the start,
-- extension and end of a wrap-up and when the agent leaves `available` during one. O(classes it
-- qualifies for), at those moments only.
function M.index_wrap_up(ag)
  local wrapping = M.wrapping(ag)
  for _, cid in ipairs(M.agent_classes(ag)) do
    if wrapping then
      redis.call('ZADD', K.class_wrap_up(cid), M.int(ag.wrap_until), ag.id)
    else
      redis.call('ZREM', K.class_wrap_up(cid), ag.id)
    end
  end
end

-- Puts the agent in (or takes it out of) the `available` set of each class it qualifies for
-- (`clsav:<class>`, read by the EWT), as its state says: when it enters or leaves `available`.
function M.index_available(ag)
  local op = ag.state == 'available' and 'SADD' or 'SREM'
  for _, cid in ipairs(M.agent_classes(ag)) do redis.call(op, K.class_available(cid), ag.id) end
end

-- Adds the agent to (or removes it from) the staffed set of every queue it serves: the queues
-- of the classes it meets (`clsq:<class>`), O(classes it meets), not O(queues).
function M.staff_agent(ag, logged_in)
  local maps = {}
  for _, cid in ipairs(M.agent_classes(ag)) do
    maps[#maps + 1] = K.class_queues(cid)
  end
  if #maps == 0 then return end
  for _, name in ipairs(redis.call('SUNION', unpack(maps))) do
    redis.call(logged_in and 'SADD' or 'SREM', K.queue_staffed(name), ag.id)
  end
end

-- Recomputes which classes the agent qualifies for (at login, on a change of skills or
-- channels).
function M.classify_agent(ag)
  M.staff_agent(ag, false)
  M.unindex_agent(ag)
  local key = K.agent_classes(ag.id)
  M.agent_classes_changed(ag)
  for _, cid in ipairs(redis.call('HVALS', K.classes)) do
    local cls = M.class(tonumber(cid))
    if M.qualifies(ag, cls.channel, cls.skills) then
      redis.call('SADD', key, cid)
      redis.call('SADD', K.class_staffed(cid), ag.id)
      if ag.state == 'available' then redis.call('SADD', K.class_available(cid), ag.id) end
      if M.wrapping(ag) then redis.call('ZADD', K.class_wrap_up(cid), M.int(ag.wrap_until), ag.id) end
    end
  end
  M.agent_classes_changed(ag)
  M.staff_agent(ag, true)
end

-- Takes the agent out of every class (at logout, or before reclassifying it).
function M.unindex_agent(ag)
  local key = K.agent_classes(ag.id)
  for _, cid in ipairs(M.agent_classes(ag)) do
    redis.call('ZREM', K.class_agents(cid), ag.id)
    redis.call('SREM', K.class_staffed(cid), ag.id)
    redis.call('SREM', K.class_available(cid), ag.id)
    redis.call('ZREM', K.class_wrap_up(cid), ag.id)
  end
  redis.call('DEL', key)
  M.agent_classes_changed(ag)
  pooled[ag.id] = {}
end

function M.activity(ag)
  if ag.wrap_until then return 'wrap_up' end
  local busy = false
  for _, a in pairs(ag.act) do
    if a.st == 'offered' then return 'offered' end
    busy = true
  end
  if busy then return 'busy' end
  return 'idle'
end

-- Ends the agent's wrap-up at `at`; it is idle from then (§3.8).
function M.end_wrap_up(ag, at)
  local indexed = M.wrapping(ag)
  ag.wrap_until = nil
  ag.idle_since = at
  ag.switch_at = at
  M.disarm('wu', ag.id)
  if indexed then M.index_wrap_up(ag) end
  for _, h in ipairs(ag.handles or {}) do M.count_handle(h.q, M.seconds(at - h.a)) end
  ag.handles = nil
end

-- Frees the agent of a connected interaction, starting wrap-up when `wrap_ms` > 0; its handle
-- time ends with the wrap-up. The queue's recent talk time and wrap-up (the EWT's) count it.
-- The caller saves, reindexes and matches.
function M.release(ag, ix, wrap_ms)
  ag.act[ix.id] = nil
  wrap_ms = wrap_ms or 0
  local recent = {talk = M.seconds_since(ix.answered), wrap = M.seconds(wrap_ms)}
  if wrap_ms <= 0 then
    M.count_handle(ix.queue, recent.talk, recent)
    if not ag.wrap_until then ag.idle_since = M.now end
    return
  end
  M.emas(ix.queue, recent)
  ag.handles = ag.handles or {}
  ag.handles[#ag.handles + 1] = {q = ix.queue, a = ix.answered}
  local until_ms = M.now + wrap_ms
  if ag.wrap_until == nil or ag.wrap_until < until_ms then
    ag.wrap_until = until_ms
    M.arm('wu', ag.id, until_ms)
    if M.wrapping(ag) then M.index_wrap_up(ag) end
  end
end

-- Changes the agent's state: withdraws pending offers when it leaves `available`, force-
-- completes connected interactions on a forced logout, keeps the indexes and the logged-in set
-- true. Returns the interactions to route again; the caller saves, then rematches.
function M.change_state(ag, state, reason)
  local prev = ag.state
  local requeued = {}
  if prev == 'available' and state ~= 'available' then
    for ix_id, a in pairs(ag.act) do
      if a.st == 'offered' then
        local ix = M.load_ix(ix_id)
        ag.act[ix_id] = nil
        M.count_offer(ix.queue, 'withdrawn')
        if M.requeue(ix, ag.id, 'withdrawn') then requeued[#requeued + 1] = ix end
      end
    end
  end
  if state == 'logged_out' then
    for ix_id, a in pairs(ag.act) do
      if a.st == 'connected' then
        -- Not a handle time (docs/metrics.md): the call was cut off, not handled, and would
        -- teach the EWT a handle time of however long it had lasted.
        local ix = M.load_ix(ix_id)
        M.finish(ix, 'completed', 'interaction.completed',
                 {agent_id = ag.id, outcome = 'agent_lost'})
      end
      ag.act[ix_id] = nil
    end
    if ag.wrap_until then M.end_wrap_up(ag, M.now) end
    M.staff_agent(ag, false)
    M.unindex_agent(ag)
    redis.call('SREM', K.logged_in, ag.id)
  elseif prev == 'logged_out' then
    redis.call('SADD', K.logged_in, ag.id)
    M.classify_agent(ag)
  end
  if state == 'available' then
    ag.misses = 0
    if ag.wrap_until then M.end_wrap_up(ag, M.now) end
    if prev ~= 'available' then ag.idle_since = M.now end
  end
  ag.state = state
  ag.reason = reason
  ag.state_since = M.now
  -- Logged out, it left its classes (M.unindex_agent); logged in, it joined them as logged out.
  if (prev == 'available') ~= (state == 'available') and state ~= 'logged_out' then
    M.index_available(ag)
  end
  -- Not ready in wrap-up: its end no longer frees the agent (logged out, it ended above).
  if prev == 'available' and state == 'not_ready' and ag.wrap_until then M.index_wrap_up(ag) end
  M.save_ag(ag)
  if state ~= 'logged_out' then M.reindex_agent(ag) end
  M.emit('agent.state_changed', {agent_id = ag.id, state = state, previous_state = prev,
                                 reason = reason})
  if state == 'logged_out' then M.end_preferred_waits_of(ag.id) end
  return requeued
end

-- After a state change: route the withdrawn interactions again (in their order), then the agent.
function M.rematch_after_change(ag, requeued)
  table.sort(requeued, function(x, y) return M.before(x.score, x.m, y.score, y.m) end)
  for _, ix in ipairs(requeued) do M.match_interaction(ix) end
  if ag.state == 'available' then M.match_agent(ag) end
end

-- A miss (explicit no-answer or expiry): after `max_no_answer` in a row the agent is set
-- not_ready with reason no_answer. Returns the interactions that withdrawal requeued.
function M.count_miss(ag, q)
  ag.misses = (ag.misses or 0) + 1
  if ag.state == 'available' and ag.misses >= (q.max_no_answer or 1) then
    return M.change_state(ag, 'not_ready', 'no_answer')
  end
  return {}
end
