-- interaction_callback: the caller accepted the callback offered to it (§3.10). It leaves the
-- line (no max wait, not counted as waiting) and keeps its place; or, with `at`, it leaves the
-- order and enters the queue at `at` as an arrival then.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, id, at_ms?}
-- Returns  {'ok', interaction} (also when it is already a callback: a retry)
--          {'not_found'} | {'no_callback'} (no callback was offered) | {'not_waiting'} (not
--          queued: offered to an agent, connected or ended) | {'bad_at'} (past, or beyond the
--          policy's max_schedule_ahead_s)
M.apply_due(M.cfg.due_batch)
local id, at = M.args.id, M.args.at_ms
M.apply_due_of_interaction(id)
local ix = M.load_ix(id)
if not ix then return M.reply('not_found') end
if ix.cb then return M.reply_ix(ix) end
local q = M.queue(ix.queue)
if not ix.cb_offered or not (q and q.callback) then return M.reply('no_callback') end
if ix.status ~= 'queued' then return M.reply('not_waiting') end
if at and (at <= M.now or at - M.now > M.ms_exact(q.callback.max_schedule_ahead_s)) then
  return M.reply('bad_at')
end
ix.cb = true
ix.status = 'callback'
redis.call('ZREM', M.keys.queue_on_line(ix.queue), ix.m)
M.disarm('mw', id)
M.disarm('cbo', id)
M.incr('acd_callbacks_accepted_total|' .. ix.queue)
if at then
  M.unplace(ix)
  redis.call('ZREM', M.keys.queue_waiting(ix.queue), ix.m)
  M.disarm('esc', id)
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
return M.reply_ix(ix)
