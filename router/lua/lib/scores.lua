-- Scores: the order of waiting interactions (§3.2) and the strategy score of agents (§3.3), both
-- smaller first. Their constants come with the settings (cfg.scores, from
-- router/store/records.py), where the invariant checker takes them too.

local IDLE_SPAN, SCORE_BASE, SKILL_SUM, ACTIVE_SLOTS
M.on_call(function()
  local s = M.cfg.scores
  IDLE_SPAN = s.idle_span              -- 2^42 ms (about 139 years): the time part of every score
  SCORE_BASE = s.base                  -- 2^53: strategy scores run from -2^53 up
  SKILL_SUM = s.skill_sum              -- 16 skills x level 5: the highest level sum
  ACTIVE_SLOTS = s.active_slots        -- 33: values of the active count (capacity <= 32)
end)

-- Order of waiting interactions: priority, then virtual start; ties by the member, which starts
-- with the zero-padded arrival sequence.
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

-- Strategy score of an agent in a class; ties by agent id (the member).
-- longest_idle: fewest active on the channel, then idle_since.
-- best_skill: highest level sum over the requirement, then the same.
function M.agent_score(ag, cls, active)
  local primary = active
  if cls.strategy == 'best_skill' then
    local sum = 0
    for skill in pairs(cls.skills) do sum = sum + (ag.skills[skill] or 0) end
    primary = (SKILL_SUM - sum) * ACTIVE_SLOTS + active
  end
  local idle = math.max(0, math.min(IDLE_SPAN - 1, ag.idle_since or 0))
  -- Subtract first: primary * 2^42 may pass 2^53, where adding the ms would round it away.
  return (primary * IDLE_SPAN - SCORE_BASE) + idle
end
