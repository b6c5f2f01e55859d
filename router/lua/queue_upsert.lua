-- queue_upsert: create or replace a queue. Its steps' routing classes are created now and
-- filled at once, however many agents are logged in (like the staffed set, O(logged-in agents)
-- when its requirements change), finishing a fill that an arrival began. A change applies to
-- the interactions already waiting: each moves to the requirement in force and is routed again,
-- and is offered a callback by the queue's policy (O(waiting in the queue), an admin
-- operation); a scheduled callback takes the class of step 0 of the new requirement. The
-- classes it makes count towards max_routing_classes but are never refused by it.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, queue = <queue record, router/domain/models.py>}
-- Returns  {'ok', created} | {'channel_change'} (interactions waiting on another channel)
--          | {'too_many_skills'} (a step's requirement with the extra skills of the
--          interactions waiting would pass 16 skills)
local K = M.keys
M.apply_due(M.cfg.due_batch)
local q = M.args.queue
local old = M.queue(q.name)
local waiting = redis.call('ZRANGE', K.queue_waiting(q.name), 0, -1)
local scheduled = redis.call('SMEMBERS', K.queue_scheduled(q.name))
if old and old.channel ~= q.channel and #waiting + #scheduled > 0 then
  return M.reply('channel_change')
end
local function requirements(queue)
  local reqs = {queue.skills}
  for _, st in ipairs(queue.steps or {}) do reqs[#reqs + 1] = st.skills end
  return reqs
end
local function signatures(queue)
  local sigs = {}
  for _, req in ipairs(requirements(queue)) do
    sigs[#sigs + 1] = M.signature(queue.channel, queue.strategy, req)
  end
  return sigs
end
local sigs = signatures(q)
-- An admin operation: the classes it makes count towards max_routing_classes, but are not
-- refused by it (lib/classes.lua, M.unbounded_classes).
M.unbounded_classes(true)
-- Interactions with extra skills (waiting, or scheduled callbacks) take the classes of every
-- step with them, made now (M.arrival_class), so that no escalation meets the limit.
local ids = {}
for _, m in ipairs(waiting) do ids[#ids + 1] = M.member_id(m) end
for _, id in ipairs(scheduled) do ids[#ids + 1] = id end
for _, id in ipairs(ids) do
  local extra = M.load_ix(id).skills
  if next(extra) ~= nil then
    local reqs = M.step_requirements(q, extra)
    for _, req in ipairs(reqs) do
      if M.count(req) > M.cfg.max_skills then return M.reply('too_many_skills') end
    end
  end
end
local same = old and table.concat(signatures(old), '\n') == table.concat(sigs, '\n')
if old and not same then
  for _, sig in ipairs(signatures(old)) do
    redis.call('SREM', K.class_queues(redis.call('HGET', K.classes, sig)), q.name)
  end
end
M.save_queue(q)
for _, req in ipairs(requirements(q)) do
  -- Filled to the end (the staffed sets go by `clsq:`, so a queue's classes are complete).
  redis.call('SADD', K.class_queues(M.class_for(q.channel, q.strategy, req, true)), q.name)
end
if not same then
  -- Who staffs the queue changed: O(logged-in agents), only when its requirements change.
  redis.call('DEL', K.queue_staffed(q.name))
  for _, aid in ipairs(redis.call('SMEMBERS', K.logged_in)) do
    if M.serves(q, M.load_ag(aid)) then redis.call('SADD', K.queue_staffed(q.name), aid) end
  end
end
for _, m in ipairs(waiting) do
  local ix = M.load_ix(M.member_id(m))
  if M.in_order(ix) then
    M.arrival_class(q, ix.skills)
    if q.max_wait_s > 0 and not ix.cb then
      M.arm('mw', ix.id, ix.enq + M.ms(q.max_wait_s))
    else
      M.disarm('mw', ix.id)
    end
    M.escalate(ix, true)
    -- A callback policy applies to those already waiting too (§3.10: "or later while it waits"),
    -- but not to one whose max wait, changed now, has passed: it times out below.
    if q.callback and not M.max_wait_passed(ix) then
      M.consider_callback(ix, q, M.interaction_ewt(ix) or 0)
    end
  end
end
for _, id in ipairs(scheduled) do
  local ix = M.load_ix(id)
  ix.step = 0
  ix.cls = M.arrival_class(q, ix.skills) or ix.cls
  M.save_ix(ix)
end
-- Re-armed max waits may be due already; other timers due meanwhile are bounded as always.
M.unbounded_classes(false)
M.apply_due(M.cfg.due_batch)
return M.reply('ok', old == nil)
