-- The call: what every operation starts with (M.begin), its clock, and its reply.
-- The lib files and the operations are one Redis Functions library; router/store/scripts.py
-- lists the files in load order and runs each in a block of its own, so that they share only the
-- module table M (Redis forbids globals in scripts). Code at the top level of a lib file runs
-- once, at FUNCTION LOAD, where only definitions work (no KEYS, ARGV, redis.call, not even
-- pairs). What belongs to one call is set by M.begin, which every operation runs first: M.args,
-- M.now and M.cfg, then the hooks with which files reset their own per-call state (M.on_call).

local hooks = {}

-- Registers `hook(prefix)` to run at the start of every call, in load order, once M.args, M.now
-- and M.cfg are set; `prefix` is the namespace's `acd:{<namespace>}:` (KEYS[1]).
function M.on_call(hook) hooks[#hooks + 1] = hook end

local cfg_packed, cfg_decoded

-- ARGV[1] is one msgpack map: `now` (ms), `cfg` and the operation's own arguments.
function M.begin(keys, argv)
  local args = cmsgpack.unpack(argv[1])
  M.args = args
  M.now = args.now                     -- ms; the one clock value of this operation
  -- The settings (router/store/records.py, CallSettings) come packed on their own, the same
  -- call after call: decoded only when they change (an interned string compare).
  if args.cfg ~= cfg_packed then
    cfg_packed, cfg_decoded = args.cfg, cmsgpack.unpack(args.cfg)
    cfg_decoded.text = {log_max = M.int(cfg_decoded.log_max),
                        retention_ms = M.int(cfg_decoded.retention_ms)}
  end
  M.cfg = cfg_decoded
  M.now_text = M.int(M.now)
  local prefix = keys[1]
  for i = 1, #hooks do hooks[i](prefix) end
end

-- A number as a command argument: an integer as its digits, formatted here; Redis would format
-- any number with %.17g, the costliest part of passing one. Other numbers are left to it.
function M.int(n)
  if n % 1 == 0 and n > -2^53 and n < 2^53 then return string.format('%d', n) end
  return n
end

-- Seconds (a setting or an argument) to ms. M.ms rounds to whole ms, for a time to store or to
-- arm; M.ms_exact keeps the fraction, for a limit that waits of whole ms are compared with.
function M.ms(seconds) return math.floor(seconds * 1000 + 0.5) end
function M.ms_exact(seconds) return seconds * 1000 end

-- Ms to seconds: a time or a duration, and the time from `ms` to now.
function M.seconds(ms) return ms / 1000 end
function M.seconds_since(ms) return (M.now - ms) / 1000 end

-- The reply of every script: {code, payload...}; 'ok' or an error code (router/store/codec.py).
function M.reply(code, a, b) return cmsgpack.pack({code, a or false, b or false}) end

-- The statuses of an interaction that may wait in its queue's order (`qw:`).
local IN_QUEUE = {queued = true, offered = true, callback = true}

-- The reply with an interaction, its position (§4) added: 1 + those ahead in its queue.
function M.reply_ix(ix, b)
  if ix.m and not ix.position and IN_QUEUE[ix.status] then  -- M.with_ewt may have found it
    local rank = redis.call('ZRANK', M.keys.queue_waiting(ix.queue), ix.m)
    if rank then ix.position = rank + 1 end
  end
  return M.reply('ok', ix, b)
end
