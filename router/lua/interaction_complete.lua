-- interaction_complete: the agent finished the interaction; wrap-up follows (§3.8).
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, id, agent_id, outcome, wrap_up_ms?}
-- A callback completed with outcome customer_no_answer waits again in its place, routable after
-- the policy's retry_after_s, until max_attempts dial attempts: then it is `failed` (§3.10).
-- Returns  {'ok', interaction} (also when already completed by that agent, or already put back
--          or failed by that agent's customer_no_answer, with the same arguments: a retry)
--          {'not_found'} | {'not_connected'} | {'complete_differs', what} (already done by that
--          agent with other arguments: `what` names them, as they were)
M.apply_due(M.cfg.due_batch)
local id, agent_id = M.args.id, M.args.agent_id
local ix = M.load_ix(id)
if not ix then return M.reply('not_found') end

-- The completion `agent_id` applied, while the interaction is where it left it: completed or
-- failed by it, or waiting again after its customer_no_answer (§3.10); nil otherwise.
local function applied()
  local by = ix.agent
  if ix.status == 'callback' then
    by = ix.no_answer_by
  elseif ix.status ~= 'completed' and ix.status ~= 'failed' then
    return nil
  end
  if by ~= agent_id then return nil end
  -- A forced logout, or a completion before `done` was kept: its outcome only.
  return ix.done or {outcome = ix.outcome or 'customer_no_answer', wrap = M.args.wrap_up_ms}
end

local done = applied()
if done then
  local differs = {}
  if done.outcome ~= M.args.outcome then differs[#differs + 1] = 'outcome was ' .. done.outcome end
  if done.wrap ~= M.args.wrap_up_ms then
    differs[#differs + 1] = 'wrap_up_s was '
        .. (done.wrap and tostring(M.seconds(done.wrap)) or 'not given')
  end
  if #differs > 0 then return M.reply('complete_differs', table.concat(differs, '; ')) end
  return M.reply_ix(M.with_ewt(ix))
end
if ix.status ~= 'connected' or ix.agent ~= agent_id then return M.reply('not_connected') end
ix.done = {outcome = M.args.outcome, wrap = M.args.wrap_up_ms}
local q = M.queue(ix.queue)
local wrap_ms = M.args.wrap_up_ms or M.ms(q and q.wrap_up_s or 0)
local ag = M.load_ag(agent_id)
M.release(ag, ix, wrap_ms)
local policy = q and q.callback
if ix.cb and M.args.outcome == 'customer_no_answer' and policy
    and ix.attempts < policy.max_attempts then
  -- §3.10: back to its place, routable after retry_after_s.
  ix.status = 'callback'
  ix.agent = nil
  ix.no_answer_by = agent_id
  ix.cb_hold = M.now + M.ms(policy.retry_after_s)
  M.arm('cbr', ix.id, ix.cb_hold)
  redis.call('ZADD', M.keys.queue_waiting(ix.queue), M.int(ix.score), ix.m)
  M.emit('interaction.requeued', {interaction_id = id, agent_id = agent_id, queue = ix.queue,
                                  reason = 'customer_no_answer', attempts = ix.attempts})
  M.escalate(ix, false)  -- the accept stopped escalation; steps go on passing while it is held
elseif ix.cb and M.args.outcome == 'customer_no_answer' then
  M.incr('acd_callbacks_failed_total|' .. ix.queue)
  M.finish(ix, 'failed', 'interaction.failed', {agent_id = agent_id, attempts = ix.attempts})
else
  M.finish(ix, 'completed', 'interaction.completed',
           {agent_id = agent_id, outcome = M.args.outcome, handle_s = M.seconds_since(ix.answered)})
end
M.route_agent(ag, true)
return M.reply_ix(M.with_ewt(ix))
