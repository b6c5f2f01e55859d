-- Records: queues, interactions and agents, each a msgpack map; their fields are listed in
-- router/store/records.py (QueueRecord, InteractionRecord, AgentRecord). Loaded once per call
-- and shared, so that every part of an operation sees the changes of every other part (no stale
-- copy is ever saved or routed).

local K = M.keys
local queue_cache, ix_cache, ag_cache
M.on_call(function() queue_cache, ix_cache, ag_cache = {}, {}, {} end)

-- Decoded queue records are kept across calls (library state) with the packed record they came
-- from, and reused while the stored one is the same string (interned: a cheap compare), for one
-- namespace (its `queues` hash). Callers must not change what M.queue returns.
local queues_decoded = {}
function M.queue(name)
  local q = queue_cache[name]
  if q == nil then
    local raw = redis.call('HGET', K.queues, name)
    if not raw then return nil end
    if queues_decoded.key ~= K.queues then queues_decoded = {key = K.queues, raw = {}, q = {}} end
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
  redis.call('HSET', K.queues, q.name, cmsgpack.pack(q))
  queue_cache[q.name] = q
end

function M.load_ix(id)
  local ix = ix_cache[id]
  if ix then return ix end
  local raw = M.get_record(K.interaction(id))
  if not raw then return nil end
  ix = cmsgpack.unpack(raw)
  ix_cache[id] = ix
  return ix
end

-- The statuses an interaction ends in (§4): kept for `retention_ms` from then.
M.TERMINAL = {completed = true, abandoned = true, timed_out = true, blocked = true,
              cancelled = true, failed = true}

-- What a refusal adds to its detail when the interaction has ended (nil while it has not): a
-- late accept or reject is told why, not only that its offer is gone.
function M.ended_note(ix)
  if M.TERMINAL[ix.status] then return 'the interaction has ended (' .. ix.status .. ')' end
end

-- An interaction's member in K.live, the index of those not yet ended: '<created, 15 digits>:<id>',
-- so that the index pages oldest first by lexicographic range (GET /v1/interactions).
function M.live_member(ix)
  return string.format('%015d:%s', ix.created, ix.id)
end

function M.save_ix(ix)
  ix_cache[ix.id] = ix
  if M.TERMINAL[ix.status] then
    redis.call('ZREM', K.live, M.live_member(ix))
    redis.call('SET', K.interaction(ix.id), cmsgpack.pack(ix), 'PX', M.cfg.text.retention_ms)
  else
    redis.call('SET', K.interaction(ix.id), cmsgpack.pack(ix))
  end
end

function M.load_ag(id)
  local ag = ag_cache[id]
  if ag then return ag end
  local raw = M.get_record(K.agent(id))
  if not raw then return nil end
  ag = cmsgpack.unpack(raw)
  if ag.act == nil then ag.act = {} end
  ag_cache[id] = ag
  M.agent_loaded(ag)
  return ag
end

-- Saves the agent, counting its time by activity first (M.account_agent).
function M.save_ag(ag)
  M.account_agent(ag)
  ag_cache[ag.id] = ag
  redis.call('SET', K.agent(ag.id), cmsgpack.pack(ag))
end
