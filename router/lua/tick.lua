-- tick: apply due timers (escalations, offer expiries, wrap-up ends, max waits, ends of
-- preferred waits, the next batch of a routing class's fill), and recompute the EWT's
-- competition between classes when older than cfg.ewt_refresh_ms. Safe to call from every
-- router at once: each timer is applied once.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, limit}
-- Returns  {'ok', {applied, lag_ms, next_due_ms | false}}
local applied, lag = M.apply_due(M.args.limit)
M.refresh_competition()
local nxt = redis.call('ZRANGE', M.keys.timers, '0', '0', 'WITHSCORES')
return M.reply('ok', {applied, lag, nxt[2] and tonumber(nxt[2]) or false})
