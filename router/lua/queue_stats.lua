-- queue_stats: live figures of queues (read only): waiting, callbacks waiting, oldest wait,
-- EWT of the next arrival, agents available and staffed, and the last 15 minutes' counts.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, names = {queue...} (empty: every queue)}
-- Returns  {'ok', {name = figures, ...}}
local names = M.args.names
if #names == 0 then names = redis.call('HKEYS', M.keys.queues) end
local out = {}
for _, name in ipairs(names) do
  local q = M.queue(name)
  if q then out[name] = M.queue_figures(q) end
end
return M.reply('ok', out)
