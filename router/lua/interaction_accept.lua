-- interaction_accept: the agent answered the offer; the interaction is connected (§3.5).
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, id, agent_id}
-- Returns  {'ok', interaction} (also when already connected to that agent: a retry)
--          {'not_found'} | {'offer_expired', note?} (expired or withdrawn; an expiry that was
--          due is applied by this same call) | {'not_offered', note?}; `note` when it has ended
M.apply_due(M.cfg.due_batch)
local id, agent_id = M.args.id, M.args.agent_id
M.apply_due_of_interaction(id)
local ix = M.load_ix(id)
if not ix then return M.reply('not_found') end
if ix.status == 'connected' and ix.agent == agent_id then return M.reply_ix(ix) end
if ix.status ~= 'offered' or ix.agent ~= agent_id then
  local note = M.ended_note(ix)
  if ix.last_offer and ix.last_offer.agent == agent_id then
    return M.reply('offer_expired', note)
  end
  return M.reply('not_offered', note)
end
local ag = M.load_ag(agent_id)
M.unplace(ix)
M.leave_queue(ix)
M.disarm_ix(ix.id)
ix.status = 'connected'
ix.answered = M.now
ix.exp = nil
ix.pref_until = nil
ix.done = nil  -- a callback's earlier completion: this connection ends anew
ag.act[id].st = 'connected'
ag.misses = 0
M.count_offer(ix.queue, 'accepted')
M.count_ring(ix)
if ix.cb then ix.attempts = (ix.attempts or 0) + 1 end  -- the agent dials the customer
if not ix.answered_once then
  ix.answered_once = true
  M.count_wait_end(ix, 'answered', M.seconds_since(ix.enq))
end
M.save_ix(ix)
M.save_ag(ag)
M.emit('interaction.connected', {interaction_id = id, agent_id = agent_id, queue = ix.queue,
                                 waited_s = M.seconds_since(ix.enq)})
return M.reply_ix(ix)
