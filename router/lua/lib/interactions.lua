-- Interactions: arrival (a new or transferred interaction gets in line) and end. The record's
-- fields: router/store/records.py (InteractionRecord).

local K = M.keys

-- The routing class of a queue's step 0 with the interaction's extra skills; nil and an error
-- code when the requirement of a step cannot be routed. With extra skills the classes of every
-- step are made now (the queue's own exist: queue_upsert), so that no escalation meets
-- `max_routing_classes`: O(steps) classes, each filled by at most cfg.fill_batch agents now.
-- `blocked` (an arrival that will not wait) makes none and gets the queue's own class.
function M.arrival_class(q, extra, blocked)
  if next(extra) ~= nil then
    local reqs = M.step_requirements(q, extra)
    for _, req in ipairs(reqs) do
      if M.count(req) > M.cfg.max_skills then return nil, 'too_many_skills' end
    end
    if not blocked then
      local missing = M.classes_missing(q.channel, q.strategy, reqs)
      if M.past_class_limit(missing) then return nil, 'class_limit' end
      for i = #reqs, 2, -1 do M.class_for(q.channel, q.strategy, reqs[i]) end
      return M.class_for(q.channel, q.strategy, reqs[1])
    end
  end
  local cid = M.class_for(q.channel, q.strategy, q.skills)
  if not cid then return nil, 'class_limit' end
  return cid
end

-- Puts a new (or transferred) interaction in line at now: order score, queue indexes, timers,
-- preferred wait, event; then routes it. `ix.cls` is already resolved. One offered at once is
-- never placed where agents find it (M.place), and its record is saved once, by the offer.
function M.enqueue(ix, q, preferred_wait_ms)
  ix.seq = redis.call('INCR', K.arrival_seq)
  ix.m = M.member(ix.seq, ix.id)
  ix.enq = M.now
  ix.score = M.order_score(ix.priority, ix.enq - ix.credit)
  ix.step = 0
  ix.status = 'queued'
  redis.call('ZADD', K.queue_waiting(ix.queue), M.int(ix.score), ix.m)
  redis.call('ZADD', K.queue_on_line(ix.queue), M.int(ix.enq), ix.m)
  M.arm_escalation(ix, q)
  if q.max_wait_s > 0 then M.arm('mw', ix.id, ix.enq + M.ms(q.max_wait_s)) end
  M.start_preferred_wait(ix, preferred_wait_ms)
  M.count_arrival(ix.queue, false)
  local ag, preferred = M.candidate(ix)
  if ag then
    ix.ewt0 = M.ring_estimate(q)  -- M.interaction_ewt with a free candidate
  else
    M.place(ix)
    ix.ewt0 = M.interaction_ewt(ix)
  end
  M.emit('interaction.queued', {interaction_id = ix.id, queue = ix.queue,
                                priority = ix.priority, step = ix.step})
  M.consider_callback(ix, q, ix.ewt0)
  if ag then M.offer(ix, ag, preferred, true) else M.save_ix(ix) end
end

-- Takes the interaction out of its queue's order and off the line.
function M.leave_queue(ix)
  redis.call('ZREM', K.queue_waiting(ix.queue), ix.m)
  redis.call('ZREM', K.queue_on_line(ix.queue), ix.m)
end

-- Forgets the agents the interaction excluded (their exclusion sets).
function M.drop_exclusions(ix)
  for aid in pairs(ix.excl) do redis.call('SREM', K.agent_excluded(aid), ix.id) end
end

-- Ends the interaction in a terminal `status`: out of every index and timer, kept for
-- `retention_s`; emits `etype` with `fields`. A connected one holds no place, queue index or
-- timer any more (its accept took them). One ended while offered keeps no offer: no expiry, no
-- agent (it was never connected; the event names the agent).
function M.finish(ix, status, etype, fields)
  if ix.status ~= 'connected' then
    M.unplace(ix)
    M.leave_queue(ix)
    redis.call('SREM', K.queue_scheduled(ix.queue), ix.id)
    M.disarm_ix(ix.id)
  end
  if ix.status == 'offered' then ix.agent = nil end
  ix.exp = nil
  M.drop_exclusions(ix)
  ix.status = status
  ix.ended = M.now
  ix.pref_until = nil
  if fields.outcome then ix.outcome = fields.outcome end
  if status == 'timed_out' then M.incr('acd_interactions_timed_out_total|' .. ix.queue) end
  M.save_ix(ix)
  fields.interaction_id = ix.id
  fields.queue = ix.queue
  M.emit(etype, fields)
end
