-- agent_state: the agent sets its state (§3.5). Leaving `available` withdraws pending offers
-- (the interactions keep their place and are routed again at once); `available` ends wrap-up
-- early and resets the miss count; a forced logout completes connected interactions with
-- outcome agent_lost. A reason is that of `not_ready` or `logged_out`: none with `available`.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, id, state, reason?, force}
-- Returns  {'ok', agent}
--          {'not_found'} | {'connected'} (logout with a connected interaction, not forced)
M.apply_due(M.cfg.due_batch)
local a = M.args
M.apply_due_of_agent(a.id)
local ag = M.load_ag(a.id)
if not ag then return M.reply('not_found') end
if a.state == 'logged_out' and not a.force then
  for _, act in pairs(ag.act) do
    if act.st == 'connected' then return M.reply('connected') end
  end
end
local reason = a.reason
if a.state == 'available' then reason = nil end
if ag.state == a.state and a.state == 'available' then
  -- Already available: resets the miss count (§3.5) and ends wrap-up early (§3.8); drops the
  -- reason that versions which took one with `available` kept.
  local changed = (ag.misses or 0) > 0 or ag.reason ~= nil
  ag.misses = 0
  ag.reason = nil
  if ag.wrap_until then
    M.end_wrap_up(ag, M.now)
    M.save_ag(ag)
    M.route_agent(ag)
  elseif changed then
    M.save_ag(ag)
  end
  return M.reply('ok', ag)
end
if ag.state == a.state and ag.reason == reason then return M.reply('ok', ag) end
local requeued = M.change_state(ag, a.state, reason)
M.rematch_after_change(ag, requeued)
return M.reply('ok', M.load_ag(a.id))
