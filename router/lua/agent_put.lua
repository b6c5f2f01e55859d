-- agent_put: create an agent (logged out) or update its skills, channels and name; a logged-in
-- agent is re-indexed at once and routed (§3.4: a change of skills can make a match possible).
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, id, skills, channels, name?}
-- Returns  {'ok', agent, created}
--          {'over_capacity'} the new channels cannot hold the interactions the agent has now
M.apply_due(M.cfg.due_batch)
local a = M.args
local ag = M.load_ag(a.id)
local created = ag == nil
if not created then
  local held = {}
  for _, act in pairs(ag.act) do held[act.ch] = (held[act.ch] or 0) + 1 end
  for ch, n in pairs(held) do
    if n > (a.channels[ch] or 0) then return M.reply('over_capacity') end
  end
end
if created then
  ag = {id = a.id, state = 'logged_out', state_since = M.now, act = {}, misses = 0}
  redis.call('ZADD', M.keys.agents, '0', a.id)
end
ag.skills = a.skills
ag.channels = a.channels
ag.name = a.name
M.save_ag(ag)
if ag.state ~= 'logged_out' then
  M.classify_agent(ag)
  M.route_agent(ag)
end
return M.reply('ok', M.load_ag(a.id), created)
