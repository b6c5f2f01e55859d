-- metrics_snapshot: the one snapshot of time-dependent figures that every router exports, so
-- that all export the same values: recomputed when older than `max_age_ms`, else returned.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, max_age_ms}
-- Returns  {'ok', {at, queues = {name = figures}}}
--@include base
--@include agents
--@include routing
--@include timers
--@include metrics
local key = P .. 'm:snap'
local raw = redis.call('GET', key)
if raw then
  local snapshot = cmsgpack.unpack(raw)
  if snapshot.at <= NOW and NOW - snapshot.at < M.args.max_age_ms then
    return M.reply('ok', snapshot)
  end
end
local queues = {}
for _, name in ipairs(redis.call('HKEYS', M.K_QUEUES)) do
  queues[name] = M.queue_figures(M.queue(name))
end
local snapshot = {at = NOW, queues = queues}
redis.call('SET', key, cmsgpack.pack(snapshot))
return M.reply('ok', snapshot)
