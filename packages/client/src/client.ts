/** `createTelephonyClient`: the readiness answer, a shared live subscription, and worker calls. */

import { followCalls, isCallRecord, type CallEvent, type CallRecord } from "./calls.js";
import { DEFAULT_RETRY_AFTER, TelephonyRequestError, TelephonyUnavailable } from "./errors.js";
import { followStatus } from "./follow.js";
import { errorFor, requestJson, type Fetch } from "./http.js";
import type { StatusView } from "./status.js";
import { CONNECTING, isStatusView, stateOf, unknownState, type TelephonyState } from "./state.js";
import type { Backoff } from "./stream.js";

export interface TelephonyClientOptions {
  /** The readiness service, e.g. `http://dialtone-readiness.dialtone-system.svc`. */
  readinessUrl: string;
  /** The TelephonyService's namespace and name. */
  namespace: string;
  service: string;
  /**
   * The worker Service, for `createCredential`, `token`, `dial` and `hangup` (server code only).
   * Default: the `endpoint` the readiness answer names (`http://<service>.<namespace>.svc:<port>`).
   * While the answer says `via: "backup"` (`spec.failover`), calls go to the backup's endpoint.
   */
  workerUrl?: string;
  /**
   * The worker's bearer token, when its TelephonyService sets `spec.auth` (server code only: never
   * ship it to a browser). Sent as `Authorization: Bearer <token>` on every worker request.
   */
  workerToken?: string;
  /** Per request. Default 5 s (the worker's own Telnyx timeout is shorter). */
  timeoutMs?: number;
  /** A lost status stream turns `unknown` after this long. Default 3 s. */
  unavailableAfterMs?: number;
  staleAfterMs?: number;
  backoff?: Backoff;
  fetch?: Fetch;
}

export interface Credential {
  credentialId: string;
  sipUsername: string;
  /** A WebRTC login token for the browser SDK. */
  token: string;
  /** When the token stops working (RFC 3339). */
  expiresAt: string;
}

export interface DialRequest {
  /** E.164 (`+15551234567`) or a `sip:` URI. */
  to: string;
  from: string;
  /** Ring timeout, 5 to 600 s. */
  timeoutSecs?: number;
  /** Free text (≤ 4096 bytes), handed back in Telnyx's webhooks. */
  clientState?: string;
}

export interface Call {
  callControlId: string;
  callLegId?: string | null;
  callSessionId?: string | null;
}

export interface TelephonyClient {
  readonly namespace: string;
  readonly service: string;
  /** The readiness answer (200 or 503 alike). Throws `TelephonyUnavailable` when there is none. */
  status(): Promise<StatusView>;
  /** The current state; never throws (no answer is `unknown`). */
  state(): Promise<TelephonyState>;
  /**
   * Live state: `onChange` gets the current state at once and every change. One stream per
   * client, shared by every subscriber. Returns `unsubscribe`.
   */
  subscribe(onChange: (state: TelephonyState) => void): () => void;
  createCredential(request: { username: string }): Promise<Credential>;
  /** A fresh WebRTC login token for `username` (its credential is created or reused). */
  token(username: string): Promise<{ token: string; expiresAt: string }>;
  dial(request: DialRequest): Promise<Call>;
  hangup(callControlId: string): Promise<void>;
  /** The calls the worker knows, newest first (needs the worker's webhooks for their story). */
  calls(): Promise<CallRecord[]>;
  call(callControlId: string): Promise<CallRecord>;
  startRecording(callControlId: string, options?: { format?: "mp3" | "wav"; channels?: "single" | "dual" }): Promise<void>;
  stopRecording(callControlId: string): Promise<void>;
  /**
   * The worker's call events, live (server code: the worker Service isn't reachable from
   * browsers). Resumes after a reconnect; `reset` says events were missed. Returns `close`.
   */
  onCallEvent(handler: (event: CallEvent) => void): () => void;
}

