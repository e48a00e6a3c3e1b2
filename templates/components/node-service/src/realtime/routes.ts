import { randomUUID } from "node:crypto";
import type { FastifyRequest } from "fastify";
import { Type } from "typebox";
import { Compile } from "typebox/compile";
import { type Config, csv } from "../config.js";
import { ErrorResponse, HttpError, unavailable } from "../errors.js";
import type { App } from "../types.js";
import { Connection, ConnectionQuota } from "./connection.js";
import type { RoomHub, RoomMember } from "./hub.js";
import { limitMessages } from "./message-limit.js";

const RoomName = Type.String({ pattern: "^[A-Za-z0-9_.:-]{1,64}$" });

/** Frames a client may send (JSON text). Anything else is answered with an error frame. */
export const ClientMessage = Type.Union([
  Type.Object({ type: Type.Literal("join"), room: RoomName }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal("leave"), room: RoomName }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal("message"), room: RoomName, data: Type.Unknown() }, { additionalProperties: false }),
]);
const ClientMessageCheck = Compile(ClientMessage);

/** How deep a message's `data` may nest: far past any real payload, far short of what makes
 * JSON.stringify overflow the stack (a 40 KB frame of nested arrays did, answered "try again"). */
export const MAX_DATA_DEPTH = 64;

/** Whether `value` nests arrays and objects deeper than `max` levels (iterative: no recursion). */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  const pending: [unknown, number][] = [[value, 0]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [item, depth] = next;
    if (item === null || typeof item !== "object") continue;
    if (depth >= max) return true;
    for (const child of Object.values(item)) pending.push([child, depth + 1]);
  }
  return false;
}

/** Rooms with this prefix are read-only for WebSocket clients: only the server publishes there. */
export const SERVER_ROOM_PREFIX = "sys:";

/** Whether the key with id `keyId` may join (and publish to) `room`, per WS_ROOMS (see config.ts). */
export type RoomPolicy = (keyId: string | null, room: string) => boolean;

export function roomPolicy(spec: string, only: (pattern: string) => boolean = () => true): RoomPolicy {
  const rules = csv(spec)
    .map((rule) => {
      const split = rule.indexOf("=");
      return { who: rule.slice(0, split).trim(), pattern: rule.slice(split + 1).trim() };
    })
    .filter(({ pattern }) => only(pattern));
  return (keyId, room) =>
    keyId !== null &&
    rules.some(({ who, pattern }) => {
      if (who !== "*" && who !== keyId) return false;
      const expected = pattern.replaceAll("{key}", keyId);
      return expected.endsWith("*") ? room.startsWith(expected.slice(0, -1)) : room === expected;
    });
}

/** The frames of /ws and its error codes that refuse a valid frame: its metrics' label values. */
const FRAMES = {
  received: ["join", "leave", "message"],
  sent: ["welcome", "joined", "left", "message", "error"],
  refused: ["forbidden", "too_many_rooms", "read_only", "not_joined", "unavailable"],
} as const;
type Sent = (typeof FRAMES.sent)[number];
type Refused = (typeof FRAMES.refused)[number];
type Client = Connection<(typeof FRAMES.received)[number], Sent, Refused>;

export interface RealtimeOptions {
  /** Also expose POST /v1/rooms/:room/messages so backends can publish over HTTP. */
  publishRoute: boolean;
}

