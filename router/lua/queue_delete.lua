-- queue_delete: remove a queue that has nothing waiting, scheduled callbacks included.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, name}
-- Returns  {'ok'} | {'not_found'} | {'not_empty'}
local K = M.keys
M.apply_due(M.cfg.due_batch)
local name = M.args.name
if redis.call('HEXISTS', K.queues, name) == 0 then return M.reply('not_found') end
if redis.call('ZCARD', K.queue_waiting(name)) > 0
    or redis.call('SCARD', K.queue_scheduled(name)) > 0 then
  return M.reply('not_empty')
end
local q = M.queue(name)
for step = 0, #(q.steps or {}) do
  local cid = redis.call('HGET', K.classes, M.signature(q.channel, q.strategy,
                                                        M.step_skills(q, step)))
  if cid then redis.call('SREM', K.class_queues(cid), name) end
end
redis.call('HDEL', K.queues, name)
redis.call('DEL', K.queue_staffed(name))
return M.reply('ok')
