-- Shared by every operation: arguments, keys, records, events, timers, routing classes.
-- All functions hang off one local table so that they may call each other in any order
-- (Redis forbids globals in scripts).
-- The lib files and the operations are one Redis Functions library (router/store/scripts.py):
-- code at the top level of a lib file runs once, at FUNCTION LOAD, where only definitions work
-- (no KEYS, ARGV, redis.call, not even pairs); what belongs to one call is set in M.begin, which
-- every operation calls first.
local M = {}

local P, A, NOW, CFG                   -- prefix, arguments, now (ms), settings: set by M.begin
local queue_cache, ix_cache, ag_cache, known
local cfg_packed, cfg_decoded

local IDLE_SPAN = 4398046511104        -- 2^42 ms (about 139 years): time part of every score
local SCORE_BASE = 9007199254740992    -- 2^53: strategy scores run from -2^53 up

function M.begin(keys, argv)
  P = keys[1]
  A = cmsgpack.unpack(argv[1])
  NOW = A.now                          -- ms; the one clock value of this operation
  -- The settings (retention_ms, log_max, exclusive, max_classes, fill_batch, ...) come packed on
  -- their own, the same call after call: decoded only when they change (an interned string
  -- compare).
  if A.cfg ~= cfg_packed then cfg_packed, cfg_decoded = A.cfg, cmsgpack.unpack(A.cfg) end
  CFG = cfg_decoded
  M.args = A
  -- Keys (router/store/keys.py is the reference for each suffix).
  M.K_QUEUES = P .. 'queues'
  M.K_AGENTS = P .. 'agents'
  M.K_LOGGED_IN = P .. 'logged_in'
  M.K_CLASSES = P .. 'classes'
  M.K_CLASS_SEQ = P .. 'class_seq'
  M.K_FILLING = P .. 'clsfill'
  M.K_TIMERS = P .. 'timers'
  M.K_SEQ = P .. 'seq'
  M.K_EVENTS = P .. 'events'
  -- Records are loaded once per call and shared (see M.load_ix).
  queue_cache, ix_cache, ag_cache, known = {}, {}, {}, nil
end

-- The reply of every script: {code, payload...}; 'ok' or an error code (router/store/codec.py).
function M.reply(code, a, b) return cmsgpack.pack({code, a or false, b or false}) end

-- The reply with an interaction, its position (§4) added: 1 + those ahead in its queue.
function M.reply_ix(ix, b)
  if ix.m then
    local rank = redis.call('ZRANK', P .. 'qw:' .. ix.queue, ix.m)
    if rank then ix.position = rank + 1 end
  end
  return M.reply('ok', ix, b)
end

function M.count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

function M.sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

-- Records ---------------------------------------------------------------------------------------

-- Decoded queue records are kept across calls (library state) with the packed record they came
-- from, and reused while the stored one is the same string (interned: a cheap compare).
-- Callers must not change what M.queue returns.
local queues_decoded = {}
function M.queue(name)
  local q = queue_cache[name]
  if q == nil then
    local raw = redis.call('HGET', M.K_QUEUES, name)
    if not raw then return nil end
    if queues_decoded.prefix ~= P then queues_decoded = {prefix = P, raw = {}, q = {}} end
    if queues_decoded.raw[name] == raw then
      q = queues_decoded.q[name]
    else
      q = cmsgpack.unpack(raw)
      queues_decoded.raw[name], queues_decoded.q[name] = raw, q
    end
    queue_cache[name] = q
  end
  return q
end

function M.save_queue(q)
  redis.call('HSET', M.K_QUEUES, q.name, cmsgpack.pack(q))
  queue_cache[q.name] = q
end

-- Records are loaded once per script and shared, so that every part of an operation sees the
-- changes of every other part (no stale copy is ever saved or routed).

function M.load_ix(id)
  local ix = ix_cache[id]
  if ix then return ix end
  local raw = redis.call('GET', P .. 'ix:' .. id)
  if not raw then return nil end
  ix = cmsgpack.unpack(raw)
  ix_cache[id] = ix
  return ix
end

M.TERMINAL = {completed = true, abandoned = true, timed_out = true, blocked = true,
              cancelled = true, failed = true}

function M.save_ix(ix)
  ix_cache[ix.id] = ix
  if M.TERMINAL[ix.status] then
    redis.call('SET', P .. 'ix:' .. ix.id, cmsgpack.pack(ix), 'PX', CFG.retention_ms)
  else
    redis.call('SET', P .. 'ix:' .. ix.id, cmsgpack.pack(ix))
  end
