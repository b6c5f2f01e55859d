-- Business metrics (§6), kept with the state and changed by the same scripts as what they count,
-- so every router exports the same values and a restart loses nothing. Their keys and fields
-- (router/store/records.py): counters (M.keys.metric_counters), histograms
-- (metric_histograms), a queue's figures of one minute (metrics_window: the 15-minute service
-- level, Erlang C inputs; expires after 20 minutes), agent time by activity (agent_time), agents
-- by state and activity (agents_by_state) and a queue's recent times for the EWT
-- (queue_averages).

local K = M.keys
local WAIT_BUCKETS, HANDLE_BUCKETS, EWT_ERROR_BUCKETS
local averages                          -- queue -> its recent times, read once per call

M.on_call(function()
  -- Bucket bounds come from router/domain/stats.py (BUCKETS) with every call.
  WAIT_BUCKETS = M.cfg.buckets.acd_wait_seconds
  HANDLE_BUCKETS = M.cfg.buckets.acd_handle_seconds
  EWT_ERROR_BUCKETS = M.cfg.buckets.acd_ewt_error_seconds
  averages = {}
end)
local WINDOW_TTL_TEXT = '1200'        -- seconds
local EMA = 0.1                         -- weight of the newest sample in the EWT averages

function M.incr(field, by)
  redis.call('HINCRBY', K.metric_counters, field, by and M.int(by) or '1')
end

-- Seconds as whole ms, the text of an HINCRBY: sums of times are kept in integer ms, since
-- HINCRBYFLOAT (long doubles parsed and printed) costs several times an HINCRBY. Nil beyond
-- what an integer holds exactly (2^53 ms), and for NaN.
local function ms_text(seconds)
  local ms = math.floor(seconds * 1000 + 0.5)
  if ms > -2^53 and ms < 2^53 then return string.format('%d', ms) end
  return nil
end