export function createTelephonyClient(options: TelephonyClientOptions): TelephonyClient {
  const fetchFn: Fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const timeoutMs = options.timeoutMs ?? 5_000;
  const base = options.readinessUrl.replace(/\/+$/, "");
  const { namespace, service } = options;
  const statusUrl = `${base}/v1/status/${encodeURIComponent(namespace)}/${encodeURIComponent(service)}`;

  const status = async (): Promise<StatusView> => {
    const answer = await requestJson(fetchFn, statusUrl, { headers: { accept: "application/json" } }, timeoutMs, "the readiness service");
    if ((answer.status === 200 || answer.status === 503) && isStatusView(answer.body)) return answer.body;
    const e = errorFor(answer, "the readiness service");
    // 404: no such service (or a namespace the readiness service doesn't watch): no calls either way.
    throw answer.status === 404 ? new TelephonyUnavailable(e.message, 503, DEFAULT_RETRY_AFTER, "not_found") : asUnavailable(e);
  };

  const state = async (): Promise<TelephonyState> => {
    try {
      return stateOf(await status());
    } catch (e) {
      return unknownState(e instanceof Error ? e.message : String(e));
    }
  };

  // One stream for every subscriber.
  const listeners = new Set<(s: TelephonyState) => void>();
  let current: TelephonyState = CONNECTING;
  let close: (() => void) | null = null;
  const subscribe = (onChange: (s: TelephonyState) => void): (() => void) => {
    listeners.add(onChange);
    if (close === null) {
      close = followStatus(
        {
          watchUrl: `${base}/v1/watch`,
          match: { namespace, name: service },
          fetchStatus: () => status().catch((e: unknown) => (e instanceof Error ? e.message : String(e))),
          unavailableAfterMs: options.unavailableAfterMs,
          staleAfterMs: options.staleAfterMs,
          backoff: options.backoff,
          fetch: fetchFn,
        },
        (s) => {
          current = s;
          for (const l of [...listeners]) l(s);
        },
      );
    } else {
      onChange(current);
    }
    return () => {
      listeners.delete(onChange);
      if (listeners.size === 0 && close) {
        close();
        close = null;
        current = CONNECTING;
      }
    };
  };

  /** Where the worker is, failing fast when the readiness service says it's down. */
  const worker = async (): Promise<string> => {
    const subscribed = close !== null;
    const known = subscribed ? current : await state();
    if (!known.available && known.status !== "unknown") {
      throw new TelephonyUnavailable(
        known.message ?? `telephony is ${known.status}`,
        503,
        known.retryAfter ?? DEFAULT_RETRY_AFTER,
        `service_${known.status}`,
      );
    }
    // Unknown (the readiness service itself can't answer): try the worker anyway.
    // A subscription may not have its first answer yet: then ask once (never twice).
    const view = known.view ?? (subscribed && !options.workerUrl ? (await state()).view : null);
    // Failover: while the readiness service sends calls to the backup, go where it says.
    const url = view?.via === "backup" ? view.endpoint : (options.workerUrl ?? view?.endpoint);
    if (!url) {
      throw new TelephonyUnavailable(
        `no worker address known for ${namespace}/${service}: set workerUrl`,
        503,
        DEFAULT_RETRY_AFTER,
        "no_endpoint",
      );
    }
    return url.replace(/\/+$/, "");
  };

  const auth: Record<string, string> = options.workerToken ? { authorization: `Bearer ${options.workerToken}` } : {};
  const post = async (path: string, body: unknown): Promise<unknown> => {
    const url = `${await worker()}${path}`;
    const answer = await requestJson(
      fetchFn,
      url,
      {
        method: "POST",
        headers: { ...auth, "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify(body ?? {}),
      },
      timeoutMs,
      "the telephony worker",
    );
    if (answer.status >= 200 && answer.status < 300) return answer.body;
    throw errorFor(answer, "the telephony worker");
  };

  const get = async (path: string): Promise<unknown> => {
    const url = `${await worker()}${path}`;
    const answer = await requestJson(fetchFn, url, { headers: { ...auth, accept: "application/json" } }, timeoutMs, "the telephony worker");
    if (answer.status >= 200 && answer.status < 300) return answer.body;
    throw errorFor(answer, "the telephony worker");
  };
  const callPath = (id: string, rest = "") => {
    requireString(id, "callControlId");
    return `/v1/calls/${encodeURIComponent(id)}${rest}`;
  };

  return {
    namespace,
    service,
    status,
    state,
    subscribe,
    async calls() {
      const body = (await get("/v1/calls")) as { calls?: unknown } | null;
      const calls = Array.isArray(body?.calls) ? body.calls : null;
      if (calls === null || !calls.every(isCallRecord)) {
        throw new TelephonyUnavailable("the telephony worker's call list is malformed", 502, DEFAULT_RETRY_AFTER, "bad_answer");
      }
      return calls;
    },
    async call(callControlId) {
      const body = await get(callPath(callControlId));
      if (!isCallRecord(body)) throw new TelephonyUnavailable("the telephony worker's call is malformed", 502, DEFAULT_RETRY_AFTER, "bad_answer");
      return body;
    },
    async startRecording(callControlId, recording = {}) {
      await post(callPath(callControlId, "/recording/start"), recording);
    },
    async stopRecording(callControlId) {
      await post(callPath(callControlId, "/recording/stop"), {});
    },
    onCallEvent(handler) {
      let close: (() => void) | null = null;
      let closed = false;
      void worker()
        .then((url) => {
          if (!closed) close = followCalls(url, handler, { fetch: fetchFn, backoff: options.backoff, headers: auth });
        })
        .catch((e: unknown) => handler({ type: "reset", reason: e instanceof Error ? e.message : String(e) }));
      return () => {
        closed = true;
        close?.();
      };
    },
    async createCredential(request) {
      requireString(request?.username, "username");
      return expect<Credential>(await post("/v1/credentials", { username: request.username }), ["credentialId", "sipUsername", "token", "expiresAt"]);
    },
    async token(username) {
      const c = await this.createCredential({ username });
      return { token: c.token, expiresAt: c.expiresAt };
    },
    async dial(request) {
      requireString(request?.to, "to");
      requireString(request?.from, "from");
      const body: Record<string, unknown> = { to: request.to, from: request.from };
      if (request.timeoutSecs !== undefined) body.timeoutSecs = request.timeoutSecs;
      if (request.clientState !== undefined) body.clientState = request.clientState;
      return expect<Call>(await post("/v1/calls", body), ["callControlId"]);
    },
    async hangup(callControlId) {
      requireString(callControlId, "callControlId");
      await post(`/v1/calls/${encodeURIComponent(callControlId)}/hangup`, {});
    },
  };
}

function requireString(v: unknown, field: string): void {
  if (typeof v !== "string" || v === "") {
    throw new TelephonyRequestError(`${field} must be a non-empty string`, 400, "invalid_request", field);
  }
}

/** A 2xx body with the fields the caller relies on; a worker that says otherwise is broken. */
function expect<T>(body: unknown, fields: string[]): T {
  const o = body as Record<string, unknown> | null;
  if (typeof o !== "object" || o === null || fields.some((f) => typeof o[f] !== "string")) {
    throw new TelephonyUnavailable(`the telephony worker's answer lacks ${fields.join(", ")}`, 502, DEFAULT_RETRY_AFTER, "bad_answer");
  }
  return o as T;
}

function asUnavailable(e: Error): TelephonyUnavailable {
  if (e instanceof TelephonyUnavailable) return e;
  const status = e instanceof TelephonyRequestError ? e.status : 503;
  return new TelephonyUnavailable(`the readiness service refused the request (${status}): ${e.message}`, 503, DEFAULT_RETRY_AFTER, "readiness_error");
}
