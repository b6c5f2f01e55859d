-- interaction_transfer: the connected agent sends the interaction to another queue (§3.9).
-- It leaves the agent (wrap-up of the source queue) and enters the target as a new arrival
-- with the same priority, credit, extra skills and data, without preferred agents or exclusions.
-- A callback transferred is a caller on the line from then on: no longer a callback.
-- Extra skills may need a routing class not made yet (M.class_for): with more than
-- cfg.fill_batch agents logged in, it holds one batch of them on return, its fill timer the rest.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, id, agent_id, queue}
-- Returns  {'ok', interaction}, also for an exact repeat of this transfer (same agent and queue)
--          while the interaction waits in that queue, unanswered since (§4: safe to retry)
--          {'not_found'} | {'not_connected'} | {'unknown_queue'} | {'channel_mismatch'}
--          {'queue_full'} (the interaction stays with the agent) | {'too_many_skills'}
--          {'class_limit'}
M.apply_due(M.cfg.due_batch)
local id, agent_id = M.args.id, M.args.agent_id
local ix = M.load_ix(id)
if not ix then return M.reply('not_found') end
if ix.status ~= 'connected' or ix.agent ~= agent_id then
  local repeated = ix.xfer and ix.xfer.agent == agent_id and ix.xfer.queue == M.args.queue
  if repeated and ix.queue == M.args.queue and not ix.answered
      and (ix.status == 'queued' or ix.status == 'offered') then
    return M.reply_ix(M.with_ewt(ix))
  end
  return M.reply('not_connected')
end
local target = M.queue(M.args.queue)
if not target then return M.reply('unknown_queue') end
if target.channel ~= ix.channel then return M.reply('channel_mismatch') end
if target.max_waiting > 0
    and redis.call('ZCARD', M.keys.queue_on_line(target.name)) >= target.max_waiting then
  return M.reply('queue_full')
end
local cid, err = M.arrival_class(target, ix.skills)
if not cid then return M.reply(err) end
local source = M.queue(ix.queue)
local ag = M.load_ag(agent_id)
M.release(ag, ix, M.ms(source and source.wrap_up_s or 0))
M.incr('acd_interactions_transferred_total|' .. ix.queue)
M.save_ag(ag)
M.reindex_agent(ag)
M.drop_exclusions(ix)
M.emit('interaction.transferred', {interaction_id = id, agent_id = agent_id,
                                   queue = target.name, from_queue = ix.queue})
ix.queue = target.name
ix.cls = cid
ix.excl = {}
ix.pref = {}
ix.agent = nil
ix.answered = nil
ix.answered_once = nil
ix.last_offer = nil
ix.transfers = (ix.transfers or 0) + 1
ix.xfer = {agent = agent_id, queue = target.name}
ix.cb, ix.cb_offered, ix.no_answer_by = nil, false, nil
ix.attempts = 0
-- The agent, free again, takes the first interaction waiting by §3.2 (§3.4) before the transfer
-- enters behind those already waiting; it may then be offered the transfer itself.
M.match_agent(ag)
M.enqueue(ix, target, 0)
return M.reply_ix(M.with_ewt(M.load_ix(id)))
