/**
 * `@dialtone/client`: your app's side of Dialtone. Runs in Node ≥ 20 and in browsers.
 *
 * - `createTelephonyClient`: the readiness answer, a shared live subscription, worker calls, and
 *   the calls' story (`calls`, `onCallEvent`).
 * - `followStatus` / `followAll`: the live streams underneath (browser code points them at the
 *   app's own routes; see `@dialtone/client/routes`).
 * - Two errors: `TelephonyUnavailable` (try later) and `TelephonyRequestError` (fix the request).
 */

export { followCalls, isCallRecord } from "./calls.js";
export type { CallEvent, CallEventType, CallRecord, CallState } from "./calls.js";
export { createTelephonyClient } from "./client.js";
export type { Call, Credential, DialRequest, TelephonyClient, TelephonyClientOptions } from "./client.js";
export { DEFAULT_RETRY_AFTER, TelephonyRequestError, TelephonyUnavailable, parseRetryAfter } from "./errors.js";
export { DEFAULT_UNAVAILABLE_AFTER_MS, followAll, followStatus } from "./follow.js";
export type { Fleet, FollowOptions } from "./follow.js";
export { CONNECTING, isStatusView, stateOf, unknownState } from "./state.js";
export type { TelephonyState } from "./state.js";
export type { DrainingWorker, FailureMark, FailureView, Phase, Restarts, StatusView, Word } from "./status.js";
export { DEFAULT_BACKOFF, DEFAULT_STALE_AFTER_MS, backoffDelay, eventStream } from "./stream.js";
export type { Backoff, StreamHandlers, StreamOptions } from "./stream.js";