-- One observation; the le field is the first bucket bound >= value ('+Inf' above all).
-- `extra` adds a bound (the queue's SLA threshold) to the standard ones. The count is the sum
-- of the buckets (router/metrics/business.py); the sum is kept in whole ms (`sum_ms`), a finite
-- value too large for them in seconds (`sum`, the field of earlier versions), so that no value
-- fails the operation it is counted in.
function M.observe(series, value, buckets, extra)
  local le = '+Inf'
  local best
  for _, b in ipairs(buckets) do
    if value <= b and (best == nil or b < best) then best = b end
  end
  if extra and value <= extra and (best == nil or extra < best) then best = extra end
  if best then le = tostring(best) end
  redis.call('HINCRBY', K.metric_histograms, series .. '|' .. le, '1')
  local ms = ms_text(value)
  if ms then
    redis.call('HINCRBY', K.metric_histograms, series .. '|sum_ms', ms)
  elseif value > -math.huge and value < math.huge then
    redis.call('HINCRBYFLOAT', K.metric_histograms, series .. '|sum', value)
  end
end

-- Adds `by` (an integer's text; default one) to a field of the queue's window of this minute.
-- Its expiry is set by its first write (kept in the namespace's memo for the minute,
-- M.namespace_memo), so it expires WINDOW_TTL_TEXT seconds after its minute began.
function M.window(queue, field, by)
  local minute = math.floor(M.now / 60000)
  local key = K.metrics_window(queue, minute)
  redis.call('HINCRBY', key, field, by or '1')
  local memo = M.namespace_memo()
  if memo.windows.minute ~= minute then memo.windows = {minute = minute} end
  if not memo.windows[key] then
    redis.call('EXPIRE', key, WINDOW_TTL_TEXT)
    memo.windows[key] = true
  end
end

local function threshold(queue)
  local q = M.queue(queue)
  return q and q.sla and q.sla.threshold_s or 20
end

function M.count_arrival(queue, blocked)
  M.incr('acd_interactions_arrived_total|' .. queue)
  M.window(queue, 'arrived')
  if blocked then M.incr('acd_interactions_blocked_total|' .. queue) end
end

function M.count_offer(queue, result)
  M.incr('acd_offers_total|' .. queue .. '|' .. result)
end

-- An interaction answered (first accept) or abandoned after `wait_s` of waiting.
function M.count_wait_end(ix, outcome, wait_s)
  local t = threshold(ix.queue)
  local within = wait_s <= t
  M.incr('acd_interactions_' .. outcome .. '_total|' .. ix.queue)
  M.window(ix.queue, outcome)
  if within then
    M.incr('acd_interactions_' .. outcome .. '_within_sla_total|' .. ix.queue)
    M.window(ix.queue, outcome .. '_sla')
  end
  M.observe('acd_wait_seconds|' .. ix.queue .. '|' .. outcome, wait_s, WAIT_BUCKETS, t)
  if outcome == 'answered' and ix.ewt0 then
    M.observe('acd_ewt_error_seconds|' .. ix.queue, math.abs(ix.ewt0 - wait_s),
              EWT_ERROR_BUCKETS)
  end
end

-- Handle time, connected -> end of wrap-up, in the queue that answered it; `recent` (optional)
-- holds other recent times of the queue to average in with it (lib/agents.lua, M.release).
function M.count_handle(queue, handle_s, recent)
  M.observe('acd_handle_seconds|' .. queue, handle_s, HANDLE_BUCKETS)
  M.window(queue, 'handle_ms', ms_text(handle_s) or '0')  -- a handle time is whole ms
  M.window(queue, 'handle_n')
  recent = recent or {}
  recent.aht = handle_s
  M.emas(queue, recent)
end

-- The offer was accepted: its ring time, offer -> accept, for the queue's recent ring time.
function M.count_ring(ix)
  if ix.offered then
    M.emas(ix.queue, {ring = M.seconds_since(ix.offered)})
  end
end

-- The queue's recent times (QueueAverages: talk, wrap, ring, aht; nil until measured), read
-- once per call and kept up to date by M.emas. Callers must not change it.
function M.averages(queue)
  local a = averages[queue]
  if not a then
    local v = redis.call('HMGET', K.queue_averages(queue), 'talk', 'wrap', 'ring', 'aht')
    a = {talk = tonumber(v[1] or ''), wrap = tonumber(v[2] or ''), ring = tonumber(v[3] or ''),
         aht = tonumber(v[4] or '')}
    averages[queue] = a
  end
  return a
end

-- Moving averages (EMA) of the queue's recent times: `values` maps each field to its newest
-- sample. One read per call and one write, whatever the number of fields.
function M.emas(queue, values)
  local recent = M.averages(queue)
  local out = {}
  for _, field in ipairs(M.sorted_keys(values)) do
    local value, prev = values[field], recent[field]
    if prev then value = prev + EMA * (value - prev) end
    recent[field] = value
    out[#out + 1] = field
    out[#out + 1] = value
  end
  redis.call('HSET', K.queue_averages(queue), unpack(out))
end

-- The activity whose time an agent in `state` and `activity` counts: idle only while available
-- (§6 occupancy), the others while logged in; nil for none.
local function counted_activity(state, activity)
  if state == 'logged_out' or (activity == 'idle' and state ~= 'available') then return nil end
  return activity
end

-- Agent time by activity, and agents by state and activity: called whenever an agent record is
-- saved. How many agents an activity's time counts follows from agents by state and activity
-- (M.agent_seconds).
function M.account_agent(ag)
  local activity = M.activity(ag)
  local counted = counted_activity(ag.state, activity)
  local by = ag.state .. '|' .. activity
  if ag.m_by ~= by then
    if ag.m_by then redis.call('HINCRBY', K.agents_by_state, ag.m_by, '-1') end
    redis.call('HINCRBY', K.agents_by_state, by, '1')
    ag.m_by = by
  end
  -- A wrap-up ended by a late tick switches at its scheduled end, not at the tick.
  local at = ag.switch_at or M.now
  ag.switch_at = nil
  if ag.m_act ~= counted then
    if ag.m_act then
      redis.call('HINCRBY', K.agent_time, 'total_ms|' .. ag.m_act, M.int(at - ag.m_since))
      redis.call('HINCRBY', K.agent_time, 'since|' .. ag.m_act, M.int(-ag.m_since))
    end
    if counted then redis.call('HINCRBY', K.agent_time, 'since|' .. counted, M.int(at)) end
    ag.m_act = counted
    ag.m_since = at
  end
end

local ACTIVITIES = {'idle', 'offered', 'busy', 'wrap_up'}

-- Agent-seconds by activity until now: the closed intervals (whole ms, and the seconds of the
-- `total` fields of earlier versions) and the open ones (agents in it x now - their starts),
-- never below `floor` (the previous snapshot's): a wrap-up ended by a late tick is dated back
-- to its scheduled end, which would take back time already exported.
function M.agent_seconds(floor)
  local times = M.pairs_table(redis.call('HGETALL', K.agent_time))
  local counts = {}
  for field, n in pairs(M.pairs_table(redis.call('HGETALL', K.agents_by_state))) do
    local state, activity = string.match(field, '^([^|]*)|(.*)$')
    local counted = counted_activity(state, activity)
    if counted then counts[counted] = (counts[counted] or 0) + tonumber(n) end
  end
  local function field(name, a) return tonumber(times[name .. '|' .. a] or 0) end
  local seconds = {}
  for _, a in ipairs(ACTIVITIES) do
    local closed = field('total', a) + field('total_ms', a) / 1000
    local open = math.max(0, (counts[a] or 0) * M.now - field('since', a)) / 1000
    seconds[a] = math.max(closed + open, floor and floor[a] or 0)
  end
  return seconds
end

-- Live figures of a queue (§4 stats, §6 gauges) and its last 15 minutes.
-- `handle_sum` (seconds) is what versions before `handle_ms` wrote, in windows still current.
local WINDOW_FIELDS = {'arrived', 'answered', 'answered_sla', 'abandoned', 'abandoned_sla',
                       'handle_sum', 'handle_n', 'handle_ms'}
function M.queue_figures(q)
  local on_line = redis.call('ZCARD', K.queue_on_line(q.name))
  local waiting = redis.call('ZCARD', K.queue_waiting(q.name))
  local head = redis.call('ZRANGE', K.queue_on_line(q.name), 0, 0, 'WITHSCORES')
  local pools = {}
  for step = 0, #(q.steps or {}) do
    local cid = redis.call('HGET', K.classes, M.signature(q.channel, q.strategy,
                                                          M.step_skills(q, step)))
    if cid then pools[#pools + 1] = K.class_agents(cid) end
  end
  local available = 0
  if #pools > 0 then
    available = #redis.call('ZUNION', #pools, unpack(pools))
  end
  local base = redis.call('HGET', K.classes, M.signature(q.channel, q.strategy, q.skills))
  local window = {}
  for _, f in ipairs(WINDOW_FIELDS) do window[f] = 0 end
  local minute = math.floor(M.now / 60000)
  for m = minute - 14, minute do
    local values = redis.call('HMGET', K.metrics_window(q.name, m), unpack(WINDOW_FIELDS))
    for i, f in ipairs(WINDOW_FIELDS) do window[f] = window[f] + (tonumber(values[i]) or 0) end
  end
  window.handle_sum = window.handle_sum + window.handle_ms / 1000
  window.handle_ms = nil
  return {
    waiting = on_line,
    callbacks_waiting = waiting - on_line,
    oldest_wait_s = head[2] and math.max(0, M.seconds_since(tonumber(head[2]))) or 0,
    ewt_s = M.arrival_ewt(q, base and tonumber(base)),
    agents_available = available,
    agents_staffed = redis.call('SCARD', K.queue_staffed(q.name)),
    aht_s = M.averages(q.name).aht,
    window = window,
  }
end
