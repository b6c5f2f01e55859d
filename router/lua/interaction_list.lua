-- interaction_list: a page of the interactions not yet ended (queued, offered, connected, waiting
-- callbacks), oldest first, each as GET shows it (read only, §4). Filters read at most
-- 10 x `limit` of them per page, so a page may hold fewer than `limit` and still go on.
-- KEYS[1]  namespace prefix
-- ARGV[1]  msgpack {now, cfg, after ('' or the cursor of the previous page), limit,
--          queue?, status?, agent?}
-- Returns  {'ok', {interaction...}, next cursor | false}
local a = M.args
local start = a.after == '' and '-' or '(' .. a.after
local scan = a.limit * 10
local members = redis.call('ZRANGE', M.keys.live, start, '+', 'BYLEX', 'LIMIT', '0', M.int(scan))
local page, last, more = {}, nil, #members == scan
for i, member in ipairs(members) do
  if #page == a.limit then
    more = true
    break
  end
  last = member
  local ix = M.load_ix(M.member_id(member))
  if ix and (not a.queue or ix.queue == a.queue) and (not a.status or ix.status == a.status)
      and (not a.agent or ix.agent == a.agent) then
    page[#page + 1] = M.with_ewt(ix)
  end
end
return M.reply('ok', page, more and last or false)
