-- Routing classes: one per (channel, strategy, requirement) in use, its record
-- (router/store/records.py, ClassRecord) under an id that is never reused. A class indexes the
-- agents that meet it and the interactions waiting for it.

local K = M.keys

-- A class never changes once created and its id and signature are never reused, so decoded
-- classes and signature -> id are kept across calls (library state) for one namespace (its
-- `classes` hash) and one generation of its classes: `cls_token`, written anew when the
-- namespace's keys were deleted. One GET per call checks it. Callers must not change what
-- M.class returns.
local memo = {}
local tokens = 0
local known                            -- memo, once this call checked the token
local token_read                       -- the token, read along with a record (M.get_record)
local unbounded                        -- this call makes classes past max_classes
M.on_call(function() known, token_read, unbounded = nil, nil, false end)

-- Whether the classes this call makes from now on are refused by `max_routing_classes`: not
-- those of a queue write, an admin operation (§3.1 bounds the classes arrivals make), so that
-- arrivals that used the budget up cannot keep the admin from configuring queues.
function M.unbounded_classes(on) unbounded = on end

-- Whether making `missing` more classes would pass `max_routing_classes` in this call.
function M.past_class_limit(missing)
  return not unbounded and missing > 0
      and redis.call('HLEN', K.classes) + missing > M.cfg.max_classes
end

-- GET of a record's key; the first of a call reads the token along with it (MGET), saving
-- classes_known its own GET.
function M.get_record(key)
  if known or token_read ~= nil then return redis.call('GET', key) end
  local found = redis.call('MGET', key, K.class_token)
  token_read = found[2]
  return found[1]
end

-- `classes_waiting` made whole from the classes' waiting indexes, O(classes), once per
-- namespace each time the library is loaded (every router start loads it, REPLACE resets its
-- state): data written by an earlier version, which placed interactions without adding their
-- class (before it existed, or after a rollback), is then found by the agents.
local waiting_checked = {}
local function check_classes_waiting()
  if waiting_checked[K.classes] then return end
  for cid = 1, tonumber(redis.call('GET', K.class_seq) or '0') do
    if redis.call('ZCARD', K.class_waiting(cid)) > 0 then
      redis.call('SADD', K.classes_waiting, cid)
    end
  end
  waiting_checked[K.classes] = true
end

-- The classes' `available` sets (`clsav:`) built from the agents, once per namespace: data
-- written by an earlier version has none. O(logged-in agents x their classes), once (about a
-- quarter of a second at 10,000 agents). It may run in the middle of an operation (the first
-- that looks at a class): it reads each agent's classes as stored, without the call's cache of
-- them (M.agent_classes), which an agent being reclassified would otherwise keep empty, and its
-- state as the call holds it (an agent whose state this call changed is indexed by it).
local function check_classes_available()
  if redis.call('EXISTS', K.class_available_built) == 1 then return end
  for _, aid in ipairs(redis.call('SMEMBERS', K.logged_in)) do
    local ag = M.load_ag(aid)
    if ag and ag.state == 'available' then
      for _, cid in ipairs(redis.call('SMEMBERS', K.agent_classes(aid))) do
        redis.call('SADD', K.class_available(cid), aid)
      end
    end
  end
  redis.call('SET', K.class_available_built, '1')
end

local function classes_known()
  if known then return known end
  local token = token_read
  if token == nil then token = redis.call('GET', K.class_token) end
  if not token then
    tokens = tokens + 1
    local t = redis.call('TIME')
    token = t[1] .. '.' .. t[2] .. '.' .. tokens
    redis.call('SET', K.class_token, token)
  end
  if memo.key ~= K.classes or memo.token ~= token then
    memo = {key = K.classes, token = token, classes = {}, ids = {}, windows = {}}
    check_classes_waiting()
    check_classes_available()
  end
  known = memo
  return known
end

