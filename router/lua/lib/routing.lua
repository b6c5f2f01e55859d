-- Routing: where a waiting interaction is found (its class, or during a preferred wait the sets
-- of its preferred agents), and matching (§3.3, §3.4): an interaction with the best agent of its
-- class, an agent with the first interaction, by the order of §3.2, it could take.

local K = M.keys

-- Whether the interaction waits in its class: queued, or a callback not held back (§3.10).
function M.routable(ix)
  return ix.status == 'queued' or (ix.status == 'callback' and not ix.cb_hold)
end

-- Whether the interaction holds a place in its queue's order: escalation steps apply to it.
function M.in_order(ix)
  return ix.status == 'queued' or ix.status == 'offered'
      or (ix.status == 'callback' and not ix.cb_at)
end

-- Puts a routable interaction where agents find it: its class, or during a preferred wait the
-- sets of its preferred agents.
function M.place(ix)
  if ix.pref_until then
    for _, aid in ipairs(ix.pref) do
      redis.call('ZADD', K.agent_preferred(aid), M.int(ix.score), ix.m)
    end
  else
    redis.call('ZADD', K.class_waiting(ix.cls), M.int(ix.score), ix.m)
    redis.call('SADD', K.classes_waiting, ix.cls)
  end
end

function M.unplace(ix)
  redis.call('ZREM', K.class_waiting(ix.cls), ix.m)
  for _, aid in ipairs(ix.pref or {}) do
    redis.call('ZREM', K.agent_preferred(aid), ix.m)
  end
end

-- The best candidate of the interaction's class (§3.3), or during its preferred wait the first
-- listed agent that qualifies (§3.7), and whether it is a preferred one; nil when none is free.
-- Skipping agents that refused it costs at most their number.
function M.candidate(ix)
  local pool = K.class_agents(ix.cls)
  if ix.pref_until then
    for _, aid in ipairs(ix.pref) do
      if not ix.excl[aid] and redis.call('ZSCORE', pool, aid) then return M.load_ag(aid), true end
    end
    return nil
  end
  for _, aid in ipairs(redis.call('ZRANGE', pool, '0', M.int(M.count(ix.excl)))) do
    if not ix.excl[aid] then return M.load_ag(aid), false end
  end
  return nil
end

-- Offers a routable interaction to its candidate (M.candidate). True when it offered.
function M.match_interaction(ix)
  if not M.routable(ix) then return false end
  local ag, preferred = M.candidate(ix)
  if not ag then return false end
  M.offer(ix, ag, preferred)
  return true
end

-- Offers the agent the first waiting interaction, by the order of §3.2, across every class it
-- meets on channels where it has room, and the preferred waits that name it; repeats while it
-- has room (multi-capacity channels). Only the classes in `classes_waiting` are looked at (one
-- SINTER); one found empty leaves that set here. O(classes the agent meets x log n). True when
-- it offered.
function M.match_agent(ag)
  local excluded = K.agent_excluded(ag.id)
  local offered = false
  -- Neither changes while the agent is offered interactions here.
  local skip, skip_text, classes
  while ag.state == 'available' and not ag.wrap_until do
    local room = false
    for ch in pairs(ag.channels) do room = room or M.free_on(ag, ch) end
    if not room then return offered end
    skip = skip or redis.call('SCARD', excluded)
    skip_text = skip_text or M.int(skip)
    classes = classes or M.waiting_classes_of(ag)
    local free = {}
    local best_s, best_m, preferred
    for _, cid in ipairs(classes) do
      local ch = M.class(tonumber(cid)).channel
      if free[ch] == nil then free[ch] = M.free_on(ag, ch) end
      if free[ch] then
        local head = redis.call('ZRANGE', K.class_waiting(cid), '0', skip_text, 'WITHSCORES')
        if #head == 0 then redis.call('SREM', K.classes_waiting, cid) end
        for i = 1, #head, 2 do
          local m, s = head[i], tonumber(head[i + 1])
          if skip == 0 or redis.call('SISMEMBER', excluded, M.member_id(m)) == 0 then
            if best_m == nil or M.before(s, m, best_s, best_m) then best_s, best_m = s, m end
            break
          end
        end
      end
    end
    local waits = redis.call('ZRANGE', K.agent_preferred(ag.id), '0', '-1', 'WITHSCORES')
    for i = 1, #waits, 2 do
      local m, s = waits[i], tonumber(waits[i + 1])
      if best_m ~= nil and not M.before(s, m, best_s, best_m) then break end
      local ix = M.load_ix(M.member_id(m))
      if not ix.excl[ag.id] and M.free_on(ag, ix.channel)
          and redis.call('SISMEMBER', K.agent_classes(ag.id), ix.cls) == 1 then
        best_s, best_m, preferred = s, m, true
        break
      end
    end
    if best_m == nil then return offered end
    M.offer(M.load_ix(M.member_id(best_m)), ag, preferred or false)
    offered = true
  end
  return offered
end
