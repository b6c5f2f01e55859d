-- Timers: escalation (esc), max wait (mw), end of preferred wait (pw), offer expiry (off),
-- wrap-up end (wu), callback offer check, entry and retry (cbo, cbd, cbr), the next batch of a
-- routing class's fill (fill, id = class id). A timer is removed in the same script that applies
-- it, so any number of routers may tick at once: each timer is applied exactly once.

function M.expire_offer(ix)
  M.refuse(ix, M.load_ag(ix.agent), 'no_answer', 'expired')
end

function M.fire(member)
  local kind, id = string.match(member, '^(%a+):(.*)$')
  if kind == 'wu' then
    local ag = M.load_ag(id)
    if ag and ag.wrap_until and ag.wrap_until <= NOW then
      M.end_wrap_up(ag, ag.wrap_until)
      M.save_ag(ag)
      M.route_agent(ag)
    end
    return
  elseif kind == 'fill' then
    M.fill_class(tonumber(id), true)
    return
  end
  local ix = M.load_ix(id)
  if not ix then return end
  if kind == 'off' then
    if ix.status == 'offered' and ix.exp <= NOW then M.expire_offer(ix) end
  elseif kind == 'esc' then
    if M.in_order(ix) then M.escalate(ix, false) end
  elseif kind == 'mw' then
    if ix.status == 'queued' then
      M.finish(ix, 'timed_out', {})
    elseif ix.status == 'offered' then
      ix.mw_due = true          -- §3.9: the offer finishes first
      M.save_ix(ix)
    end
  elseif kind == 'cbo' then
    local ewt = 0
    if ix.status == 'queued' then
      ewt = M.ewt(ix.queue, ix.cls, redis.call('ZRANK', P .. 'qw:' .. ix.queue, ix.m) + 1)
    end
    M.consider_callback(ix, M.queue(ix.queue), ewt)
  elseif kind == 'cbd' then
    if ix.status == 'callback' and ix.cb_at then M.enter_scheduled_callback(ix) end
  elseif kind == 'cbr' then
    if ix.status == 'callback' and ix.cb_hold then M.end_callback_hold(ix) end
  elseif kind == 'pw' then
    if ix.pref_until and M.in_order(ix) then
      M.end_preferred_wait(ix)
    end
  end
end

-- Applies up to `limit` due timers in due order; returns how many and the largest lag (ms).
function M.apply_due(limit)
  local due = redis.call('ZRANGEBYSCORE', M.K_TIMERS, '-inf', NOW, 'WITHSCORES', 'LIMIT', 0, limit)
  local lag = 0
  local applied = 0
  for i = 1, #due, 2 do
    local score = M.take_due(due[i])
    if score then
      lag = math.max(lag, NOW - score)
      applied = applied + 1
      M.fire(due[i])
    end
  end
  return applied, lag
end

-- Removes the timer if it is still due, and returns its due time. Firing an earlier timer of a
-- batch may have cancelled or re-armed a later one, so the batch's own reading is not enough.
function M.take_due(member)
  local score = redis.call('ZSCORE', M.K_TIMERS, member)
  if not score or tonumber(score) > NOW then return nil end
  redis.call('ZREM', M.K_TIMERS, member)
  return tonumber(score)
end

-- Applies the due timers of the records an operation touches, however far behind the tick
-- loop is (e.g. an accept after the offer expired applies the expiry first).
function M.apply_due_of(members)
  local due = {}
  local scores = redis.call('ZMSCORE', M.K_TIMERS, unpack(members))
  for i, member in ipairs(members) do
    local s = scores[i]
    if s and tonumber(s) <= NOW then due[#due + 1] = {tonumber(s), member} end
  end
  table.sort(due, function(a, b) return a[1] < b[1] end)
  for _, d in ipairs(due) do
    if M.take_due(d[2]) then M.fire(d[2]) end
  end
end

function M.apply_due_of_interaction(id) M.apply_due_of(M.ix_timers(id)) end
