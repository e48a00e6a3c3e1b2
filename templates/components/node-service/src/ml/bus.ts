// Key layout of the job bus (contracts/README.md, "Bus protocol"): BUS_PARTITIONS partitions, each
// under its own hash tag `{jobs:p}`, so every multi-key transaction touches one Redis Cluster slot.
import { crc32 } from "node:zlib";

export const JOBS_GROUP = "ml-workers";
export const JOB_TTL_SECONDS = 86_400;

export interface PartitionKeys {
  readonly partition: number;
  /** Job stream read by the workers (consumer group `ml-workers`). */
  readonly jobs: string;
  /** Dead-letter stream (written by the workers). */
  readonly dead: string;
  /** Job events (queued, running, done, failed), trimmed by age. */
  readonly events: string;
  /** Sorted set of job ids scored by their deadline (ms epoch). */
  readonly deadlines: string;
  /** The hash of one job of this partition. */
  job(id: string): string;
}

function partitionKeys(partition: number): PartitionKeys {
  const tag = `{jobs:${partition}}`;
  return {
    partition,
    jobs: `${tag}:predict`,
    dead: `${tag}:dead`,
    events: `${tag}:events`,
    deadlines: `${tag}:deadlines`,
    job: (id) => `${tag}:job:${id}`,
  };
}

export class BusLayout {
  readonly partitions: readonly PartitionKeys[];

  constructor(count: number) {
    if (!Number.isInteger(count) || count < 1) throw new Error("BUS_PARTITIONS must be an integer >= 1");
    this.partitions = Array.from({ length: count }, (_, p) => partitionKeys(p));
  }

  /** The partition of a job: crc32 of its id (UTF-8) modulo the partition count, as every service computes it. */
  of(jobId: string): PartitionKeys {
    return this.partitions[crc32(jobId) % this.partitions.length] as PartitionKeys;
  }
}
