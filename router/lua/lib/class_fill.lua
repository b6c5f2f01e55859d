-- The batched fill of a new routing class (M.class_for, above cfg.fill_batch logged-in agents):
-- an SSCAN of the logged-in agents, one batch per call, its state in `clsfill`
-- (router/store/records.py, FILL_STATE) and its next batch due by the class's `fill` timer.
-- Meanwhile an interaction of the class reaches the agents indexed so far.

local K = M.keys

-- Begins the fill of class `cid` with its first batch.
function M.start_fill(cid)
  redis.call('HSET', K.class_filling, cid, '0:0')
  M.fill_class(cid, false)
end

-- One batch of a class's fill: the next cfg.fill_batch logged-in agents of its SSCAN. SSCAN may
-- return agents that left meanwhile, so each is checked again; agents that log in or change
-- skills meanwhile are classified by M.classify_agent, which sees the class already. Re-arms
-- `fill:<class>` due now until the scan is done. With `route`, offers what waits in the class to
-- the agents indexed. True when the class is complete. (COUNT is a hint: a set small enough for
-- a compact encoding comes back whole, at most a few hundred agents.)
function M.fill_class(cid, route)
  local state = redis.call('HGET', K.class_filling, cid)
  if not state then
    M.disarm('fill', cid)
    return true
  end
  local cursor, scanned = string.match(state, '^(%d+):(%d+)$')
  local cls = M.class(cid)
  local found = redis.call('SSCAN', K.logged_in, cursor, 'COUNT', M.cfg.fill_batch)
  local joined = {}
  for _, aid in ipairs(found[2]) do
    local ag = M.load_ag(aid)
    if ag and ag.state ~= 'logged_out' and M.qualifies(ag, cls.channel, cls.skills) then
      M.join_class(ag, cid)
      joined[#joined + 1] = ag
    end
  end
  local done = found[1] == '0'
  if done then
    redis.call('HDEL', K.class_filling, cid)
    M.disarm('fill', cid)
  else
    redis.call('HSET', K.class_filling, cid, found[1] .. ':' .. (tonumber(scanned) + #found[2]))
    M.arm('fill', cid, M.now)
  end
  if route and #joined > 0 then M.route_filled(cid, joined) end
  return done
end

-- The agents scanned so far of a class being filled; nil when it is complete.
function M.fill_scanned(cid)
  local state = redis.call('HGET', K.class_filling, cid)
  return state and tonumber(string.match(state, ':(%d+)$'))
end

-- After a batch indexed `joined`: offers the interactions waiting in the class, in their order,
-- while it has agents free; then the preferred waits that name a joined agent still free.
-- O(batch + offers + interactions the free agents refused).
function M.route_filled(cid, joined)
  local pool = K.class_agents(cid)
  local waiting = K.class_waiting(cid)
  local skipped = 0
  while redis.call('ZCARD', pool) > 0 do
    local head = redis.call('ZRANGE', waiting, skipped, skipped)
    if #head == 0 then break end
    -- An offer takes it out of the class; one the free agents all refused stays, and is passed.
    if not M.match_interaction(M.load_ix(M.member_id(head[1]))) then skipped = skipped + 1 end
  end
  for _, ag in ipairs(joined) do
    if redis.call('EXISTS', K.agent_preferred(ag.id)) == 1
        and redis.call('ZSCORE', pool, ag.id) then
      M.match_agent(ag)
    end
  end
end
