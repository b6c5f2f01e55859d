-- metrics_snapshot: the one snapshot of time-dependent figures that every router exports, so
-- that all export the same values: recomputed when older than `max_age_ms`, else returned (also
-- when another router's clock made it less than `max_age_ms` ahead of this one's). Agent time by
-- activity (M.agent_seconds) is computed here, from the agents' times and counts at `at`, and
-- never below the previous snapshot's: a counter that does not go back.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, max_age_ms}
-- Returns  {'ok', {at, queues = {name = figures}, agent_seconds = {activity = seconds}}}
local key = M.keys.metrics_snapshot
local raw = redis.call('GET', key)
local previous
if raw then
  previous = cmsgpack.unpack(raw)
  if math.abs(M.now - previous.at) < M.args.max_age_ms and previous.agent_seconds then
    return M.reply('ok', previous)
  end
end
local queues = {}
for _, name in ipairs(redis.call('HKEYS', M.keys.queues)) do
  queues[name] = M.queue_figures(M.queue(name))
end
local snapshot = {at = M.now, queues = queues,
                  agent_seconds = M.agent_seconds(previous and previous.agent_seconds)}
redis.call('SET', key, cmsgpack.pack(snapshot))
return M.reply('ok', snapshot)
