"""The two transactions of every batch, as Lua scripts (START_SCRIPT, COMMIT_SCRIPT)."""

# The two transactions of every batch, as scripts: atomic like MULTI, but the check "is the job
# still unfinished?" happens inside, so each costs one round trip and no WATCH retry. All keys are
# in one partition, hence one cluster slot. A job is unfinished while it is in `deadlines`; only a
# job missing there (finished, or queued without a deadline) needs its status read.
_UNFINISHED = """
local function unfinished(deadline, key)
  if deadline then return true, false end
  local status = redis.call('HGET', key, 'status')
  if not status then return true, true end
  return status ~= 'done' and status ~= 'failed', false
end
"""
# KEYS: deadlines, events, job hash... ARGV: now, events MINID, TTL, (job id, event)...
START_SCRIPT = (
    _UNFINISHED
    + """
local n = #KEYS - 2
local ids = {}
for i = 1, n do ids[i] = ARGV[2 + 2 * i] end
local deadlines = redis.call('ZMSCORE', KEYS[1], unpack(ids))
local started = {}
for i = 1, n do
  local key = KEYS[2 + i]
  local run, missing = unfinished(deadlines[i], key)
  if run then
    redis.call('HSET', key, 'status', 'running', 'started_at', ARGV[1])
    if missing then redis.call('EXPIRE', key, ARGV[3]) end
    redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[2], '*', 'id', ids[i], 'event', ARGV[3 + 2 * i])
    started[i] = 1
  else
    started[i] = 0
  end
end
return started
"""
)
# KEYS: deadlines, events, stream, job hash... ARGV: group, now, events MINID, TTL, started_at,
# number of entry ids m, m entry ids to acknowledge, then (job id, result, done event, running
# event or "" if the job was marked running already) per job.
COMMIT_SCRIPT = (
    _UNFINISHED
    + """
local n = #KEYS - 3
local m = tonumber(ARGV[6])
local base = 6 + m
local ids = {}
for i = 1, n do ids[i] = ARGV[base + 4 * i - 3] end
local deadlines = redis.call('ZMSCORE', KEYS[1], unpack(ids))
local committed = 0
for i = 1, n do
  local key = KEYS[3 + i]
  local run, missing = unfinished(deadlines[i], key)
  if run then
    local result, done, running = ARGV[base + 4 * i - 2], ARGV[base + 4 * i - 1], ARGV[base + 4 * i]
    if running ~= '' then
      redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[3], '*', 'id', ids[i], 'event', running)
      redis.call('HSET', key, 'started_at', ARGV[5])
    end
    redis.call('HSET', key, 'status', 'done', 'result', result, 'finished_at', ARGV[2])
    redis.call('HINCRBY', key, 'processed', 1)
    if missing then redis.call('EXPIRE', key, ARGV[4]) end
    redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[3], '*', 'id', ids[i], 'event', done)
    committed = committed + 1
  end
end
redis.call('XACK', KEYS[3], ARGV[1], unpack(ARGV, 7, base))
redis.call('ZREM', KEYS[1], unpack(ids))
return committed
"""
)
