-- Interactions: placing in the order (§3.2), offers (§3.5), matching (§3.3, §3.4), escalation
-- (§3.1), preferred agents (§3.7) and the end of an interaction.

-- Puts a queued interaction where agents find it: its class, or during a preferred wait the
-- sets of its preferred agents.
function M.place(ix)
  if ix.pref_until then
    for _, aid in ipairs(ix.pref) do
      redis.call('ZADD', P .. 'pref:' .. aid, ix.score, ix.m)
    end
  else
    redis.call('ZADD', P .. 'clsix:' .. ix.cls, ix.score, ix.m)
  end
end

function M.unplace(ix)
  redis.call('ZREM', P .. 'clsix:' .. ix.cls, ix.m)
  for _, aid in ipairs(ix.pref or {}) do
    redis.call('ZREM', P .. 'pref:' .. aid, ix.m)
  end
end

function M.arm_escalation(ix, q)
  local nxt = (q.steps or {})[ix.step + 1]
  if nxt then
    M.arm('esc', ix.id, ix.enq + nxt.after_s * 1000)
  else
    M.disarm('esc', ix.id)
  end
end

function M.routing_note(ix, ag, cls, qualified, preferred)
  local score
  if cls.strategy == 'best_skill' then
    score = 0
    for skill in pairs(cls.skills) do score = score + (ag.skills[skill] or 0) end
  else
    score = (NOW - (ag.idle_since or NOW)) / 1000
  end
  return {step = ix.step, strategy = cls.strategy, score = score, qualified = qualified,
          preferred = preferred}
end

-- Reserves the agent for the interaction and tells the platform.
function M.offer(ix, ag, preferred)
  local cls = M.class(ix.cls)
  local pool = P .. 'clsag:' .. ix.cls
  local qualified = redis.call('ZCARD', pool)
  -- The agent may not be indexed free yet (M.route_agent); it could take the offer.
  if not redis.call('ZSCORE', pool, ag.id) then qualified = qualified + 1 end
  local note = M.routing_note(ix, ag, cls, qualified, preferred)
  M.unplace(ix)
  local q = M.queue(ix.queue)
  ix.status = 'offered'
  ix.agent = ag.id
  ix.no_answer_by = nil
  ix.exp = NOW + math.floor(q.offer_timeout_s * 1000 + 0.5)
  M.arm('off', ix.id, ix.exp)
  ag.act[ix.id] = {ch = ix.channel, st = 'offered'}
  M.save_ix(ix)
  M.save_ag(ag)
  M.reindex_agent(ag)
  M.emit('interaction.offered', {interaction_id = ix.id, agent_id = ag.id, queue = ix.queue,
                                 expires_at = ix.exp / 1000, callback = ix.cb or false,
                                 data = ix.data, routing = note})
end

-- Offers a queued interaction to the best candidate of its class (§3.3), or during its
-- preferred wait to the first listed agent that qualifies (§3.7). Skipping agents that refused
-- it costs at most their number.
-- Whether the interaction waits in its class: queued, or a callback not held back (§3.10).
function M.routable(ix)
  return ix.status == 'queued' or (ix.status == 'callback' and not ix.cb_hold)
end

-- Whether the interaction holds a place in its queue's order: escalation steps apply to it.
function M.in_order(ix)
  return ix.status == 'queued' or ix.status == 'offered'
      or (ix.status == 'callback' and not ix.cb_at)
end

function M.match_interaction(ix)
  if not M.routable(ix) then return false end
  local pool = P .. 'clsag:' .. ix.cls
  if ix.pref_until then
    for _, aid in ipairs(ix.pref) do
      if not ix.excl[aid] and redis.call('ZSCORE', pool, aid) then
        M.offer(ix, M.load_ag(aid), true)
        return true
      end
    end
    return false
  end
  for _, aid in ipairs(redis.call('ZRANGE', pool, 0, M.count(ix.excl))) do
    if not ix.excl[aid] then
      M.offer(ix, M.load_ag(aid), false)
      return true
    end
  end
  return false
end

