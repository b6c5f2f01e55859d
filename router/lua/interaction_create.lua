-- interaction_create: queue a new interaction (§3.1, §3.2, §3.9), routing it at once.
-- Extra skills may need a routing class not made yet (M.class_for): with more than
-- cfg.fill_batch agents logged in, it holds one batch of them on return, its fill timer the rest.
-- KEYS[1]  namespace prefix `acd:{ns}:`
-- ARGV[1]  msgpack {now, cfg, ix = {id, queue, channel?, priority?, credit_ms?, skills,
--          pref, pref_wait_ms, data, fp}}; fp fingerprints the request (but its channel) for
--          idempotency
-- Returns  msgpack {'ok', interaction, created}: the interaction as GET shows it (position, EWT)
--          {'idempotency_conflict'} same id, different request
--          {'unknown_queue'} | {'channel_mismatch'} | {'too_many_skills'} | {'class_limit'}
M.apply_due(M.cfg.due_batch)
local req = M.args.ix
local existing = M.load_ix(req.id)
if existing then
  -- The fingerprint leaves the channel out: absent, it means the queue's, which is the record's.
  if existing.fp ~= req.fp or (req.channel and req.channel ~= existing.channel) then
    return M.reply('idempotency_conflict')
  end
  return M.reply_ix(M.with_ewt(existing), false)
end
local q = M.queue(req.queue)
if not q then return M.reply('unknown_queue') end
if req.channel and req.channel ~= q.channel then return M.reply('channel_mismatch') end
local blocked = q.max_waiting > 0
    and redis.call('ZCARD', M.keys.queue_on_line(q.name)) >= q.max_waiting
local cid, err = M.arrival_class(q, req.skills, blocked)
if not cid then return M.reply(err) end
local ix = {
  id = req.id, queue = q.name, channel = q.channel,
  priority = req.priority or q.priority,
  credit = req.credit_ms or M.ms(q.credit_s),
  skills = req.skills, pref = req.pref, data = req.data, fp = req.fp,
  created = M.now, enq = M.now, cls = cid, step = 0, excl = {}, attempts = 0, cb_offered = false,
}
if blocked then
  ix.status = 'blocked'
  ix.ended = M.now
  M.count_arrival(ix.queue, true)
  M.save_ix(ix)
  M.emit('interaction.blocked', {interaction_id = ix.id, queue = ix.queue})
  return M.reply_ix(ix, true)
end
M.enqueue(ix, q, req.pref_wait_ms)
redis.call('ZADD', M.keys.live, '0', M.live_member(ix))
local created = M.load_ix(ix.id)
if created.status == 'queued' then
  created.ewt = created.ewt0  -- computed by this call's enqueue; nothing it reads changed since
  return M.reply_ix(created, true)
end
return M.reply_ix(M.with_ewt(created), true)
