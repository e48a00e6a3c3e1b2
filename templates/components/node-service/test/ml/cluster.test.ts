// The job bus on a real Redis Cluster (three masters on loopback) with BUS_PARTITIONS=4: jobs spread
// over the partitions by crc32(id), every MULTI stays in one slot, and the gateway follows the
// events of every partition. The worker side is simulated here, following contracts/README.md.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BusLayout, JOBS_GROUP } from "../../src/ml/bus.js";
import { connectRedis, type RedisClient } from "../../src/redis.js";
import { authed, type RunningApp, startApp } from "../support/app.js";
import { clusterUnavailable, type RedisCluster, startRedisCluster } from "../support/redis.js";
import {
  expectContract,
  type FakeMl,
  IRIS,
  openSse,
  PREDICTION,
  startFakeMl,
  workerFinishes,
  workerReads,
  workerStarts,
} from "./helpers.js";

const PARTITIONS = 4;
const layout = new BusLayout(PARTITIONS);
const skipReason = clusterUnavailable();

let cluster: RedisCluster;
let redis: RedisClient;
let ml: FakeMl;
let gateway: RunningApp;

async function createJob(): Promise<string> {
  const res = await fetch(`${gateway.url}/v1/jobs`, {
    method: "POST",
    headers: authed({ "content-type": "application/json" }),
    body: JSON.stringify(IRIS),
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

/** Enqueue until every partition has at least one job. */
async function jobsOnEveryPartition(): Promise<Map<number, string[]>> {
  const byPartition = new Map<number, string[]>();
  for (let i = 0; i < 200 && byPartition.size < PARTITIONS; i += 1) {
    const id = await createJob();
    const partition = layout.of(id).partition;
    byPartition.set(partition, [...(byPartition.get(partition) ?? []), id]);
  }
  expect(byPartition.size).toBe(PARTITIONS);
  return byPartition;
}

describe.skipIf(skipReason !== null)(
  `job bus on a three-master Redis Cluster${skipReason === null ? "" : ` (skipped: ${skipReason})`}`,
  () => {
    beforeAll(async () => {
      cluster = await startRedisCluster();
      redis = connectRedis(cluster.url);
      ml = await startFakeMl();
      gateway = await startApp({
        REDIS_URL: cluster.url,
        ML_URL: ml.url,
        BUS_PARTITIONS: String(PARTITIONS),
        RATE_LIMIT_MAX: "10000",
        WATCH_RECHECK_MS: "60000",
      });
    }, 60_000);

    afterAll(async () => {
      await gateway?.close();
      redis?.disconnect();
      await ml?.close();
      await cluster?.stop();
    });

    it("keeps each partition in one slot, and the partitions on more than one master", async () => {
      const slots = await redis.cluster("SLOTS");
      expect(slots.length).toBeGreaterThanOrEqual(3);
      const owners = new Set<string>();
      for (const keys of layout.partitions) {
        const slot = Number(await redis.cluster("KEYSLOT", keys.jobs));
        for (const key of [keys.events, keys.dead, keys.deadlines, keys.job("any-id")]) {
          expect(Number(await redis.cluster("KEYSLOT", key)), key).toBe(slot);
        }
        const [, , owner] = slots.find(([from, to]) => slot >= from && slot <= to) ?? [];
        owners.add(`${owner?.[0]}:${owner?.[1]}`);
      }
      expect(owners.size).toBeGreaterThan(1);
    });

    it("enqueues on the job's partition; a worker's results come back through GET and SSE", async () => {
      const byPartition = await jobsOnEveryPartition();
      const watched = [...byPartition.values()].map((ids) => ids[0] as string);
      const clients = await Promise.all(watched.map((id) => openSse(`${gateway.url}/v1/jobs/${id}/events`, authed())));
      for (const [i, sse] of clients.entries()) expect((await sse.next())?.data).toMatchObject({ id: watched[i] });

      for (const keys of layout.partitions) {
        const ids = byPartition.get(keys.partition) ?? [];
        for (const id of ids) {
          expect(await redis.hget(keys.job(id), "status")).toBe("queued");
          expect(await redis.zscore(keys.deadlines, id)).not.toBeNull();
        }
        // The simulated worker: read the partition's stream as the group, run, commit per BUS.md.
        const entries = await workerReads(redis, keys);
        expect(entries.map(({ fields }) => fields.job_id).sort()).toEqual([...ids].sort());
        for (const { entryId, fields } of entries) {
          expectContract("job-entry", fields);
          const id = fields.job_id as string;
          await workerStarts(redis, id, PARTITIONS);
          await workerFinishes(redis, id, "done", { partitions: PARTITIONS, entryId });
        }
        const [group] = (await redis.xinfo("GROUPS", keys.jobs)) as unknown[][];
        expect(group?.[group.indexOf("name") + 1]).toBe(JOBS_GROUP);
        expect(group?.[group.indexOf("pending") + 1]).toBe(0);
      }

      for (const [i, sse] of clients.entries()) {
        const events = [await sse.next(), await sse.next()];
        expect(events.map((event) => (event?.data as { type?: string } | undefined)?.type)).toEqual([
          "running",
          "done",
        ]);
        expect(events[1]?.data).toMatchObject({ id: watched[i], result: PREDICTION });
        expect(await sse.next()).toBeNull();
      }
      for (const id of watched) {
        const res = await fetch(`${gateway.url}/v1/jobs/${id}`, { headers: authed() });
        expect(await res.json()).toEqual({ id, status: "done", result: PREDICTION });
      }
    }, 30_000);

    it("an idempotent replay finds the job on its partition", async () => {
      const send = () =>
        fetch(`${gateway.url}/v1/jobs`, {
          method: "POST",
          headers: authed({ "content-type": "application/json", "idempotency-key": "cluster-1" }),
          body: JSON.stringify(IRIS),
        });
      const first = (await (await send()).json()) as { id: string };
      const again = (await (await send()).json()) as { id: string };
      expect(again.id).toBe(first.id);
    });

    it("detects a trimmed gap on one partition and sends the final state", async () => {
      const id = await createJob();
      const keys = layout.of(id);
      const sse = await openSse(`${gateway.url}/v1/jobs/${id}/events`, authed());
      expect((await sse.next())?.data).toMatchObject({ id, type: "queued" });
      await redis
        .multi()
        .hset(keys.job(id), { status: "done", result: JSON.stringify(PREDICTION), finished_at: String(Date.now()) })
        .xtrim(keys.events, "MINID", String(Date.now() + 1))
        .exec();
      // Another job on the same partition writes the next event.
      let other = await createJob();
      while (layout.of(other).partition !== keys.partition) other = await createJob();
      const done = await sse.next(3_000);
      expect(done?.data).toMatchObject({ id, type: "done", result: PREDICTION });
      expect(await sse.next()).toBeNull();
    }, 30_000);

    it("/readyz is ready with one events connection per partition", async () => {
      const res = await fetch(`${gateway.url}/readyz?verbose`);
      expect(res.status).toBe(200);
      expect(((await res.json()) as { checks: Record<string, string> }).checks["job-events"]).toBe("ok");
    });
  },
);