-- Offers the agent the first waiting interaction, by the order of §3.2, across every class it
-- meets on channels where it has room, and the preferred waits that name it; repeats while it
-- has room (multi-capacity channels). O(classes the agent meets x log n). True when it offered.
function M.match_agent(ag)
  local excluded = P .. 'agex:' .. ag.id
  local offered = false
  -- Neither changes while the agent is offered interactions here.
  local skip, classes
  while ag.state == 'available' and not ag.wrap_until do
    local room = false
    for ch in pairs(ag.channels) do room = room or M.free_on(ag, ch) end
    if not room then return offered end
    skip = skip or redis.call('SCARD', excluded)
    classes = classes or redis.call('SMEMBERS', P .. 'agcls:' .. ag.id)
    local free = {}
    local best_s, best_m, preferred
    for _, cid in ipairs(classes) do
      local ch = M.class(tonumber(cid)).channel
      if free[ch] == nil then free[ch] = M.free_on(ag, ch) end
      if free[ch] then
        local head = redis.call('ZRANGE', P .. 'clsix:' .. cid, 0, skip, 'WITHSCORES')
        for i = 1, #head, 2 do
          local m, s = head[i], tonumber(head[i + 1])
          if skip == 0 or redis.call('SISMEMBER', excluded, M.member_id(m)) == 0 then
            if best_m == nil or M.before(s, m, best_s, best_m) then best_s, best_m = s, m end
            break
          end
        end
      end
    end
    local waits = redis.call('ZRANGE', P .. 'pref:' .. ag.id, 0, -1, 'WITHSCORES')
    for i = 1, #waits, 2 do
      local m, s = waits[i], tonumber(waits[i + 1])
      if best_m ~= nil and not M.before(s, m, best_s, best_m) then break end
      local ix = M.load_ix(M.member_id(m))
      if not ix.excl[ag.id] and M.free_on(ag, ix.channel)
          and redis.call('SISMEMBER', P .. 'agcls:' .. ag.id, ix.cls) == 1 then
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

-- An offer ended without an accept: the interaction goes back to its place (§3.2), unless its
-- max wait passed during the offer. Returns true when it waits again.
function M.requeue(ix, agent_id, reason)
  ix.last_offer = {agent = agent_id, reason = reason}
  ix.agent = nil
  ix.exp = nil
  M.disarm('off', ix.id)
  if ix.mw_due then
    M.finish(ix, 'timed_out', {})
    return false
  end
  ix.status = ix.cb and 'callback' or 'queued'
  M.place(ix)
  M.save_ix(ix)
  M.emit('interaction.requeued', {interaction_id = ix.id, agent_id = agent_id,
                                  queue = ix.queue, reason = reason})
  return true
end

function M.exclude(ix, agent_id, reason)
  ix.excl[agent_id] = reason
  redis.call('SADD', P .. 'agex:' .. agent_id, ix.id)
end

-- The agent refused the offer (reject, no-answer or expiry): it never gets this interaction
-- again; a no-answer counts as a miss (§3.5). Then both are routed again.
function M.refuse(ix, ag, reason, requeue_reason)
  ag.act[ix.id] = nil
  M.count_offer(ix.queue, reason)
  M.exclude(ix, ag.id, reason)
  local back = M.requeue(ix, ag.id, requeue_reason)
  local withdrawn = {}
  if reason ~= 'rejected' then withdrawn = M.count_miss(ag, M.queue(ix.queue)) end
  M.save_ag(ag)
  M.reindex_agent(ag)
  if back then
    if ix.pref_until and not M.preferred_wait_alive(ix) then
      M.end_preferred_wait(ix)
    else
      M.match_interaction(ix)
    end
  end
  M.rematch_after_change(ag, withdrawn)
end

-- Ends the interaction: out of every index and timer, kept for `retention_s`, event emitted.
function M.finish(ix, status, fields)
  M.unplace(ix)
  redis.call('ZREM', P .. 'qw:' .. ix.queue, ix.m)
  redis.call('ZREM', P .. 'ql:' .. ix.queue, ix.m)
  redis.call('SREM', P .. 'qcb:' .. ix.queue, ix.id)
  M.disarm_ix(ix.id)
  for aid in pairs(ix.excl) do redis.call('SREM', P .. 'agex:' .. aid, ix.id) end
  ix.status = status
  ix.ended = NOW
  ix.pref_until = nil
  if fields.outcome then ix.outcome = fields.outcome end
  if status == 'timed_out' then M.incr('acd_interactions_timed_out_total|' .. ix.queue) end
  M.save_ix(ix)
  fields.interaction_id = ix.id
  fields.queue = ix.queue
  M.emit('interaction.' .. status, fields)
