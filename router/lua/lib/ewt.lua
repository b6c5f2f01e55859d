-- The estimated wait (§3.11), the formula of docs/metrics.md: an interaction waits for the
-- departures (candidate agents becoming free) that the interactions ahead of it take, then its
-- own, then its offer rings.
--
-- Per estimate, O(log n) and independent of the number of agents: its rank in its class
-- (ZRANK), the candidates (SCARD), the first known wrap-up ends of the candidates (`clswu:`,
-- kept by lib/agents.lua), the queue's recent times (`qs:`), the share of logged-in agents that
-- are available (`m:ag`), and the interactions ahead of it in the few classes that compete for
-- its candidates (`m:ewt`, one ZCOUNT each). What crosses classes (which classes share agents,
-- and how much) is recomputed by `tick` at most every cfg.ewt_refresh_ms
-- (M.refresh_competition), never by a routing decision.

local K = M.keys
local AGENT_NOISE = 1e-6                -- agents on a call below this are none (float noise)

local DEFAULT_TALK_S = 180      -- talk time until the queue has one
local MEDIAN_EARLY = 1 / 3      -- the median of the k-th of a run of departures: ~k - 1/3 of them
local WRAP_ENDS_READ = 32       -- known wrap-up ends an estimate reads
local COMPETITORS_KEPT = 8      -- competing classes kept per class
local WAITING_CLASSES = 16      -- classes with the most waiting looked at per refresh
local SAMPLED = 256             -- agents sampled per refresh, shared by those classes...
local SAMPLE_MAX = 64           -- ...at most this many of each
local MIN_WEIGHT = 0.01         -- lighter competitors are left out

-- Seconds: the queue's recent talk time, wrap-up, ring time and handle time (lib/metrics.lua,
-- QueueAverages); the queue's configured wrap-up until one was measured.
local function recent_times(q)
  local a = M.averages(q.name)
  return a.talk or DEFAULT_TALK_S, a.wrap or q.wrap_up_s, a.ring or 0, a.aht
end

-- The EWT of an interaction with a free candidate: the queue's recent ring time.
function M.ring_estimate(q) return M.averages(q.name).ring or 0 end

-- The share of logged-in agents whose state is `available` (the rest are not ready).
local function available_share()
  local pairs_ = redis.call('HGETALL', K.agents_by_state)
  local available, logged_in = 0, 0
  for i = 1, #pairs_, 2 do
    local state = string.match(pairs_[i], '^([^|]+)|')
    local n = tonumber(pairs_[i + 1])
    if state ~= 'logged_out' then logged_in = logged_in + n end
    if state == 'available' then available = available + n end
  end
  if logged_in == 0 then return 1 end
  return available / logged_in
end

