import { hash, timingSafeEqual } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from "fastify";
import { csv, SHA256_ENTRY } from "./config.js";
import { HttpError } from "./errors.js";

export const API_KEY_HEADER = "x-api-key";

declare module "fastify" {
  interface FastifyContextConfig {
    /** Route needs no API key (health probes). */
    public?: boolean;
    /** Route also accepts the key as `?api_key=` (WebSocket upgrades: browsers cannot set headers). */
    allowQueryKey?: boolean;
  }
  interface FastifyRequest {
    /** Short, non-secret id of the caller's API key (sha256 prefix), or null when anonymous/invalid. */
    apiKeyId: string | null;
    /** sha256 of the caller's valid API key (never logged): what job ownership is derived from. */
    apiKeyDigest: Buffer | null;
  }
}

function sha256(value: string): Buffer {
  // One-shot: no Hash object per call (this runs on every request).
  return hash("sha256", value, "buffer");
}

/**
 * Keys are held only as sha256 digests; `sha256:<hex>` entries (any case) are taken as digests already.
 * loadConfig has refused an empty list and malformed digests, so every entry here is usable.
 */
export function parseApiKeys(value: string): Buffer[] {
  return csv(value).map((entry) => {
    const digest = SHA256_ENTRY.exec(entry)?.[1];
    return digest === undefined ? sha256(entry) : Buffer.from(digest, "hex");
  });
}

export class ApiKeyVerifier {
  constructor(private readonly digests: readonly Buffer[]) {}

  /**
   * Returns the key's sha256 digest when `key` is valid: the configured entry itself, so what is
   * derived from it (key id, owner id) can be computed once per key. Compares every digest in
   * constant time.
   */
  verify(key: string | undefined): Buffer | null {
    if (key === undefined || key.length === 0 || key.length > 512) return null;
    const digest = sha256(key);
    let match: Buffer | null = null;
    for (const candidate of this.digests) {
      if (timingSafeEqual(candidate, digest)) match = candidate;
    }
    return match;
  }
}

const keyIds = new WeakMap<Buffer, string>();

/** The key id shown in logs and used by rate limits and WS_ROOMS: the first 12 hex digits of sha256(key). */
export function keyId(digest: Buffer): string {
  let id = keyIds.get(digest);
  if (id === undefined) {
    id = digest.toString("hex").slice(0, 12);
    keyIds.set(digest, id);
  }
  return id;
}

function presentedKey(request: FastifyRequest): string | undefined {
  const header = request.headers[API_KEY_HEADER];
  if (typeof header === "string") return header;
  if (request.routeOptions.config.allowQueryKey === true) {
    const query = request.query as Record<string, unknown> | undefined;
    const fromQuery = query?.api_key;
    if (typeof fromQuery === "string") return fromQuery;
  }
  return undefined;
}

/** The last key presented on a connection and what verifying it gave. */
interface Verified {
  key: string | undefined;
  digest: Buffer | null;
}
const lastVerified = new WeakMap<object, Verified>();

/**
 * Verifies `key`, reusing the answer for the key the same connection presented last (a keep-alive
 * client sends the same key on every request). Comparing the new key with the previous one compares
 * two strings that client sent, never a configured key: verify() stays constant-time.
 */
function verifyOnConnection(request: FastifyRequest, verifier: ApiKeyVerifier, key: string | undefined): Buffer | null {
  const socket = request.raw.socket as object | undefined;
  if (socket === undefined || socket === null) return verifier.verify(key);
  const last = lastVerified.get(socket);
  if (last !== undefined && last.key === key) return last.digest;
  const digest = verifier.verify(key);
  lastVerified.set(socket, { key, digest });
  return digest;
}

/**
 * API-key authentication for every route except those with `config: { public: true }`.
 *
 * - `request.apiKeyId` is resolved first (app-level onRequest) so the rate limiter can key by it;
 * - the 401 check is appended to each route's own onRequest hooks, after the rate limiter's hook
 *   (install this after registering @fastify/rate-limit), so failed attempts are rate limited per IP too.
 * Routes registered later, including those of child plugins (the gateway), are covered automatically.
 */
export function installAuth(app: FastifyInstance, verifier: ApiKeyVerifier): void {
  app.decorateRequest("apiKeyId", null);
  app.decorateRequest("apiKeyDigest", null);

  // Callback hooks: they run on every request, and an async hook costs a promise each time.
  app.addHook("onRequest", (request, _reply, done) => {
    const digest = verifyOnConnection(request, verifier, presentedKey(request));
    request.apiKeyDigest = digest;
    request.apiKeyId = digest === null ? null : keyId(digest);
    done();
  });

  const requireKey: onRequestHookHandler = (request: FastifyRequest, _reply: FastifyReply, done) => {
    if (request.apiKeyId !== null) {
      done();
      return;
    }
    done(
      new HttpError(401, "unauthorized", "Missing or invalid API key (send it in the X-API-Key header)", {
        "www-authenticate": 'ApiKey header="X-API-Key"',
      }),
    );
  };

  app.addHook("onRoute", (route) => {
    if (route.config?.public === true) return;
    const existing = route.onRequest;
    route.onRequest = [...(existing === undefined ? [] : Array.isArray(existing) ? existing : [existing]), requireKey];
  });
}
