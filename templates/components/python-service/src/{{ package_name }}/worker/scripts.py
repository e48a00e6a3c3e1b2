"""The two transactions of every batch, as Lua scripts (START_SCRIPT, COMMIT_SCRIPT)."""

# The two transactions of every batch, as scripts: atomic like MULTI, but the check "is the job
# still unfinished?" happens inside, so each costs one round trip and no WATCH retry. All keys are
# in one partition, hence one cluster slot. A job is unfinished while it is in `deadlines` and its
# hash exists. A missing hash means the job was lost (evicted, expired, deleted): the scripts never
# create it again (a hash without its owner and TTL would answer 404 for ever instead of 410
# "job lost"); the entry is acknowledged and the job leaves `deadlines`. `gone` checks the batch's
# hashes with one EXISTS (one per job only when some are missing).
_UNFINISHED = """
local function gone(first, n)
  local keys, missing = {}, {}
  for i = 1, n do
    keys[i] = KEYS[first + i]
    missing[i] = false
  end
  if redis.call('EXISTS', unpack(keys)) < n then
    for i = 1, n do missing[i] = redis.call('EXISTS', keys[i]) == 0 end
  end
  return missing
end
-- Past its deadline (the score is Redis time, as `now` is): a sweep fails such a job every few
-- seconds, and until one runs (Redis paused, a sweeper stalled) it is neither started nor
-- finished here; it stays in `deadlines` for that sweep.
local function overdue(deadline, missing, now)
  return not missing and deadline and tonumber(deadline) <= tonumber(now)
end
local function unfinished(deadline, key, missing)
  if missing then return false end
  if deadline then return true end
  local status = redis.call('HGET', key, 'status')
  return status ~= 'done' and status ~= 'failed'
end
"""
# KEYS: deadlines, events, job hash... ARGV: now, events MINID, (job id, event)...
START_SCRIPT = (
    _UNFINISHED
    + """
local n = #KEYS - 2
local ids = {}
for i = 1, n do ids[i] = ARGV[1 + 2 * i] end
local deadlines = redis.call('ZMSCORE', KEYS[1], unpack(ids))
local missing = gone(2, n)
local started = {}
for i = 1, n do
  local key = KEYS[2 + i]
  if overdue(deadlines[i], missing[i], ARGV[1]) then
    started[i] = 0
  elseif unfinished(deadlines[i], key, missing[i]) then
    redis.call('HSET', key, 'status', 'running', 'started_at', ARGV[1])
    redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[2], '*', 'id', ids[i], 'event', ARGV[2 + 2 * i])
    started[i] = 1
  else
    if deadlines[i] then redis.call('ZREM', KEYS[1], ids[i]) end
    started[i] = 0
  end
end
return started
"""
)
# KEYS: deadlines, events, stream, job hash... ARGV: group, now, events MINID, started_at,
# number of entry ids m, m entry ids to acknowledge, then (job id, result, done event, running
# event or "" if the job was marked running already) per job.
COMMIT_SCRIPT = (
    _UNFINISHED
    + """
local n = #KEYS - 3
local m = tonumber(ARGV[5])
local base = 5 + m
local ids = {}
for i = 1, n do ids[i] = ARGV[base + 4 * i - 3] end
local deadlines = redis.call('ZMSCORE', KEYS[1], unpack(ids))
local missing = gone(3, n)
local committed = 0
local settled = {}
for i = 1, n do
  local key = KEYS[3 + i]
  -- An overdue job's result is dropped (its entry is acknowledged): the sweep fails it.
  if not overdue(deadlines[i], missing[i], ARGV[2]) then
    settled[#settled + 1] = ids[i]
    if unfinished(deadlines[i], key, missing[i]) then
      local at = base + 4 * i
      local result, done, running = ARGV[at - 2], ARGV[at - 1], ARGV[at]
      if running ~= '' then
        redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[3], '*', 'id', ids[i], 'event', running)
        redis.call('HSET', key, 'started_at', ARGV[4])
      end
      redis.call('HSET', key, 'status', 'done', 'result', result, 'finished_at', ARGV[2])
      redis.call('HINCRBY', key, 'processed', 1)
      redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[3], '*', 'id', ids[i], 'event', done)
      committed = committed + 1
    end
  end
end
redis.call('XACK', KEYS[3], ARGV[1], unpack(ARGV, 6, base))
if #settled > 0 then redis.call('ZREM', KEYS[1], unpack(settled)) end
return committed
"""
)
