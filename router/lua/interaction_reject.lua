-- interaction_reject: the agent rejected or did not answer the offer (§3.5). The interaction
-- goes back to its place and is never offered to that agent again; a no-answer counts as a miss.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, id, agent_id, reason = 'rejected' | 'no_answer'}
-- Returns  {'ok', interaction} (also when that agent already refused it with this reason: a
--          retry; an expiry counts as no_answer)
--          {'not_found'} | {'not_offered', note?} (`note` when it has ended)
--          {'reject_differs', what} (that agent refused it with another reason: `what` names it)
M.apply_due(M.cfg.due_batch)
local id, agent_id = M.args.id, M.args.agent_id
M.apply_due_of_interaction(id)
local ix = M.load_ix(id)
if not ix then return M.reply('not_found') end
if ix.status ~= 'offered' or ix.agent ~= agent_id then
  local refused = ix.excl[agent_id]
  if refused == M.args.reason then return M.reply_ix(M.with_ewt(ix)) end
  if refused then
    local expired = ix.last_offer and ix.last_offer.agent == agent_id
        and ix.last_offer.reason == 'expired'
    return M.reply('reject_differs',
                   'reason was ' .. refused .. (expired and ' (the offer expired)' or ''))
  end
  return M.reply('not_offered', M.ended_note(ix))
end
M.refuse(ix, M.load_ag(agent_id), M.args.reason, M.args.reason)
return M.reply_ix(M.with_ewt(M.load_ix(id)))
