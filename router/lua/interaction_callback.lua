-- interaction_callback: the caller accepted the callback offered to it (§3.10). It leaves the
-- line (no max wait, not counted as waiting) and keeps its place; or, with `at`, it leaves the
-- order and enters the queue at `at` as an arrival then.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, id, at_ms?}
-- Returns  {'ok', interaction} (also when it is already a callback accepted with the same `at`:
--          a retry)
--          {'not_found'} | {'callback_differs'} (already accepted with another `at`)
--          {'no_callback'} (no callback was offered) | {'not_waiting'} (not queued: offered to
--          an agent, connected or ended) | {'bad_at'} (past, or beyond the policy's
--          max_schedule_ahead_s)
M.apply_due(M.cfg.due_batch)
local id, at = M.args.id, M.args.at_ms
M.apply_due_of_interaction(id)
local ix = M.load_ix(id)
if not ix then return M.reply('not_found') end
if ix.cb then  -- a retry answers the record; a different `at` is not one
  local accepted_at = ix.cb_req
  if accepted_at == nil then accepted_at = ix.cb_at end  -- accepted before `cb_req` was kept
  if accepted_at ~= at then return M.reply('callback_differs') end
  return M.reply_ix(M.with_ewt(ix))
end
local q = M.queue(ix.queue)
if not ix.cb_offered or not (q and q.callback) then return M.reply('no_callback') end
if ix.status ~= 'queued' then return M.reply('not_waiting') end
if at and (at <= M.now or at - M.now > M.ms_exact(q.callback.max_schedule_ahead_s)) then
  return M.reply('bad_at')
end
ix.cb = true
ix.cb_req = at
ix.status = 'callback'
redis.call('ZREM', M.keys.queue_on_line(ix.queue), ix.m)
M.disarm('mw', id)
M.disarm('cbo', id)
M.incr('acd_callbacks_accepted_total|' .. ix.queue)
if at then
  M.unplace(ix)
  redis.call('ZREM', M.keys.queue_waiting(ix.queue), ix.m)
  M.disarm('esc', id)
  M.hold_preferred_wait(ix)
  ix.cb_at = at
  ix.cb_hold = at
  M.arm('cbd', id, at)
  redis.call('SADD', M.keys.queue_scheduled(ix.queue), id)
  M.save_ix(ix)
  M.emit('callback.scheduled', {interaction_id = id, queue = ix.queue,
                                scheduled_at = M.seconds(at)})
else
  M.save_ix(ix)
  M.emit('callback.accepted', {interaction_id = id, queue = ix.queue})
end
return M.reply_ix(M.with_ewt(ix))
