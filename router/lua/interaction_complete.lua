-- interaction_complete: the agent finished the interaction; wrap-up follows (§3.8).
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, id, agent_id, outcome, wrap_up_ms?}
-- A callback completed with outcome customer_no_answer waits again in its place, routable after
-- the policy's retry_after_s, until max_attempts dial attempts: then it is `failed` (§3.10).
-- Returns  {'ok', interaction} (also when already completed by that agent, or already put back
--          or failed by that agent's customer_no_answer: a retry)
--          {'not_found'} | {'not_connected'}
M.apply_due(M.cfg.due_batch)
local id, agent_id = M.args.id, M.args.agent_id
local ix = M.load_ix(id)
if not ix then return M.reply('not_found') end
if ix.status == 'completed' and ix.agent == agent_id then return M.reply_ix(M.with_ewt(ix)) end
if M.args.outcome == 'customer_no_answer'
    and ((ix.status == 'callback' and ix.no_answer_by == agent_id)
         or (ix.status == 'failed' and ix.agent == agent_id)) then
  return M.reply_ix(M.with_ewt(ix))
end
if ix.status ~= 'connected' or ix.agent ~= agent_id then return M.reply('not_connected') end
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
