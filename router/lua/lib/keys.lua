-- Keys: one builder per key of a namespace, in M.keys; no other file writes a key's name.
-- Every key starts with the namespace's prefix `acd:{<namespace>}:` (KEYS[1]; the braces are
-- the Redis Cluster hash tag, so a namespace lives in one slot). router/store/keys.py is the
-- reference, with the same names and what each key holds; tests/store/test_schema.py checks that
-- both build the same strings.

local K = {}
M.keys = K
local P
-- Built keys of the families with a bounded number of members (classes, queues), kept across
-- calls for one prefix: a lookup instead of a concatenation (a class id also spares formatting
-- a number). Dropped whole past BUILT_MAX.
local built, built_count = {}, 0
local BUILT_MAX = 100000

local function build(infix, id)
  local family = built[infix]
  local key = family and family[id]
  if key then return key end
  if built_count >= BUILT_MAX then built, built_count, family = {}, 0, nil end
  if not family then
    family = {}
    built[infix] = family
  end
  key = P .. infix .. id
  family[id] = key
  built_count = built_count + 1
  return key
end

-- The keys of the whole namespace, built when the namespace changes (library state, like the
-- settings: KEYS[1] is an interned string, so the compare is cheap).
M.on_call(function(prefix)
  if prefix == P then return end
  P = prefix
  built, built_count = {}, 0
  K.queues = P .. 'queues'
  K.agents = P .. 'agents'
  K.logged_in = P .. 'logged_in'
  K.classes = P .. 'classes'
  K.class_seq = P .. 'class_seq'
  K.class_token = P .. 'cls_token'
  K.class_filling = P .. 'clsfill'
  K.class_available_built = P .. 'clsav_built'
  K.classes_waiting = P .. 'clsw'
  K.timers = P .. 'timers'
  K.live = P .. 'live'
  K.arrival_seq = P .. 'seq'
  K.events = P .. 'events'
  K.webhook_reads = P .. 'whr'
  K.metric_counters = P .. 'm:c'
  K.metric_histograms = P .. 'm:h'
  K.agent_time = P .. 'm:at'
  K.agents_by_state = P .. 'm:ag'
  K.metrics_snapshot = P .. 'm:snap'
  K.competition = P .. 'm:ewt'
end)

-- The keys of one record: an agent, an interaction, a routing class, a queue.
function K.agent(id) return P .. 'ag:' .. id end
function K.agent_classes(id) return P .. 'agcls:' .. id end
function K.agent_excluded(id) return P .. 'agex:' .. id end
function K.agent_preferred(id) return P .. 'pref:' .. id end
function K.interaction(id) return P .. 'ix:' .. id end
function K.routing_class(cid) return build('cls:', cid) end
function K.class_waiting(cid) return build('clsix:', cid) end
function K.class_agents(cid) return build('clsag:', cid) end
function K.class_staffed(cid) return build('clsin:', cid) end
function K.class_queues(cid) return build('clsq:', cid) end
function K.class_available(cid) return build('clsav:', cid) end
function K.class_wrap_up(cid) return build('clswu:', cid) end
function K.queue_waiting(name) return build('qw:', name) end
function K.queue_on_line(name) return build('ql:', name) end
function K.queue_scheduled(name) return build('qcb:', name) end
function K.queue_staffed(name) return build('qst:', name) end
function K.queue_averages(name) return build('qs:', name) end
function K.metrics_window(name, minute) return P .. 'm:w:' .. name .. ':' .. minute end
