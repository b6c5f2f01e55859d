-- Timers: one sorted set (M.keys.timers), member '<kind>:<id>', score = due ms. Re-arming
-- overwrites, so a record has at most one timer of each kind and a cancelled timer is simply
-- gone. A timer is removed in the same script that applies it, so any number of routers may
-- tick at once: each timer is applied exactly once. M.TIMERS declares every kind.

local K = M.keys

-- What each kind does when due, given its record.

local function escalation_due(ix)
  if M.in_order(ix) then M.escalate(ix, false) end
end

-- One being offered finishes its offer first (§3.9): M.requeue looks at the limit then.
local function max_wait_due(ix)
  if ix.status == 'queued' then M.finish(ix, 'timed_out', 'interaction.timed_out', {}) end
end

local function preferred_wait_due(ix)
  if ix.pref_until and M.in_order(ix) then M.end_preferred_wait(ix) end
end

local function offer_due(ix)
  if ix.status == 'offered' and ix.exp <= M.now then M.expire_offer(ix) end
end

local function callback_check_due(ix)
  local ewt = 0
  if ix.status == 'queued' then ewt = M.interaction_ewt(ix) end
  M.consider_callback(ix, M.queue(ix.queue), ewt)
end

local function scheduled_callback_due(ix)
  if ix.status == 'callback' and ix.cb_at then M.enter_scheduled_callback(ix) end
end

local function callback_retry_due(ix)
  if ix.status == 'callback' and ix.cb_hold then M.end_callback_hold(ix) end
end

local function wrap_up_due(ag)
  if ag.wrap_until and ag.wrap_until <= M.now then
    M.end_wrap_up(ag, ag.wrap_until)
    M.save_ag(ag)
    M.route_agent(ag)
  end
end

local function fill_due(cid) M.fill_class(cid, true) end

-- Every kind of timer, one a line: the kind, the record its id names, the handler. The timers
-- of a record (M.disarm_ix, M.apply_due_of_interaction, M.apply_due_of_agent) follow from it,
-- and so do the invariant checker's expectations (router/store/timers.py reads the kind and
-- record of each line). An interaction's timers due at the same ms are applied in this order.
M.TIMERS = {
  {'esc',  'interaction', escalation_due},          -- the next escalation step (§3.1)
  {'mw',   'interaction', max_wait_due},            -- max wait (§3.9)
  {'pw',   'interaction', preferred_wait_due},      -- the end of a preferred wait (§3.7)
  {'off',  'interaction', offer_due},               -- an offer's expiry (§3.5)
  {'cbo',  'interaction', callback_check_due},      -- look at the EWT again for a callback offer
  {'cbd',  'interaction', scheduled_callback_due},  -- a scheduled callback enters (§3.10)
  {'cbr',  'interaction', callback_retry_due},      -- a callback's retry wait ends (§3.10)
  {'wu',   'agent',       wrap_up_due},             -- the end of wrap-up (§3.8)
  {'fill', 'class',       fill_due},                -- the next batch of a class's fill
}

-- How a record is loaded from the id in a timer's member (nil: gone, the timer does nothing);
-- lib/records.lua is loaded before this file.
local LOAD = {
  interaction = M.load_ix,
  agent = M.load_ag,
  class = function(id) return tonumber(id) end,
}

local BY_KIND = {}
local KINDS_OF = {interaction = {}, agent = {}, class = {}}  -- record -> its kinds, in order
for i = 1, #M.TIMERS do              -- (no ipairs while the library loads)
  local kind, record, handler = M.TIMERS[i][1], M.TIMERS[i][2], M.TIMERS[i][3]
  BY_KIND[kind] = {load = LOAD[record], handler = handler}
  KINDS_OF[record][#KINDS_OF[record] + 1] = kind
end

function M.arm(kind, id, due) redis.call('ZADD', K.timers, M.int(due), kind .. ':' .. id) end
function M.disarm(kind, id) redis.call('ZREM', K.timers, kind .. ':' .. id) end

-- The timer members a record may have: `<kind>:<id>` for each kind of its record.
local function members_of(record, id)
  local members = {}
  for i, kind in ipairs(KINDS_OF[record]) do members[i] = kind .. ':' .. id end
  return members
end

-- Cancels every timer of the interaction, in one command.
function M.disarm_ix(id) redis.call('ZREM', K.timers, unpack(members_of('interaction', id))) end

function M.fire(member)
  local kind, id = string.match(member, '^(%a+):(.*)$')
  local timer = BY_KIND[kind]
  if not timer then return end
  local record = timer.load(id)
  if record then timer.handler(record) end
end

-- Applies up to `limit` due timers in due order; returns how many and the largest lag (ms).
function M.apply_due(limit)
  local due = redis.call('ZRANGEBYSCORE', K.timers, '-inf', M.now_text, 'WITHSCORES',
                         'LIMIT', '0', M.int(limit))
  local lag = 0
  local applied = 0
  for i = 1, #due, 2 do
    local score = M.take_due(due[i])
    if score then
      lag = math.max(lag, M.now - score)
      applied = applied + 1
      M.fire(due[i])
    end
  end
  return applied, lag
end

-- Removes the timer if it is still due, and returns its due time. Firing an earlier timer of a
-- batch may have cancelled or re-armed a later one, so the batch's own reading is not enough.
function M.take_due(member)
  local score = redis.call('ZSCORE', K.timers, member)
  if not score or tonumber(score) > M.now then return nil end
  redis.call('ZREM', K.timers, member)
  return tonumber(score)
end

-- Applies the due timers of the records an operation touches, however far behind the tick
-- loop is (e.g. an accept after the offer expired applies the expiry first).
function M.apply_due_of(members)
  local due = {}
  local scores = redis.call('ZMSCORE', K.timers, unpack(members))
  for i, member in ipairs(members) do
    local s = scores[i]
    if s and tonumber(s) <= M.now then due[#due + 1] = {tonumber(s), member} end
  end
  table.sort(due, function(a, b) return a[1] < b[1] end)
  for _, d in ipairs(due) do
    if M.take_due(d[2]) then M.fire(d[2]) end
  end
end

function M.apply_due_of_interaction(id) M.apply_due_of(members_of('interaction', id)) end
function M.apply_due_of_agent(id) M.apply_due_of(members_of('agent', id)) end
