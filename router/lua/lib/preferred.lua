-- Preferred agents (§3.7): for its preferred wait an interaction waits in the sets of its
-- preferred agents (M.place) rather than in its class; the wait ends at its `pw` timer, or
-- earlier when no listed agent can serve it any more.

local K = M.keys

-- Starts the interaction's preferred wait of `wait_ms` now; skipped when no listed agent can
-- serve it.
function M.start_preferred_wait(ix, wait_ms)
  ix.pref_until = nil
  if #ix.pref > 0 and wait_ms > 0 and M.preferred_wait_alive(ix) then
    ix.pref_until = M.now + wait_ms
    M.arm('pw', ix.id, ix.pref_until)
  end
end

-- A callback scheduled during its preferred wait (§3.10): the wait stops, and starts again
-- whole when the callback enters the queue at its time, as an arrival then.
function M.hold_preferred_wait(ix)
  if not ix.pref_until then return end
  ix.pref_wait = ix.pref_until - ix.enq
  ix.pref_until = nil
  M.disarm('pw', ix.id)
end

function M.preferred_wait_alive(ix)
  for _, aid in ipairs(ix.pref) do
    if not ix.excl[aid] and redis.call('SISMEMBER', K.logged_in, aid) == 1 then
      return true
    end
  end
  return false
end

-- Ends the interaction's preferred wait: it waits in its class from then on, and is routed
-- (unless `unrouted`: its caller routes it).
function M.end_preferred_wait(ix, unrouted)
  local placed = M.routable(ix)
  if placed then M.unplace(ix) end
  ix.pref_until = nil
  M.disarm('pw', ix.id)
  if placed then M.place(ix) end
  M.save_ix(ix)
  if not unrouted then M.match_interaction(ix) end
end

-- After the agent logged out: end the preferred waits that no listed agent can serve any more.
function M.end_preferred_waits_of(agent_id)
  for _, m in ipairs(redis.call('ZRANGE', K.agent_preferred(agent_id), 0, -1)) do
    local ix = M.load_ix(M.member_id(m))
    if ix.pref_until and not M.preferred_wait_alive(ix) then M.end_preferred_wait(ix) end
  end
end
