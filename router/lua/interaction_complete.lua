-- interaction_complete: the agent finished the interaction; wrap-up follows (§3.8).
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, id, agent_id, outcome, wrap_up_ms?}
-- Returns  {'ok', interaction} (also when already completed by that agent: a retry)
--          {'not_found'} | {'not_connected'}
--@include base
--@include agents
--@include routing
--@include timers
--@include metrics
M.apply_due(CFG.due_batch)
local id, agent_id = M.args.id, M.args.agent_id
local ix = M.load_ix(id)
if not ix then return M.reply('not_found') end
if ix.status == 'completed' and ix.agent == agent_id then return M.reply_ix(ix) end
if ix.status ~= 'connected' or ix.agent ~= agent_id then return M.reply('not_connected') end
local q = M.queue(ix.queue)
local wrap_ms = M.args.wrap_up_ms or math.floor((q and q.wrap_up_s or 0) * 1000 + 0.5)
local ag = M.load_ag(agent_id)
M.release(ag, ix, wrap_ms)
M.save_ag(ag)
M.finish(ix, 'completed', {agent_id = agent_id, outcome = M.args.outcome,
                           handle_s = (NOW - ix.answered) / 1000})
M.reindex_agent(ag)
M.match_agent(ag)
return M.reply_ix(ix)