end

-- Moves a waiting interaction to the requirement of the step in force (§3.1) and arms the next
-- step; routes it when it changed. `force` re-evaluates after a queue change.
function M.escalate(ix, force)
  local q = M.queue(ix.queue)
  local step = M.step_at(q, NOW - ix.enq)
  if step ~= ix.step or force then
    -- At the class limit the interaction keeps its current pool rather than stalling.
    local cid = M.class_for(q.channel, q.strategy, M.merge(M.step_skills(q, step), ix.skills))
        or ix.cls
    if cid ~= ix.cls then
      local placed = M.routable(ix)
      if placed then M.unplace(ix) end
      ix.cls = cid
      if placed then M.place(ix) end
    end
    if step ~= ix.step then
      ix.step = step
      M.emit('interaction.escalated', {interaction_id = ix.id, queue = ix.queue, step = step})
    end
  end
  M.arm_escalation(ix, q)
  M.save_ix(ix)
  M.match_interaction(ix)
end

-- Preferred agents (§3.7) -------------------------------------------------------------------------

function M.preferred_wait_alive(ix)
  for _, aid in ipairs(ix.pref) do
    if not ix.excl[aid] and redis.call('SISMEMBER', M.K_LOGGED_IN, aid) == 1 then
      return true
    end
  end
  return false
end

function M.end_preferred_wait(ix)
  local placed = M.routable(ix)
  if placed then M.unplace(ix) end
  ix.pref_until = nil
  M.disarm('pw', ix.id)
  if placed then M.place(ix) end
  M.save_ix(ix)
  M.match_interaction(ix)
end

-- After the agent logged out: end the preferred waits that no listed agent can serve any more.
function M.end_preferred_waits_of(agent_id)
  for _, m in ipairs(redis.call('ZRANGE', P .. 'pref:' .. agent_id, 0, -1)) do
    local ix = M.load_ix(M.member_id(m))
    if ix.pref_until and not M.preferred_wait_alive(ix) then M.end_preferred_wait(ix) end
  end
end

-- Arrival ---------------------------------------------------------------------------------------

-- Puts a new (or transferred) interaction in line at NOW: order score, queue indexes, timers,
-- preferred wait, event; then routes it. `ix.cls` is already resolved.
function M.enqueue(ix, q, preferred_wait_ms)
  ix.seq = redis.call('INCR', M.K_SEQ)
  ix.m = M.member(ix.seq, ix.id)
  ix.enq = NOW
  ix.score = M.order_score(ix.priority, ix.enq - ix.credit)
  ix.step = 0
  ix.status = 'queued'
  redis.call('ZADD', P .. 'qw:' .. ix.queue, ix.score, ix.m)
  redis.call('ZADD', P .. 'ql:' .. ix.queue, ix.enq, ix.m)
  M.arm_escalation(ix, q)
  if q.max_wait_s > 0 then M.arm('mw', ix.id, ix.enq + math.floor(q.max_wait_s * 1000 + 0.5)) end
  ix.pref_until = nil
  if #ix.pref > 0 and preferred_wait_ms > 0 and M.preferred_wait_alive(ix) then
    ix.pref_until = NOW + preferred_wait_ms
    M.arm('pw', ix.id, ix.pref_until)
  end
  M.place(ix)
  M.count_arrival(ix.queue, false)
  ix.ewt0 = M.ewt(ix.queue, ix.cls, redis.call('ZRANK', P .. 'qw:' .. ix.queue, ix.m) + 1)
  M.save_ix(ix)
  M.emit('interaction.queued', {interaction_id = ix.id, queue = ix.queue,
                                priority = ix.priority, step = ix.step})
  M.consider_callback(ix, q, ix.ewt0)
  M.match_interaction(ix)
end

-- The routing class of a queue's step 0 with the interaction's extra skills; nil and an error
-- code when the requirement cannot be routed.
function M.arrival_class(q, extra)
  local req = M.merge(q.skills, extra)
  if M.count(req) > 16 then return nil, 'too_many_skills' end
  local cid = M.class_for(q.channel, q.strategy, req)
  if not cid then return nil, 'class_limit' end
  return cid
