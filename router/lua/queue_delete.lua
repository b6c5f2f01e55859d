-- queue_delete: remove a queue that has nothing waiting, scheduled callbacks included.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, name}
-- Returns  {'ok'} | {'not_found'} | {'not_empty'}
--@include base
--@include agents
--@include routing
--@include timers
--@include metrics
M.apply_due(CFG.due_batch)
local name = M.args.name
if redis.call('HEXISTS', M.K_QUEUES, name) == 0 then return M.reply('not_found') end
if redis.call('ZCARD', P .. 'qw:' .. name) > 0
    or redis.call('SCARD', P .. 'qcb:' .. name) > 0 then
  return M.reply('not_empty')
end
local q = M.queue(name)
for step = 0, #(q.steps or {}) do
  local cid = redis.call('HGET', M.K_CLASSES, M.signature(q.channel, q.strategy,
                                                          M.step_skills(q, step)))
  if cid then redis.call('SREM', P .. 'clsq:' .. cid, name) end
end
redis.call('HDEL', M.K_QUEUES, name)
redis.call('DEL', P .. 'qst:' .. name)
return M.reply('ok')
