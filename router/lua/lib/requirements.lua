-- Requirements: skill minimums (§3.1) of a queue's steps, merged with an interaction's own.

-- Per skill, the higher minimum wins.
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

-- The requirement of a queue's step (0: the queue's own skills).
function M.step_skills(q, step)
  if step == 0 then return q.skills end
  return q.steps[step].skills
end

-- The requirement of each step of queue `q` (step 0 first) with the extra skills `extra`.
function M.step_requirements(q, extra)
  local reqs = {}
  for step = 0, #(q.steps or {}) do reqs[step + 1] = M.merge(M.step_skills(q, step), extra) end
  return reqs
end

-- The step in force after `wait_ms` of waiting: the last whose after_s <= wait.
function M.step_at(q, wait_ms)
  local step = 0
  for i, st in ipairs(q.steps or {}) do
    if M.ms_exact(st.after_s) <= wait_ms then step = i end
  end
  return step
end

-- Whether the agent qualifies for a class of `channel` and requirement `req`: it has capacity
-- on the channel and meets the requirement. Only then is it in the class's sets.
function M.qualifies(ag, channel, req)
  return (ag.channels[channel] or 0) > 0 and M.meets(ag.skills, req)
end

-- Whether the agent staffs the queue (§4): it qualifies for any of the queue's steps.
function M.serves(q, ag)
  for step = 0, #(q.steps or {}) do
    if M.qualifies(ag, q.channel, M.step_skills(q, step)) then return true end
  end
  return false
end
