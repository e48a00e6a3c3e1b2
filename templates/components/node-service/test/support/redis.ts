import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface RedisServer {
  url: string;
  port: number;
  stop: () => Promise<void>;
  /** Freeze the process (SIGSTOP): connections stay open, nothing answers. */
  pause: () => void;
  /** Thaw a paused process (SIGCONT). */
  resume: () => void;
  /** Start a fresh (empty) redis-server on the same port after stop(). */
  restart: () => Promise<void>;
}

/** Ask the OS for a free loopback port. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function installed(binary: string): boolean {
  try {
    execFileSync(binary, ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

const serverBinary = (): string => process.env.REDIS_SERVER_BIN ?? "redis-server";
const cliBinary = (): string => process.env.REDIS_CLI_BIN ?? "redis-cli";

function redisServerBinary(): string {
  const binary = serverBinary();
  if (!installed(binary)) {
    throw new Error(
      `${binary} not found: these tests need a real Redis. Install it (Debian/Ubuntu: apt-get install redis-server, ` +
        "macOS: brew install redis) or set REDIS_SERVER_BIN to its path.",
    );
  }
  return binary;
}

/** Spawn redis-server on `port` (no persistence) and wait until it accepts connections. */
async function spawnRedis(port: number, extra: string[] = [], cwd?: string): Promise<ChildProcess> {
  const child = spawn(
    redisServerBinary(),
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--protected-mode",
      "yes",
      ...extra,
    ],
    { stdio: "ignore", ...(cwd === undefined ? {} : { cwd }) },
  );
  const deadline = Date.now() + 10_000;
  // The port must answer as THIS process: another test file (they run in parallel) may have
  // taken a port this one released, and connecting to its server would look like success.
  while (!(child.pid !== undefined && (await serverPid(port)) === child.pid)) {
    if (child.exitCode !== null)
      throw new Error(`redis-server exited with code ${child.exitCode} (port ${port} taken?)`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error("redis-server did not start within 10 s");
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return child;
}

/** The process id of the redis-server answering on `port` (INFO server), or null. */
function serverPid(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const socket = new Socket();
    let reply = "";
    const done = (pid: number | null): void => {
      socket.destroy();
      resolve(pid);
    };
    socket.setTimeout(1_000, () => done(null));
    socket.once("error", () => done(null));
    socket.on("data", (chunk) => {
      reply += chunk.toString("latin1");
      const match = /process_id:(\d+)/.exec(reply);
      if (match) done(Number(match[1]));
    });
    socket.connect(port, "127.0.0.1", () => socket.write("*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"));
  });
}

/**
 * Keeps a stopped server's port from being taken by another test file until restart(): accepts
 * and drops every connection, which a client sees as Redis being down.
 */
function holdPort(port: number): Promise<() => Promise<void>> {
  return new Promise((resolve, reject) => {
    const holder = createServer((socket) => socket.destroy());
    holder.unref(); // never what keeps a test process alive
    holder.once("error", reject);
    holder.listen(port, "127.0.0.1", () => resolve(() => new Promise<void>((closed) => holder.close(() => closed()))));
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    // A paused process only acts on SIGTERM once it runs again.
    child.kill("SIGCONT");
    child.kill("SIGTERM");
  });
}

/** Start a throw-away redis-server on a free loopback port (no persistence). */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  let child = await spawnRedis(port);
  let release: (() => Promise<void>) | null = null;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop: async () => {
      await stopChild(child);
      // Until restart(), nobody else may listen here (the port may be taken already: then the
      // restart says so rather than talking to a stranger).
      release ??= await holdPort(port).catch(() => null);
    },
    pause: () => child.kill("SIGSTOP"),
    resume: () => child.kill("SIGCONT"),
    restart: async () => {
      await release?.();
      release = null;
      child = await spawnRedis(port);
    },
  };
}

export interface RedisCluster {
  /** `redis+cluster://127.0.0.1:a,127.0.0.1:b,127.0.0.1:c` */
  url: string;
  /** Every node's port (masters first, as created). */
  ports: number[];
  /** Send `signal` to the redis-server on `port` (SIGKILL a master, SIGSTOP/SIGCONT a replica). */
  signal: (port: number, signal: NodeJS.Signals) => void;
  stop: () => Promise<void>;
}

export interface ClusterOptions {
  /** Replicas per master (`--cluster-replicas`); 0 by default. */
  replicas?: number;
  /** `cluster-node-timeout`: how long a silent master takes to be failed over. */
  nodeTimeoutMs?: number;
}

/** Why the Redis Cluster tests cannot run here, or null when redis-server and redis-cli are installed. */
export function clusterUnavailable(): string | null {
  for (const binary of [serverBinary(), cliBinary()]) {
    if (!installed(binary)) return `${binary} is not installed`;
  }
  return null;
}

/**
 * Start a Redis Cluster of three masters on free loopback ports (no persistence), each with
 * `replicas` replicas: `redis-server --cluster-enabled yes` per node, then `redis-cli --cluster create`.
 */
export async function startRedisCluster({
  replicas = 0,
  nodeTimeoutMs = 5000,
}: ClusterOptions = {}): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), "redis-cluster-"));
  const children: ChildProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(children.map(stopChild));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const ports: number[] = [];
    for (let i = 0; i < 3 * (1 + replicas); i += 1) ports.push(await freePort());
    for (const port of ports) {
      children.push(
        await spawnRedis(
          port,
          [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            `nodes-${port}.conf`,
            "--cluster-node-timeout",
            String(nodeTimeoutMs),
            // A replica fails over however long it was cut off (the tests pause replicas on purpose).
            "--cluster-replica-validity-factor",
            "0",
          ],
          dir,
        ),
      );
    }
    const nodes = ports.map((port) => `127.0.0.1:${port}`);
    await run(cliBinary(), ["--cluster", "create", ...nodes, "--cluster-replicas", String(replicas), "--cluster-yes"]);
    // Every node must agree that all slots are served before the tests start.
    const deadline = Date.now() + 20_000;
    for (const port of ports) {
      for (;;) {
        const { stdout } = await run(cliBinary(), ["-p", String(port), "cluster", "info"]);
        if (stdout.includes("cluster_state:ok")) break;
        if (Date.now() > deadline) throw new Error(`cluster node ${port} did not reach cluster_state:ok`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    const signal = (port: number, name: NodeJS.Signals): void => {
      children[ports.indexOf(port)]?.kill(name);
    };
    return { url: `redis+cluster://${nodes.join(",")}`, ports, signal, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
