-- metrics_snapshot: the one snapshot of time-dependent figures that every router exports, so
-- that all export the same values: recomputed when older than `max_age_ms`, else returned.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, max_age_ms}
-- Returns  {'ok', {at, queues = {name = figures}}}
local key = M.keys.metrics_snapshot
local raw = redis.call('GET', key)
if raw then
  local snapshot = cmsgpack.unpack(raw)
  if snapshot.at <= M.now and M.now - snapshot.at < M.args.max_age_ms then
    return M.reply('ok', snapshot)
  end
end
local queues = {}
for _, name in ipairs(redis.call('HKEYS', M.keys.queues)) do
  queues[name] = M.queue_figures(M.queue(name))
end
local snapshot = {at = M.now, queues = queues}
redis.call('SET', key, cmsgpack.pack(snapshot))
return M.reply('ok', snapshot)
