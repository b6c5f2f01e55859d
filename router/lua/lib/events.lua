-- Events: every script appends its events (§4 types and fields) to the durable event log, one
-- stream, in the same atomic step; trimmed to about cfg.log_max entries. An entry's fields are
-- listed in router/store/records.py (EventEntry).

local K = M.keys

-- Appends one event of type `etype` (written out where it is emitted, so that a search finds
-- it); `f` holds interaction_id, agent_id, queue and the fields of its type.
function M.emit(etype, f)
  redis.call('XADD', K.events, 'MAXLEN', '~', M.cfg.text.log_max, '*',
             't', etype, 'at', M.now_text, 'd', cmsgpack.pack(f))
end
