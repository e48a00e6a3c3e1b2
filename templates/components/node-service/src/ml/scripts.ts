// The server-side scripts of the job store (./jobs.ts): each is atomic like a MULTI and touches one
// partition, hence one cluster slot. EVALSHA names a script by its SHA1; EVAL sends it whole when
// Redis answers NOSCRIPT (restarted, failed over, a new node).
import { createHash } from "node:crypto";

/** What a job still queued or running past its deadline ends with (the workers write the same). */
export const DEADLINE_EXCEEDED = "deadline exceeded";
/** Deletes an idempotency key only while it still holds the value this request wrote. */
export const RELEASE_IF_EQUAL =
  "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
/** What the enqueue script reads per job (see below). */
const ARGS_PER_JOB = 8;
/**
 * Jobs of one partition in one round trip, each written whole: the job hash (with its owner and
 * TTL), its deadline, the stream entry (no MAXLEN: the workers trim the stream below the oldest
 * pending entry only) and the queued event (events trimmed by age). Every key carries the
 * partition's hash tag: one cluster slot. Each job is written apart (pcall): the reply says, per
 * job, 1 when written or the error that stopped it, so no caller is told 503 for a job that exists.
 * KEYS: job hash of each job, then deadlines, job stream, events stream.
 * ARGV: ttl, events MINID, then per job: id, created_at, request_id, deadline, owner, payload,
 * queued event, traceparent ("" when none).
 */
const ENQUEUE_SCRIPT = `local jobs = #KEYS - 3
local deadlines, stream, events = KEYS[jobs + 1], KEYS[jobs + 2], KEYS[jobs + 3]
local function write(i)
  local a = 2 + (i - 1) * ${ARGS_PER_JOB}
  local id, created, request, deadline = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  redis.call('HSET', KEYS[i], 'status', 'queued', 'created_at', created, 'request_id', request,
    'deadline', deadline, 'owner', ARGV[a + 5])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
  redis.call('ZADD', deadlines, deadline, id)
  if ARGV[a + 8] ~= '' then
    redis.call('XADD', stream, '*', 'v', '1', 'job_id', id, 'type', 'predict', 'payload', ARGV[a + 6],
      'created_at', created, 'request_id', request, 'traceparent', ARGV[a + 8])
  else
    redis.call('XADD', stream, '*', 'v', '1', 'job_id', id, 'type', 'predict', 'payload', ARGV[a + 6],
      'created_at', created, 'request_id', request)
  end
  redis.call('XADD', events, 'MINID', '~', ARGV[2], '*', 'id', id, 'event', ARGV[a + 7])
end
local written = {}
for i = 1, jobs do
  local ok, err = pcall(write, i)
  written[i] = ok and 1 or tostring(err)
end
return written`;

/**
 * Fails jobs of one partition still unfinished past their deadline, exactly as a worker's sweep does
 * (worker/housekeeping.py): a job whose score in `deadlines` is at most `now` and whose status is
 * neither done nor failed gets status failed, error "deadline exceeded", finished_at `now`,
 * `processed` + 1 and a `failed` event; it leaves `deadlines` either way. A job whose hash is gone
 * (lost: evicted, expired) is never re-created (a hash without owner or TTL would answer 404 for
 * ever): it only leaves `deadlines`; GET then answers 410 and watchers get "job lost". One script:
 * a worker committing or failing the same job (its scripts and transactions check `deadlines` and
 * the status too) comes wholly before or after it, so exactly one of them ends the job, and a job
 * already done is never touched.
 * KEYS: deadlines, events, job hash of each job.
 * ARGV: now, events MINID, "1" to return each job's hash after, then per job: id, failed event.
 * Returns per job {1 if this call failed it else 0, its hash (flat) or {}}.
 */
const EXPIRE_SCRIPT = `local n = #KEYS - 2
local now, minid, hashes = ARGV[1], ARGV[2], ARGV[3] == '1'
local reply = {}
for i = 1, n do
  local key, id = KEYS[2 + i], ARGV[2 + 2 * i]
  local failed = 0
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= tonumber(now) then
    local status = redis.call('HGET', key, 'status')
    if status and status ~= 'done' and status ~= 'failed' then
      redis.call('HSET', key, 'status', 'failed', 'error', '${DEADLINE_EXCEEDED}', 'finished_at', now)
      redis.call('HINCRBY', key, 'processed', 1)
      redis.call('XADD', KEYS[2], 'MINID', '~', minid, '*', 'id', id, 'event', ARGV[3 + 2 * i])
      failed = 1
    end
    redis.call('ZREM', KEYS[1], id)
  end
  reply[i] = {failed, hashes and redis.call('HGETALL', key) or {}}
end
return reply`;

/** A script and its SHA1, what EVALSHA names it by (EVAL sends it whole when Redis answers NOSCRIPT). */
export interface Script {
  text: string;
  sha: string;
}
const script = (text: string): Script => ({ text, sha: createHash("sha1").update(text).digest("hex") });
export const ENQUEUE = script(ENQUEUE_SCRIPT);
export const EXPIRE = script(EXPIRE_SCRIPT);