-- The ids of the agent's classes that may have an interaction waiting (M.match_agent).
function M.waiting_classes_of(ag)
  classes_known()
  return redis.call('SINTER', K.agent_classes(ag.id), K.classes_waiting)
end

-- Library state of the namespace that lives as long as its classes' memo (a new token, after
-- the namespace's keys were deleted, starts it anew): lib/metrics.lua keeps there the metric
-- windows whose expiry it set.
function M.namespace_memo() return classes_known() end

function M.class(cid)
  local classes = classes_known().classes
  local c = classes[cid]
  if c == nil then
    c = cmsgpack.unpack(redis.call('GET', K.routing_class(cid)))
    classes[cid] = c
  end
  return c
end

function M.signature(channel, strategy, req)
  local parts = {}
  for _, s in ipairs(M.sorted_keys(req)) do parts[#parts + 1] = s .. '=' .. req[s] end
  return channel .. '|' .. strategy .. '|' .. table.concat(parts, ',')
end

-- The id of the class of signature `sig` (M.signature); nil when it has none (none is made).
function M.class_id(sig)
  local ids = classes_known().ids
  local cid = ids[sig]
  if not cid then
    cid = redis.call('HGET', K.classes, sig)
    if cid then
      cid = tonumber(cid)
      ids[sig] = cid
    end
  end
  return cid
end

-- How many routing classes of `channel` and `strategy` the requirements `reqs` would create
-- (distinct signatures with no class yet).
function M.classes_missing(channel, strategy, reqs)
  local seen = {}
  local missing = 0
  for _, req in ipairs(reqs) do
    local sig = M.signature(channel, strategy, req)
    if not seen[sig] and not M.class_id(sig) then
      missing = missing + 1
    end
    seen[sig] = true
  end
  return missing
end

-- The class id for a requirement, created on first use; nil when `max_routing_classes` is
-- reached (M.past_class_limit). A new class is filled with every logged-in agent that qualifies
-- for it (M.qualifies): at once when there are at most cfg.fill_batch of them, else one batch
-- now and the next ones by its `fill` timer (M.fill_class), so no routing call costs more than
-- O(fill_batch) agents. `complete` (queue upserts, which scan the logged-in agents anyway)
-- fills the class to the end, even one whose fill an earlier call began.
function M.class_for(channel, strategy, req, complete)
  local sig = M.signature(channel, strategy, req)
  local ids = classes_known().ids
  local cid = M.class_id(sig)
  if cid then
    if complete and redis.call('HEXISTS', K.class_filling, cid) == 1 then
      while not M.fill_class(cid, true) do end
    end
    return cid
  end
  if M.past_class_limit(1) then return nil end
  cid = redis.call('INCR', K.class_seq)
  local packed = cmsgpack.pack({id = cid, channel = channel, strategy = strategy, skills = req})
  redis.call('SET', K.routing_class(cid), packed)
  redis.call('HSET', K.classes, sig, cid)
  known.classes[cid] = cmsgpack.unpack(packed)  -- its own copy: `req` is the caller's
  ids[sig] = cid
  if complete or redis.call('SCARD', K.logged_in) <= M.cfg.fill_batch then
    for _, aid in ipairs(redis.call('SMEMBERS', K.logged_in)) do
      local ag = M.load_ag(aid)
      if M.qualifies(ag, channel, req) then M.join_class(ag, cid) end
    end
  else
    M.start_fill(cid)
  end
  return cid
end

-- The agent qualifies for the class: it joins the class's sets and, if free, its index.
function M.join_class(ag, cid)
  redis.call('SADD', K.agent_classes(ag.id), cid)
  M.agent_classes_changed(ag)
  redis.call('SADD', K.class_staffed(cid), ag.id)
  if ag.state == 'available' then redis.call('SADD', K.class_available(cid), ag.id) end
  if M.wrapping(ag) then redis.call('ZADD', K.class_wrap_up(cid), M.int(ag.wrap_until), ag.id) end
  M.index_agent_in(ag, cid)
end
