// TypeBox mirrors of the shared JSON Schemas in ../contracts (the gateway's tests check they agree).
import Type, { type Static } from "typebox";

export const PredictRequest = Type.Object(
  {
    features: Type.Array(Type.Number({ minimum: 0, maximum: 100 }), {
      minItems: 4,
      maxItems: 4,
      description: "[sepal_length, sepal_width, petal_length, petal_width]",
    }),
  },
  { additionalProperties: false },
);
export type PredictRequest = Static<typeof PredictRequest>;

export const PredictResponse = Type.Object(
  {
    label: Type.String({ minLength: 1 }),
    // Spelled as in the contract (additionalProperties) rather than Type.Record (patternProperties).
    probabilities: Type.Unsafe<Record<string, number>>({
      type: "object",
      minProperties: 1,
      additionalProperties: Type.Number({ minimum: 0, maximum: 1 }),
    }),
    model_version: Type.String({ minLength: 1 }),
  },
  { additionalProperties: false },
);
export type PredictResponse = Static<typeof PredictResponse>;

export const JOB_STATUSES = ["queued", "running", "done", "failed"] as const;
export const JobStatusValue = Type.Enum(JOB_STATUSES);
export type JobStatusValue = Static<typeof JobStatusValue>;

export const JOB_EVENT_TYPES = ["queued", "running", "progress", "done", "failed"] as const;
export const JobEventType = Type.Enum(JOB_EVENT_TYPES);
export type JobEventType = Static<typeof JobEventType>;

/** Job ids are uuid-shaped (job-entry.schema.json); the gateway issues tagged version 8 ids (job-id.ts). */
export const JobId = Type.String({
  pattern: "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
});

export const JobParams = Type.Object({ id: JobId }, { additionalProperties: false });
export type JobParams = Static<typeof JobParams>;

export const JobAccepted = Type.Object({ id: Type.String({ minLength: 1 }) }, { additionalProperties: false });
export type JobAccepted = Static<typeof JobAccepted>;

export const JobStatus = Type.Object(
  {
    id: Type.String({ minLength: 1 }),
    status: JobStatusValue,
    result: Type.Optional(PredictResponse),
    error: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
export type JobStatus = Static<typeof JobStatus>;

export const JobEvent = Type.Object(
  {
    id: Type.String({ minLength: 1 }),
    type: JobEventType,
    status: JobStatusValue,
    progress: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    result: Type.Optional(PredictResponse),
    error: Type.Optional(Type.String()),
    ts: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type JobEvent = Static<typeof JobEvent>;

export const JobsHeaders = Type.Object({
  "idempotency-key": Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: "^[\\x21-\\x7e]+$" })),
});
export type JobsHeaders = Static<typeof JobsHeaders>;
