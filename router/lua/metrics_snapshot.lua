-- metrics_snapshot: the one snapshot of time-dependent figures that every router exports, so
-- that all export the same values: recomputed when older than `max_age_ms`, else returned (also
-- when another router's clock made it a little ahead of this one's). It holds the agents' time
-- by activity and their counts by state and activity as they were at `at`: the time an activity
-- has counted so far is computed from both at `at`, so that it never goes back (an agent entering
-- an activity after `at` would subtract its start from a total computed at `at`).
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, max_age_ms}
-- Returns  {'ok', {at, queues = {name = figures}, agent_time = {field = value},
--          agents = {field = value}}}
local key = M.keys.metrics_snapshot
local raw = redis.call('GET', key)
if raw then
  local snapshot = cmsgpack.unpack(raw)
  if M.now - snapshot.at < M.args.max_age_ms and snapshot.agent_time then
    return M.reply('ok', snapshot)
  end
end
local queues = {}
for _, name in ipairs(redis.call('HKEYS', M.keys.queues)) do
  queues[name] = M.queue_figures(M.queue(name))
end
local function hash(k)
  local flat, map = redis.call('HGETALL', k), {}
  for i = 1, #flat, 2 do map[flat[i]] = flat[i + 1] end
  return map
end
local snapshot = {at = M.now, queues = queues, agent_time = hash(M.keys.agent_time),
                  agents = hash(M.keys.agents_by_state)}
redis.call('SET', key, cmsgpack.pack(snapshot))
return M.reply('ok', snapshot)
