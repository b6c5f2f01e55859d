-- agent_delete: remove a logged-out agent.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, id}
-- Returns  {'ok'} | {'not_found'} | {'logged_in'}
--@include base
--@include agents
--@include routing
--@include timers
--@include metrics
M.apply_due(CFG.due_batch)
local id = M.args.id
local ag = M.load_ag(id)
if not ag then return M.reply('not_found') end
if ag.state ~= 'logged_out' then return M.reply('logged_in') end
redis.call('DEL', P .. 'ag:' .. id, P .. 'agex:' .. id, P .. 'agcls:' .. id)
if ag.m_by then redis.call('HINCRBY', M.K_AGENTS_BY, ag.m_by, -1) end
redis.call('ZREM', M.K_AGENTS, id)
return M.reply('ok')