end

function M.load_ag(id)
  local ag = ag_cache[id]
  if ag then return ag end
  local raw = redis.call('GET', P .. 'ag:' .. id)
  if not raw then return nil end
  ag = cmsgpack.unpack(raw)
  if ag.act == nil then ag.act = {} end
  ag_cache[id] = ag
  return ag
end

function M.save_ag(ag)
  M.account_agent(ag)
  ag_cache[ag.id] = ag
  redis.call('SET', P .. 'ag:' .. ag.id, cmsgpack.pack(ag))
end

-- Events ----------------------------------------------------------------------------------------

-- Appends one event to the durable log; `f` holds interaction_id, agent_id, queue and the
-- fields of the event's kind (SPEC §4).
function M.emit(etype, f)
  redis.call('XADD', M.K_EVENTS, 'MAXLEN', '~', CFG.log_max, '*',
             't', etype, 'at', NOW, 'd', cmsgpack.pack(f))
end

-- Timers: one sorted set, member '<kind>:<id>', score = due ms. Re-arming overwrites, so a
-- record has at most one timer of each kind and a cancelled timer is simply gone.

function M.arm(kind, id, due) redis.call('ZADD', M.K_TIMERS, due, kind .. ':' .. id) end
function M.disarm(kind, id) redis.call('ZREM', M.K_TIMERS, kind .. ':' .. id) end

-- Order of waiting interactions (§3.2): priority, then virtual start; ties by the member,
-- which starts with the zero-padded arrival sequence.
function M.order_score(priority, virtual_start_ms)
  local t = math.max(0, math.min(IDLE_SPAN - 1, virtual_start_ms))
  return (1000 - priority) * IDLE_SPAN + t
end

function M.member(seq, id) return string.format('%015d', seq) .. ':' .. id end
function M.member_id(member) return string.sub(member, 17) end

-- True when (s1, m1) goes before (s2, m2) in a sorted set.
function M.before(s1, m1, s2, m2)
  if s1 ~= s2 then return s1 < s2 end
  return m1 < m2
end

-- Strategy score of an agent in a class (§3.3), smaller first; ties by agent id (the member).
-- longest_idle: fewest active on the channel, then idle_since.
-- best_skill: highest level sum over the requirement, then the same.
function M.agent_score(ag, cls, active)
  local primary = active
  if cls.strategy == 'best_skill' then
    local sum = 0
    for skill in pairs(cls.skills) do sum = sum + (ag.skills[skill] or 0) end
    -- 16 skills x level 5 = 80; 33 slots for the active count (capacity <= 32).
    primary = (80 - sum) * 33 + active
  end
  local idle = math.max(0, math.min(IDLE_SPAN - 1, ag.idle_since or 0))
  -- Subtract first: primary * 2^42 may pass 2^53, where adding the ms would round it away.
  return (primary * IDLE_SPAN - SCORE_BASE) + idle
end

-- Requirements and routing classes --------------------------------------------------------------

-- Per skill, the higher minimum wins (§3.1).
function M.merge(a, b)
  local r = {}
  for s, l in pairs(a or {}) do r[s] = l end
  for s, l in pairs(b or {}) do
    if r[s] == nil or l > r[s] then r[s] = l end
  end
  return r
end

function M.meets(skills, req)
  for s, l in pairs(req) do
    if (skills[s] or 0) < l then return false end
  end
  return true
end

function M.step_skills(q, step)
  if step == 0 then return q.skills end
  return q.steps[step].skills
end

-- The step in force after `wait_ms` of waiting: the last whose after_s <= wait.
function M.step_at(q, wait_ms)
  local step = 0
  for i, st in ipairs(q.steps or {}) do
    if st.after_s * 1000 <= wait_ms then step = i end
  end
  return step
end

-- A class never changes once created and its id and signature are never reused, so decoded
-- classes and signature -> id are kept across calls (library state) for one namespace and one
-- generation of its classes: `cls_token`, written anew when the namespace's keys were deleted.
-- One GET per call checks it. Callers must not change what M.class returns.
local memo = {}
local tokens = 0
local function classes_known()
  if known then return known end
  local key = P .. 'cls_token'
  local token = redis.call('GET', key)
  if not token then
    tokens = tokens + 1
    local t = redis.call('TIME')
    token = t[1] .. '.' .. t[2] .. '.' .. tokens
    redis.call('SET', key, token)
  end
  if memo.prefix ~= P or memo.token ~= token then
    memo = {prefix = P, token = token, classes = {}, ids = {}}
  end
  known = memo
  return known
