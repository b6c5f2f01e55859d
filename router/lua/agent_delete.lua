-- agent_delete: remove a logged-out agent.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, id}
-- Returns  {'ok'} | {'not_found'} | {'logged_in'}
local K = M.keys
M.apply_due(M.cfg.due_batch)
local id = M.args.id
local ag = M.load_ag(id)
if not ag then return M.reply('not_found') end
if ag.state ~= 'logged_out' then return M.reply('logged_in') end
-- Its exclusions (`agex:`) stay: the interactions that name it still exclude an agent created
-- again with its id, and take themselves out of the set when they end.
redis.call('DEL', K.agent(id), K.agent_classes(id))
if ag.m_by then redis.call('HINCRBY', K.agents_by_state, ag.m_by, '-1') end
redis.call('ZREM', K.agents, id)
return M.reply('ok')
