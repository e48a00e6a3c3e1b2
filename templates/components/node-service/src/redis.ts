// One way to connect to Redis for the whole service: a single node (`redis://`, `rediss://`) or a
// Redis Cluster (`redis+cluster://host:port[,host:port...]`, `rediss+cluster://` for TLS), with
// bounded waits so an unreachable or frozen Redis turns into an error instead of a hung request.
import { Cluster, type ClusterNode, Redis } from "ioredis";

export type RedisClient = Redis | Cluster;

export interface ConnectOptions {
  /** Fail a command that gets no reply within this time (never set on connections that block). */
  commandTimeoutMs?: number;
  /** The connection runs blocking reads (XREAD BLOCK): their own timeout is BLOCK + a grace period. */
  blocking?: boolean;
  /** Batch the commands of one event-loop tick into one write (not for subscriber connections). */
  autoPipelining?: boolean;
  /**
   * false: a command sent while disconnected fails at once instead of waiting in the offline queue
   * (from where it would still run after reconnecting, although its caller was already told 503).
   */
  offlineQueue?: boolean;
}

export const COMMAND_TIMEOUT_MS = 2_000;
const CONNECT_TIMEOUT_MS = 2_000;
const CLUSTER_URL = /^(rediss?)\+cluster:\/\/(?:([^@/]*)@)?([^/?#]+)\/?$/;

/** True for `redis+cluster://` and `rediss+cluster://` URLs. */
export function isClusterUrl(url: string): boolean {
  return /^rediss?\+cluster:\/\//.test(url);
}

/** The seed nodes and credentials of a `redis+cluster://[user:pass@]host:port[,host:port...]` URL. */
export function parseClusterUrl(url: string): {
  nodes: ClusterNode[];
  username?: string;
  password?: string;
  tls: boolean;
} {
  const match = CLUSTER_URL.exec(url);
  if (match === null) throw new Error("REDIS_URL is not a valid redis+cluster:// URL");
  const [, scheme, userinfo, hosts] = match as unknown as [string, string, string | undefined, string];
  const nodes = hosts.split(",").map((entry) => {
    const hostPort = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(entry.trim());
    if (hostPort === null) throw new Error("REDIS_URL has a cluster seed that is not host:port");
    return { host: hostPort[1] ?? hostPort[2] ?? "", port: Number(hostPort[3] ?? 6379) };
  });
  const parsed: ReturnType<typeof parseClusterUrl> = { nodes, tls: scheme === "rediss" };
  if (userinfo !== undefined && userinfo !== "") {
    const colon = userinfo.indexOf(":");
    const user = decodeURIComponent(colon < 0 ? userinfo : userinfo.slice(0, colon));
    if (user !== "") parsed.username = user;
    if (colon >= 0) parsed.password = decodeURIComponent(userinfo.slice(colon + 1));
  }
  return parsed;
}

/** The connection options this service sets (a subset of ioredis' RedisOptions). */
interface NodeOptions {
  connectTimeout: number;
  maxRetriesPerRequest: number;
  commandTimeout?: number;
  blockingTimeout?: number;
  blockingTimeoutGrace?: number;
  username?: string;
  password?: string;
  tls?: Record<string, never>;
}

/** Connect to the Redis (or Redis Cluster) that `url` names. */
export function connectRedis(url: string, options: ConnectOptions = {}): RedisClient {
  const common: NodeOptions = {
    connectTimeout: CONNECT_TIMEOUT_MS,
    // A command waits through at most one reconnection attempt, then fails (the caller answers 503).
    maxRetriesPerRequest: 1,
  };
  if (options.blocking === true) {
    common.blockingTimeout = 1_000;
    common.blockingTimeoutGrace = COMMAND_TIMEOUT_MS;
  } else {
    common.commandTimeout = options.commandTimeoutMs ?? COMMAND_TIMEOUT_MS;
  }
  const enableAutoPipelining = options.autoPipelining ?? false;
  // An auto-pipelined command is grouped by its first argument, which for EVAL/EVALSHA is the
  // script, not a key (a cluster would send it to the wrong node): these are sent on their own.
  const autoPipeliningIgnoredCommands = ["eval", "evalsha"];
  const enableOfflineQueue = options.offlineQueue ?? true;
  if (!isClusterUrl(url)) {
    return new Redis(url, { ...common, enableAutoPipelining, autoPipeliningIgnoredCommands, enableOfflineQueue });
  }
  const { nodes, username, password, tls } = parseClusterUrl(url);
  if (username !== undefined) common.username = username;
  if (password !== undefined) common.password = password;
  if (tls) common.tls = {};
  return new Cluster(nodes, {
    redisOptions: common,
    enableAutoPipelining,
    autoPipeliningIgnoredCommands,
    enableOfflineQueue,
    slotsRefreshTimeout: CONNECT_TIMEOUT_MS,
    clusterRetryStrategy: (times) => Math.min(100 * times, 2_000),
  });
}

/**
 * Resolves or rejects like `operation`, or rejects after `ms` (a cluster with no node up queues
 * commands instead of failing them). `discard` undoes the result of an operation that completes late.
 */
export function withDeadline<T>(operation: Promise<T>, ms: number, discard?: (late: T) => void): Promise<T> {
  // One promise and one timer per call (it runs on every job request), settled by whichever comes first.
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      settled = true;
      reject(new Error(`no answer from Redis within ${ms} ms`));
    }, ms);
    operation.then(
      (value) => {
        if (settled) return discard?.(value);
        settled = true;
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
