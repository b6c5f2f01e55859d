-- interaction_reject: the agent rejected or did not answer the offer (§3.5). The interaction
-- goes back to its place and is never offered to that agent again; a no-answer counts as a miss.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, id, agent_id, reason = 'rejected' | 'no_answer'}
-- Returns  {'ok', interaction} (also when that agent already refused it: a retry)
--          {'not_found'} | {'not_offered', note?} (`note` when it has ended)
M.apply_due(M.cfg.due_batch)
local id, agent_id = M.args.id, M.args.agent_id
M.apply_due_of_interaction(id)
local ix = M.load_ix(id)
if not ix then return M.reply('not_found') end
if ix.status ~= 'offered' or ix.agent ~= agent_id then
  if ix.excl[agent_id] then return M.reply_ix(M.with_ewt(ix)) end
  return M.reply('not_offered', M.ended_note(ix))
end
M.refuse(ix, M.load_ag(agent_id), M.args.reason, M.args.reason)
return M.reply_ix(M.with_ewt(M.load_ix(id)))
