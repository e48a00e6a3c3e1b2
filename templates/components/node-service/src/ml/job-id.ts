// Job ids the gateway can recognise without storage (contracts/README.md, "Job ids and owners").
//
// An id is uuid-shaped (RFC 9562 version 8, "custom"), so every service that expects a uuid takes
// it: bytes 0–9 are random (74 bits once the version and variant bits are set), bytes 10–15 are a
// tag, HMAC-SHA256(sha256(API key), "job-id" ‖ bytes 0–9) cut to 48 bits. The tag binds the id to
// the key that created the job: the gateway tells "issued to this caller, now gone" (410) from
// "never issued to this caller" (404: unknown, or another key's job) with no Redis round trip,
// so both 404 cases take the same path and the same time.
import { createHmac, hash, randomFillSync, timingSafeEqual } from "node:crypto";

const NONCE_BYTES = 10;
const VERSION = 0x80;
/** Random bytes are drawn from the CSPRNG in blocks of this size (as crypto.randomUUID does), each byte used once. */
const POOL_BYTES = 4_000;
let pool = Buffer.alloc(0);
let taken = 0;

function freshNonce(): Buffer {
  if (taken + NONCE_BYTES > pool.length) {
    pool = randomFillSync(Buffer.allocUnsafe(POOL_BYTES));
    taken = 0;
  }
  // A view: its bytes are used for this id only (the caller copies them into the id's string).
  const nonce = pool.subarray(taken, taken + NONCE_BYTES);
  taken += NONCE_BYTES;
  return nonce;
}

function tag(ownerKey: Buffer, nonce: Buffer): Buffer {
  return createHmac("sha256", ownerKey)
    .update("job-id\0")
    .update(nonce)
    .digest()
    .subarray(0, 16 - NONCE_BYTES);
}

function format(bytes: Buffer): string {
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A fresh job id for the caller whose API key digest is `ownerKey`. */
export function issueJobId(ownerKey: Buffer): string {
  const nonce = freshNonce();
  nonce[6] = ((nonce[6] ?? 0) & 0x0f) | VERSION;
  nonce[8] = ((nonce[8] ?? 0) & 0x3f) | 0x80;
  return format(Buffer.concat([nonce, tag(ownerKey, nonce)]));
}

/** Whether `id` (a uuid-shaped string) was issued by a gateway to the caller whose key digest is `ownerKey`. */
export function issuedTo(id: string, ownerKey: Buffer): boolean {
  const bytes = Buffer.from(id.replaceAll("-", ""), "hex");
  if (bytes.length !== 16 || ((bytes[6] ?? 0) & 0xf0) !== VERSION) return false;
  return timingSafeEqual(tag(ownerKey, bytes.subarray(0, NONCE_BYTES)), bytes.subarray(NONCE_BYTES));
}

/** Owner ids by digest: auth hands out the configured digest objects, so this is computed once per key. */
const owners = new WeakMap<Buffer, string>();

/**
 * The owner recorded in the job hash (`owner`): the first 16 hex digits of sha256(sha256(API key)),
 * never the key or its digest (the digest is the tag's secret, and a valid `sha256:` entry of API_KEYS).
 */
export function ownerId(ownerKey: Buffer): string {
  let id = owners.get(ownerKey);
  if (id === undefined) {
    id = hash("sha256", ownerKey, "hex").slice(0, 16);
    owners.set(ownerKey, id);
  }
  return id;
}