end

function M.class(cid)
  local classes = classes_known().classes
  local c = classes[cid]
  if c == nil then
    c = cmsgpack.unpack(redis.call('GET', P .. 'cls:' .. cid))
    classes[cid] = c
  end
  return c
end

function M.signature(channel, strategy, req)
  local parts = {}
  for _, s in ipairs(M.sorted_keys(req)) do parts[#parts + 1] = s .. '=' .. req[s] end
  return channel .. '|' .. strategy .. '|' .. table.concat(parts, ',')
end

-- The class id for a requirement, created on first use; nil when `max_routing_classes` is
-- reached. A new class is filled with every logged-in agent that meets it: at once when there
-- are at most CFG.fill_batch of them, else one batch now and the next ones by its `fill:<class>`
-- timer (M.fill_class), so no routing call costs more than O(fill_batch) agents. `complete` (queue
-- upserts, which scan the logged-in agents anyway) fills the class to the end, even one whose
-- fill an earlier call began.
function M.class_for(channel, strategy, req, complete)
  local sig = M.signature(channel, strategy, req)
  local ids = classes_known().ids
  local cid = ids[sig]
  if not cid then
    cid = redis.call('HGET', M.K_CLASSES, sig)
    if cid then
      cid = tonumber(cid)
      ids[sig] = cid
    end
  end
  if cid then
    if complete and redis.call('HEXISTS', M.K_FILLING, cid) == 1 then
      while not M.fill_class(cid, true) do end
    end
    return cid
  end
  if redis.call('HLEN', M.K_CLASSES) >= CFG.max_classes then return nil end
  cid = redis.call('INCR', M.K_CLASS_SEQ)
  local packed = cmsgpack.pack({id = cid, channel = channel, strategy = strategy, skills = req})
  redis.call('SET', P .. 'cls:' .. cid, packed)
  redis.call('HSET', M.K_CLASSES, sig, cid)
  known.classes[cid] = cmsgpack.unpack(packed)  -- its own copy: `req` is the caller's
  ids[sig] = cid
  if complete or redis.call('SCARD', M.K_LOGGED_IN) <= CFG.fill_batch then
    for _, aid in ipairs(redis.call('SMEMBERS', M.K_LOGGED_IN)) do
      local ag = M.load_ag(aid)
      if M.meets(ag.skills, req) then M.join_class(ag, cid) end
    end
  else
    redis.call('HSET', M.K_FILLING, cid, '0:0')
    M.fill_class(cid, false)
  end
  return cid
end

function M.join_class(ag, cid)
  redis.call('SADD', P .. 'agcls:' .. ag.id, cid)
  redis.call('SADD', P .. 'clsin:' .. cid, ag.id)
  M.index_agent_in(ag, cid)
end

-- One batch of a class's fill: the next CFG.fill_batch logged-in agents of its SSCAN (the
-- cursor and the count scanned so far are kept in `clsfill`). SSCAN may return agents that left
-- meanwhile, so each is checked again; agents that log in or change skills meanwhile are
-- classified by M.classify_agent, which sees the class already. Re-arms `fill:<class>` due now
-- until the scan is done. With `route`, offers what waits in the class to the agents indexed.
-- True when the class is complete. (COUNT is a hint: a set small enough for a compact encoding
-- comes back whole, at most a few hundred agents.)
function M.fill_class(cid, route)
  local state = redis.call('HGET', M.K_FILLING, cid)
  if not state then
    M.disarm('fill', cid)
    return true
  end
  local cursor, scanned = string.match(state, '^(%d+):(%d+)$')
  local cls = M.class(cid)
  local found = redis.call('SSCAN', M.K_LOGGED_IN, cursor, 'COUNT', CFG.fill_batch)
  local joined = {}
  for _, aid in ipairs(found[2]) do
    local ag = M.load_ag(aid)
    if ag and ag.state ~= 'logged_out' and M.meets(ag.skills, cls.skills) then
      M.join_class(ag, cid)
      joined[#joined + 1] = ag
    end
  end
  local done = found[1] == '0'
  if done then
    redis.call('HDEL', M.K_FILLING, cid)
    M.disarm('fill', cid)
  else
    redis.call('HSET', M.K_FILLING, cid, found[1] .. ':' .. (tonumber(scanned) + #found[2]))
    M.arm('fill', cid, NOW)
  end
  if route and #joined > 0 then M.route_filled(cid, joined) end
  return done
end