end

-- After a batch of a class's fill (M.fill_class) indexed `joined`: offers the interactions
-- waiting in the class, in their order, while it has agents free; then the preferred waits
-- that name a joined agent still free. O(batch + offers + interactions the free agents refused).
function M.route_filled(cid, joined)
  local pool = P .. 'clsag:' .. cid
  local waiting = P .. 'clsix:' .. cid
  local skipped = 0
  while redis.call('ZCARD', pool) > 0 do
    local head = redis.call('ZRANGE', waiting, skipped, skipped)
    if #head == 0 then break end
    -- An offer takes it out of the class; one the free agents all refused stays, and is passed.
    if not M.match_interaction(M.load_ix(M.member_id(head[1]))) then skipped = skipped + 1 end
  end
  for _, ag in ipairs(joined) do
    if redis.call('EXISTS', P .. 'pref:' .. ag.id) == 1
        and redis.call('ZSCORE', pool, ag.id) then
      M.match_agent(ag)
    end
  end
end

-- Callbacks (§3.10) -------------------------------------------------------------------------------

M.IX_TIMERS = {'esc', 'mw', 'pw', 'off', 'cbo', 'cbd', 'cbr'}

-- The timer members an interaction may have: `<kind>:<id>` for each of M.IX_TIMERS.
function M.ix_timers(id)
  local members = {}
  for i, kind in ipairs(M.IX_TIMERS) do members[i] = kind .. ':' .. id end
  return members
end

-- Cancels every timer of the interaction, in one command.
function M.disarm_ix(id) redis.call('ZREM', M.K_TIMERS, unpack(M.ix_timers(id))) end

local CALLBACK_CHECK_MS = 10000         -- how often a waiting caller's EWT is looked at again

-- Offers the caller a callback once its EWT exceeds the queue's `offer_when_ewt_s`; until then
-- looks again every CALLBACK_CHECK_MS while it waits on the line.
function M.consider_callback(ix, q, ewt_s)
  if not q.callback or ix.cb_offered or ix.cb then return end
  if ix.status == 'offered' then
    M.arm('cbo', ix.id, NOW + CALLBACK_CHECK_MS)  -- ringing an agent: look again later
  elseif ix.status ~= 'queued' then
    return
  elseif ewt_s > q.callback.offer_when_ewt_s then
    ix.cb_offered = true
    M.disarm('cbo', ix.id)
    M.save_ix(ix)
    M.incr('acd_callbacks_offered_total|' .. ix.queue)
    M.emit('callback.offered', {interaction_id = ix.id, queue = ix.queue, ewt_s = ewt_s})
  else
    M.arm('cbo', ix.id, NOW + CALLBACK_CHECK_MS)
  end
end

-- A scheduled callback enters the queue at its time `at`, as an arrival then (§3.10).
function M.enter_scheduled_callback(ix)
  local q = M.queue(ix.queue)
  redis.call('SREM', P .. 'qcb:' .. ix.queue, ix.id)
  ix.enq = ix.cb_at
  ix.cb_at = nil
  ix.cb_hold = nil
  ix.seq = redis.call('INCR', M.K_SEQ)
  ix.m = M.member(ix.seq, ix.id)
  ix.score = M.order_score(ix.priority, ix.enq - ix.credit)
  ix.step = M.step_at(q, NOW - ix.enq)
  ix.cls = M.class_for(q.channel, q.strategy, M.merge(M.step_skills(q, ix.step), ix.skills))
      or ix.cls
  redis.call('ZADD', P .. 'qw:' .. ix.queue, ix.score, ix.m)
  M.arm_escalation(ix, q)
  M.place(ix)
  M.save_ix(ix)
  M.emit('interaction.queued', {interaction_id = ix.id, queue = ix.queue,
                                priority = ix.priority, step = ix.step, callback = true})
  M.match_interaction(ix)
end

-- The end of a callback's retry wait: routable again, in its old place, at the step in force.
function M.end_callback_hold(ix)
  ix.cb_hold = nil
  M.place(ix)
  M.escalate(ix, false)
end
