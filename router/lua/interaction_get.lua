-- interaction_get: an interaction with its position and EWT (read only, §4).
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, id}
-- Returns  {'ok', interaction} | {'not_found'}
local ix = M.load_ix(M.args.id)
if not ix then return M.reply('not_found') end
return M.reply_ix(M.with_ewt(ix))