export async function registerRealtime(
  app: App,
  config: Config,
  hub: RoomHub,
  options: RealtimeOptions,
): Promise<void> {
  const origins = new Set(csv(config.CORS_ORIGINS));
  const mayUse = roomPolicy(config.WS_ROOMS);
  // Server rooms take HTTP publishes only from keys a rule names them for (`<key id>=sys:*`): a
  // wildcard such as the default `*=*` also covers the keys browsers hold, which only read them.
  const mayPublishToServerRooms = roomPolicy(config.WS_ROOMS, (p) => p.startsWith(SERVER_ROOM_PREFIX));
  const alive = new Map<Client, boolean>();
  const metrics = app.socketMetrics.route("/ws", FRAMES);
  const quota = new ConnectionQuota(config.WS_MAX_CONNECTIONS_PER_KEY);

  // Heartbeat: ping every WS_HEARTBEAT_MS; a client that has not answered the previous ping is dropped.
  const heartbeat = setInterval(() => {
    for (const [connection, answered] of alive) {
      if (!answered) {
        connection.terminate("heartbeat_timeout");
        continue;
      }
      alive.set(connection, false);
      connection.socket.ping();
    }
  }, config.WS_HEARTBEAT_MS);
  heartbeat.unref();
  app.addHook("onClose", async () => clearInterval(heartbeat));

  if (hub.subscriberStatus() !== null) {
    app.readinessChecks.push({
      name: "redis-subscriber",
      check: async () => {
        const status = hub.subscriberStatus();
        if (status !== "ready") throw unavailable(`subscriber connection is ${status}`);
      },
    });
  }

  // Browsers always send Origin on WebSocket upgrades: refuse origins that are not allowed.
  const checkOrigin = async (request: FastifyRequest) => {
    const origin = request.headers.origin;
    if (origin !== undefined && !origins.has(origin)) throw new HttpError(403, "forbidden", "Origin not allowed");
  };

  /**
   * WebSocket endpoint. Authenticate with the X-API-Key header or, for browsers (which cannot
   * set headers on a WebSocket), with `?api_key=` — accepted on this route only, and redacted from logs.
   */
  app.get(
    "/ws",
    {
      websocket: true,
      config: { allowQueryKey: true },
      schema: {
        querystring: Type.Object(
          { api_key: Type.Optional(Type.String({ maxLength: 512 })) },
          { additionalProperties: false },
        ),
      },
      preValidation: checkOrigin,
    },
    (socket, request) => {
      const connection: Client = new Connection(socket, metrics);
      // Auth answered 401 before the upgrade when no valid key was sent.
      if (!quota.admit(request.apiKeyId ?? "", connection)) return;
      const joined = new Set<string>();
      // The hub sends room messages; the frames of this endpoint go through `reply`.
      const member: RoomMember = { id: randomUUID(), send: (frame) => connection.send("message", frame) };
      const reply = (payload: { type: Sent } & Record<string, unknown>) =>
        connection.send(payload.type, JSON.stringify(payload));
      const fail = (code: string, message: string) => reply({ type: "error", code, message });
      /** Answers a valid frame with the error frame `code`, counted as refused. */
      const refuse = (code: Refused, message: string) => {
        connection.refused(code);
        fail(code, message);
      };
      const withinLimit = limitMessages(connection, {
        max: config.WS_RATE_LIMIT_MAX,
        windowMs: config.WS_RATE_LIMIT_WINDOW_MS,
        fail,
      });
      const log = request.log.child({ connectionId: member.id });

      alive.set(connection, true);
      socket.on("pong", () => alive.set(connection, true));
      socket.on("error", (error) => log.warn({ err: error }, "websocket error"));
      socket.on("close", () => {
        alive.delete(connection);
        for (const room of joined) hub.leave(room, member);
        joined.clear();
      });

      socket.on("message", (raw, isBinary) => {
        if (!withinLimit()) return undefined;
        if (isBinary) {
          connection.rejected("binary");
          return fail("unsupported", "Binary frames are not supported; send JSON text");
        }
        let parsed: unknown;
        try {
          parsed = JSON.parse(raw.toString());
        } catch {
          connection.rejected("invalid");
          return fail("invalid_json", "Frame is not valid JSON");
        }
        if (!ClientMessageCheck.Check(parsed)) {
          const first = [...ClientMessageCheck.Errors(parsed)][0];
          connection.rejected("invalid");
          return fail(
            "invalid_message",
            first === undefined ? "Invalid message" : `${first.instancePath || "/"} ${first.message}`,
          );
        }
        const message = parsed;
        if (message.type === "message" && nestsDeeperThan(message.data, MAX_DATA_DEPTH)) {
          connection.rejected("invalid");
          return fail("invalid_message", `/data nests deeper than ${MAX_DATA_DEPTH} levels`);
        }
        connection.received(message.type);
        void (async () => {
          switch (message.type) {
            case "join":
              if (!mayUse(request.apiKeyId, message.room)) {
                return refuse("forbidden", `This API key may not join ${message.room} (WS_ROOMS)`);
              }
              if (!joined.has(message.room) && joined.size >= config.WS_MAX_ROOMS) {
                return refuse("too_many_rooms", `A connection may join at most ${config.WS_MAX_ROOMS} rooms`);
              }
              joined.add(message.room);
              await hub.join(message.room, member);
              return reply({ type: "joined", room: message.room });
            case "leave":
              joined.delete(message.room);
              hub.leave(message.room, member);
              return reply({ type: "left", room: message.room });
            case "message":
              if (message.room.startsWith(SERVER_ROOM_PREFIX)) {
                return refuse("read_only", `Rooms starting with ${SERVER_ROOM_PREFIX} only carry server messages`);
              }
              if (!joined.has(message.room)) return refuse("not_joined", `Join ${message.room} before sending to it`);
              await hub.publish(message.room, message.data, member.id);
              return undefined;
          }
        })().catch((error: unknown) => {
          log.warn({ err: error }, "websocket message failed");
          if (message.type === "join") joined.delete(message.room);
          refuse("unavailable", "The message could not be processed, try again");
        });
        return undefined;
      });

      reply({ type: "welcome", connectionId: member.id });
    },
  );

  if (!options.publishRoute) return;

  /** Publish into a room from a backend (notifications, dashboards); `sys:` rooms from named keys. */
  app.post(
    "/v1/rooms/:room/messages",
    {
      schema: {
        params: Type.Object({ room: RoomName }, { additionalProperties: false }),
        body: Type.Object({ data: Type.Unknown() }, { additionalProperties: false }),
        response: {
          202: Type.Object({ id: Type.String(), room: Type.String() }, { additionalProperties: false }),
          "4xx": ErrorResponse,
          "5xx": ErrorResponse,
        },
      },
    },
    async (request, reply) => {
      const { room } = request.params;
      if (nestsDeeperThan(request.body.data, MAX_DATA_DEPTH)) {
        throw new HttpError(400, "invalid_message", `/data nests deeper than ${MAX_DATA_DEPTH} levels`);
      }
      if (!mayUse(request.apiKeyId, room)) {
        throw new HttpError(403, "forbidden", `This API key may not publish to ${room} (WS_ROOMS)`);
      }
      if (room.startsWith(SERVER_ROOM_PREFIX) && !mayPublishToServerRooms(request.apiKeyId, room)) {
        const rule = `${request.apiKeyId ?? "<key id>"}=${SERVER_ROOM_PREFIX}*`;
        const why = `Only a key WS_ROOMS names for ${SERVER_ROOM_PREFIX} rooms publishes here (${rule})`;
        throw new HttpError(403, "read_only", why);
      }
      const id = await hub.publish(room, request.body.data, `key:${request.apiKeyId ?? "unknown"}`);
      return reply.code(202).send({ id, room });
    },
  );
}
