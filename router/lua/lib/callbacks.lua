-- Callbacks (§3.10): offered to a caller whose EWT is long, then waiting off the line in its
-- place, or scheduled to enter the queue later; a dial attempt the customer missed holds it back
-- for the policy's retry wait.

local K = M.keys

local CALLBACK_CHECK_MS = 10000         -- how often a waiting caller's EWT is looked at again

-- Offers the caller a callback once its EWT exceeds the queue's `offer_when_ewt_s`; until then
-- looks again every CALLBACK_CHECK_MS while it waits on the line.
function M.consider_callback(ix, q, ewt_s)
  if not q.callback or ix.cb_offered or ix.cb then return end
  if ix.status == 'offered' then
    M.arm('cbo', ix.id, M.now + CALLBACK_CHECK_MS)  -- ringing an agent: look again later
  elseif ix.status ~= 'queued' then
    return
  elseif ewt_s > q.callback.offer_when_ewt_s then
    ix.cb_offered = true
    M.disarm('cbo', ix.id)
    M.save_ix(ix)
    M.incr('acd_callbacks_offered_total|' .. ix.queue)
    M.emit('callback.offered', {interaction_id = ix.id, queue = ix.queue, ewt_s = ewt_s})
  else
    M.arm('cbo', ix.id, M.now + CALLBACK_CHECK_MS)
  end
end

-- A scheduled callback enters the queue at its time `at`, as an arrival then.
function M.enter_scheduled_callback(ix)
  local q = M.queue(ix.queue)
  redis.call('SREM', K.queue_scheduled(ix.queue), ix.id)
  ix.enq = ix.cb_at
  ix.cb_at = nil
  ix.cb_hold = nil
  ix.seq = redis.call('INCR', K.arrival_seq)
  ix.m = M.member(ix.seq, ix.id)
  ix.score = M.order_score(ix.priority, ix.enq - ix.credit)
  ix.step = M.step_at(q, M.now - ix.enq)
  ix.cls = M.class_for(q.channel, q.strategy, M.merge(M.step_skills(q, ix.step), ix.skills))
      or ix.cls
  redis.call('ZADD', K.queue_waiting(ix.queue), M.int(ix.score), ix.m)
  M.arm_escalation(ix, q)
  M.start_preferred_wait(ix, ix.pref_wait or 0)
  ix.pref_wait = nil
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