-- A score as an exclusive ZCOUNT bound: exact digits (scores pass 2^42, beyond `..`'s 14).
local function before(score) return string.format('(%.17g', score) end

-- Departures the interactions of other classes ahead of `score` take from the class's
-- candidates: each counts its weight (M.refresh_competition).
local function competing_ahead(cid, score)
  local raw = redis.call('HGET', K.competition, cid)
  if not raw then return 0 end
  local list, ahead = cmsgpack.unpack(raw), 0
  for i = 1, #list, 2 do
    local n = redis.call('ZCOUNT', K.class_waiting(list[i]), '-inf', before(score))
    ahead = ahead + n * list[i + 1]
  end
  return ahead
end

-- The earliest t >= 0 (seconds from now) with  known(t) + rate * max(0, t - shift) >= target,
-- where known(t) counts the `ends` (sorted, seconds from now) at or before t; nil when never.
local function departure_time(target, ends, rate, shift)
  local known, from = 0, 0
  for i = 1, #ends + 1 do
    if known >= target then return from end
    local nxt = ends[i]
    if rate > 0 then
      local t = math.max(from, shift + (target - known) / rate)
      if nxt == nil or t <= nxt then return t end
    elseif nxt == nil then
      return nil
    end
    known, from = known + 1, nxt
  end
end

-- With nobody staffed, or nobody who could become free (no candidate `available`: all on a
-- break or otherwise not ready): the oldest wait on the line, but at least one handle time.
local function unserved_estimate(q, talk, wrap, aht)
  local head = redis.call('ZRANGE', K.queue_on_line(q.name), 0, 0, 'WITHSCORES')
  local oldest = head[2] and M.seconds_since(tonumber(head[2])) or 0
  return math.max(aht or (talk + wrap), oldest)
end

-- The wait (seconds) of an interaction with `own_ahead` routable interactions of its class
-- ahead of it, order score `score`, in class `cid` of queue `q`, until an offer is accepted.
local function wait_estimate(q, cid, score, own_ahead)
  M.namespace_memo()  -- the classes' sets are whole (lib/classes.lua)
  local talk, wrap, ring, aht = recent_times(q)
  local staffed = cid and redis.call('SCARD', K.class_staffed(cid)) or 0
  -- A class still being filled (M.fill_class) counts its share of the agents scanned so far.
  local scale = 1
  local scanned = cid and M.fill_scanned(cid)
  if scanned and scanned > 0 then
    scale = math.max(1, redis.call('SCARD', K.logged_in) / scanned)
  end
  if staffed > 0 and redis.call('SCARD', K.class_available(cid)) > 0 then
    local k = own_ahead + 1 + competing_ahead(cid, score)
    local index = K.class_wrap_up(cid)
    local found = redis.call('ZRANGE', index, 0, WRAP_ENDS_READ - 1, 'WITHSCORES')
    local ends = {}
    for i = 2, #found, 2 do ends[#ends + 1] = math.max(0, M.seconds(found[i] - M.now)) end
    -- Wrap-up ends not read are left to the flow of departures of the agents on a call. Float
    -- noise (25 * 7/25 - 7 = 8.9e-16) is no agent: it would estimate a wait of 10^15 s.
    local on_calls = staffed * scale * available_share() - #ends
    if on_calls < AGENT_NOISE then on_calls = 0 end
    local t = departure_time(k - MEDIAN_EARLY, ends, on_calls / talk, wrap)
    if t then return ring + t end
  end
  return unserved_estimate(q, talk, wrap, aht)
end

-- An estimate `ewt` (seconds) of an interaction of queue `q` with extra skills `extra`, waiting
-- `waited_ms` at step `step` with order score `score`, bounded by its later steps: the first
-- whose class has more agents free now than the queue has interactions ahead of it (they reach
-- that step first) takes it when that step comes, after its ring time. O(later steps), each a
-- lookup and a ZCARD, only while the estimate is longer than the wait for that step.
local function bounded_by_steps(ewt, q, extra, step, waited_ms, score)
  local steps = q.steps or {}
  local ahead
  for j = step + 1, #steps do
    local until_s = math.max(0, M.seconds(M.ms_exact(steps[j].after_s) - waited_ms))
    if until_s >= ewt then return ewt end
    local cid = M.class_id(M.signature(q.channel, q.strategy, M.merge(steps[j].skills, extra)))
    ahead = ahead or redis.call('ZCOUNT', K.queue_waiting(q.name), '-inf', before(score))
    if cid and redis.call('ZCARD', K.class_agents(cid)) > ahead then
      return math.min(ewt, until_s + M.ring_estimate(q))
    end
  end
  return ewt
end

-- The EWT of an interaction now (seconds); nil when it does not wait (connected, ended, a
-- callback scheduled later). An arrival with a free candidate (M.enqueue) is offered at once:
-- its EWT is M.ring_estimate.
function M.interaction_ewt(ix)
  local q = M.queue(ix.queue)
  if not q then return nil end
  if ix.status == 'offered' then
    return math.max(0, M.ring_estimate(q) - M.seconds_since(ix.offered or M.now))
  end
  if not M.in_order(ix) then return nil end
  local rank = M.routable(ix) and not ix.pref_until
      and redis.call('ZRANK', K.class_waiting(ix.cls), ix.m)
  if not rank then
    rank = redis.call('ZCOUNT', K.class_waiting(ix.cls), '-inf', before(ix.score))
  end
  local ewt = wait_estimate(q, ix.cls, ix.score, rank)
  return bounded_by_steps(ewt, q, ix.skills, ix.step, M.now - ix.enq, ix.score)
end

-- A waiting interaction (queued, offered, or a callback in its place) with its position and
-- EWT, as GET shows it (§4).
function M.with_ewt(ix)
  if ix.m and M.in_order(ix) then
    local rank = redis.call('ZRANK', K.queue_waiting(ix.queue), ix.m)
    if rank then
      ix.position = rank + 1
      ix.ewt = M.interaction_ewt(ix)
    end
  end
  return ix
end

-- The EWT of an arrival in the queue now (its default priority and credit, no extra skills):
-- the queue's figure (§4 stats, acd_queue_ewt_seconds).
function M.arrival_ewt(q, cid)
  if cid and redis.call('ZCARD', K.class_agents(cid)) > 0 then return M.ring_estimate(q) end
  local score = M.order_score(q.priority, M.now - M.ms(q.credit_s))
  -- After the interactions of the same score: they arrived earlier.
  local ahead = cid and redis.call('ZCOUNT', K.class_waiting(cid), '-inf',
                                   string.format('%.17g', score)) or 0
  -- After the interactions of the same score (string.format: as `ahead` above).
  return bounded_by_steps(wait_estimate(q, cid, score, ahead), q, {}, 0, 0, score + 1)
end

-- Recomputes the competition hash (`m:ewt`, records.py COMPETITION_AT) when older than
-- cfg.ewt_refresh_ms: for the classes with the most interactions waiting, a sample of their
-- agents and the classes those agents qualify for give, for every class R sharing agents with a
-- waiting class c, the weight of an interaction waiting in c ahead of one of R:
-- |S(R) ∩ S(c)|² / (|S(R)| · |S(c)|): the chance that it takes one of R's candidates times
-- the share of R's candidates it can take. O(classes + SAMPLED), from `tick` only.
function M.refresh_competition()
  local at = tonumber(redis.call('HGET', K.competition, 'at') or '')
  if at and at <= M.now and M.now - at < M.cfg.ewt_refresh_ms then return end
  local waiting = {}
  for _, cid in ipairs(redis.call('HVALS', K.classes)) do
    local n = redis.call('ZCARD', K.class_waiting(cid))
    if n > 0 then waiting[#waiting + 1] = {cid = tonumber(cid), n = n} end
  end
  table.sort(waiting, function(a, b) return a.n > b.n or (a.n == b.n and a.cid < b.cid) end)
  local staffed = {}
  local function staffed_of(cid)
    staffed[cid] = staffed[cid] or math.max(1, redis.call('SCARD', K.class_staffed(cid)))
    return staffed[cid]
  end
  local competitors = {}         -- class R -> {{cid, weight, rank}, ...}
  local looked = math.min(#waiting, WAITING_CLASSES)
  local size = math.min(SAMPLE_MAX, math.floor(SAMPLED / math.max(1, looked)))
  for i = 1, looked do
    local c = waiting[i].cid
    local sample = redis.call('SRANDMEMBER', K.class_staffed(c), size)
    local shared = {}
    for _, aid in ipairs(sample) do
      for _, r in ipairs(redis.call('SMEMBERS', K.agent_classes(aid))) do
        shared[r] = (shared[r] or 0) + 1
      end
    end
    for r, n in pairs(shared) do
      r = tonumber(r)
      local share = n / #sample
      local weight = r ~= c and math.min(1, share * share * staffed_of(c) / staffed_of(r))
      if weight and weight >= MIN_WEIGHT then
        competitors[r] = competitors[r] or {}
        table.insert(competitors[r], {c, weight, weight * waiting[i].n})
      end
    end
  end
  redis.call('DEL', K.competition)
  redis.call('HSET', K.competition, 'at', M.now)
  for r, list in pairs(competitors) do
    table.sort(list, function(a, b) return a[3] > b[3] or (a[3] == b[3] and a[1] < b[1]) end)
    local flat = {}
    for i = 1, math.min(#list, COMPETITORS_KEPT) do
      flat[#flat + 1] = list[i][1]
      flat[#flat + 1] = list[i][2]
    end
    redis.call('HSET', K.competition, r, cmsgpack.pack(flat))
  end
end
