-- Escalation (§3.1): as the wait grows, a waiting interaction moves to the requirement of the
-- step in force, each step armed as an `esc` timer.

-- Arms the interaction's next step, or cancels its timer after the last.
function M.arm_escalation(ix, q)
  local nxt = (q.steps or {})[ix.step + 1]
  if nxt then
    M.arm('esc', ix.id, ix.enq + M.ms_exact(nxt.after_s))
  else
    M.disarm('esc', ix.id)
  end
end

-- Moves a waiting interaction to the requirement of the step in force and arms the next step;
-- routes it when it changed. `force` re-evaluates after a queue change.
function M.escalate(ix, force)
  local q = M.queue(ix.queue)
  local step = M.step_at(q, M.now - ix.enq)
  if step ~= ix.step or force then
    -- At the class limit the interaction keeps its current pool rather than stalling.
    local cid = M.class_for(q.channel, q.strategy, M.merge(M.step_skills(q, step), ix.skills))
        or ix.cls
    if cid ~= ix.cls then
      local placed = M.routable(ix)
      if placed then M.unplace(ix) end
      ix.cls = cid
      if placed then M.place(ix) end
    end
    if step ~= ix.step then
      ix.step = step
      M.emit('interaction.escalated', {interaction_id = ix.id, queue = ix.queue, step = step})
    end
  end
  M.arm_escalation(ix, q)
  M.save_ix(ix)
  M.match_interaction(ix)
end
