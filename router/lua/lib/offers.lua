-- Offers (§3.5): reserving an agent for an interaction, and the end of an offer without an
-- accept (reject, no-answer, expiry, withdrawal), after which the interaction waits again in
-- its place (§3.2).

local K = M.keys

-- The `routing` object of interaction.offered: why this agent.
function M.routing_note(ix, ag, cls, qualified, preferred)
  local score
  if cls.strategy == 'best_skill' then
    score = 0
    for skill in pairs(cls.skills) do score = score + (ag.skills[skill] or 0) end
  else
    score = M.seconds_since(ag.idle_since or M.now)
  end
  return {step = ix.step, strategy = cls.strategy, score = score, qualified = qualified,
          preferred = preferred}
end

-- Reserves the agent for the interaction and tells the platform. `unplaced`: an arrival that
-- was never placed where agents find it (M.enqueue).
function M.offer(ix, ag, preferred, unplaced)
  local cls = M.class(ix.cls)
  local pool = K.class_agents(ix.cls)
  local qualified = redis.call('ZCARD', pool)
  -- The agent may not be indexed free yet (M.route_agent); it could take the offer.
  local indexed = M.pooled(ag, ix.channel)
  if indexed == nil then indexed = redis.call('ZSCORE', pool, ag.id) end
  if not indexed then qualified = qualified + 1 end
  local note = M.routing_note(ix, ag, cls, qualified, preferred)
  if not unplaced then M.unplace(ix) end
  local q = M.queue(ix.queue)
  ix.status = 'offered'
  ix.agent = ag.id
  ix.no_answer_by = nil
  ix.offered = M.now
  ix.exp = M.now + M.ms(q.offer_timeout_s)
  M.arm('off', ix.id, ix.exp)
  ag.act[ix.id] = {ch = ix.channel, st = 'offered'}
  M.save_ix(ix)
  M.save_ag(ag)
  M.reindex_agent(ag)
  M.emit('interaction.offered', {interaction_id = ix.id, agent_id = ag.id, queue = ix.queue,
                                 expires_at = M.seconds(ix.exp), callback = ix.cb or false,
                                 data = ix.data, routing = note})
end

-- Whether the interaction's max wait (§3.9) has passed by its queue's limit now (a change of
-- the limit applies to it); callbacks are exempt.
function M.max_wait_passed(ix)
  local q = M.queue(ix.queue)
  return not ix.cb and q ~= nil and q.max_wait_s > 0 and M.now >= ix.enq + M.ms(q.max_wait_s)
end

-- An offer ended without an accept: the interaction goes back to its place (§3.2), unless its
-- max wait passed during the offer. Returns true when it waits again.
function M.requeue(ix, agent_id, reason)
  ix.last_offer = {agent = agent_id, reason = reason}
  ix.agent = nil
  ix.exp = nil
  M.disarm('off', ix.id)
  if M.max_wait_passed(ix) then
    M.finish(ix, 'timed_out', 'interaction.timed_out', {})
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
  redis.call('SADD', K.agent_excluded(agent_id), ix.id)
end

-- The agent refused the offer (reject, no-answer or expiry): it never gets this interaction
-- again; a no-answer counts as a miss (§3.5). Then both are routed again: the interaction with
-- those the miss withdrew from the agent, in their order (§3.2), then the agent.
function M.refuse(ix, ag, reason, requeue_reason)
  ag.act[ix.id] = nil
  M.count_offer(ix.queue, reason)
  M.exclude(ix, ag.id, reason)
  local back = M.requeue(ix, ag.id, requeue_reason)
  local again = {}
  if reason ~= 'rejected' then again = M.count_miss(ag, M.queue(ix.queue)) end
  M.save_ag(ag)
  M.reindex_agent(ag)
  if back then
    if ix.pref_until and not M.preferred_wait_alive(ix) then M.end_preferred_wait(ix, true) end
    again[#again + 1] = ix
  end
  M.rematch_after_change(ag, again)
end

-- The offer expired unanswered: a no-answer.
function M.expire_offer(ix)
  M.refuse(ix, M.load_ag(ix.agent), 'no_answer', 'expired')
end
