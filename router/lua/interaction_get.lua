-- interaction_get: an interaction with its position and EWT (read only, §4).
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, id}
-- Returns  {'ok', interaction} | {'not_found'}
local ix = M.load_ix(M.args.id)
if not ix then return M.reply('not_found') end
if ix.m and (ix.status == 'queued' or ix.status == 'offered') then
  local rank = redis.call('ZRANK', M.keys.queue_waiting(ix.queue), ix.m)
  if rank then ix.ewt = M.ewt(ix.queue, ix.cls, rank + 1) end
end
return M.reply_ix(ix)
