-- interaction_abandon: the caller hung up (DELETE). Queued or offered -> abandoned (an offer is
-- withdrawn from its agent, who is routed again); a callback (waiting, scheduled or offered) ->
-- cancelled.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, id}
-- Returns  {'ok', interaction} (also when already abandoned or cancelled: a retry)
--          {'not_found'} | {'connected'} | {'ended'}
M.apply_due(M.cfg.due_batch)
local id = M.args.id
M.apply_due_of_interaction(id)
local ix = M.load_ix(id)
if not ix then return M.reply('not_found') end
if ix.status == 'abandoned' or ix.status == 'cancelled' then return M.reply_ix(ix) end
if ix.status == 'connected' then return M.reply('connected') end
if M.TERMINAL[ix.status] then return M.reply('ended') end
local ag
if ix.status == 'offered' then
  M.count_offer(ix.queue, 'withdrawn')
  ix.last_offer = {agent = ix.agent, reason = 'withdrawn'}  -- a late accept: offer_expired
  ag = M.load_ag(ix.agent)
  ag.act[id] = nil  -- saved and indexed by M.route_agent, below
end
if ix.cb then
  M.incr('acd_callbacks_cancelled_total|' .. ix.queue)
  M.finish(ix, 'cancelled', 'interaction.cancelled', {agent_id = ix.agent})
else
  local waited_s = M.seconds_since(ix.enq)
  M.count_wait_end(ix, 'abandoned', waited_s)
  M.finish(ix, 'abandoned', 'interaction.abandoned', {agent_id = ix.agent, waited_s = waited_s})
end
if ag then M.route_agent(ag, true) end
return M.reply_ix(ix)
