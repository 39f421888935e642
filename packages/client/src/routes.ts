/**
 * Route helpers for the app's own API (Next.js App Router handlers, or anything built on the Web
 * `Request`/`Response`). A telephony fault is never a 500: unavailable is 503 with `Retry-After`,
 * Telnyx trouble is 502, a bad body is 400, and every error is JSON:
 * `{"error": {"code", "message", "field"?}, "retryAfter"?}`.
 */

import { TelephonyRequestError, TelephonyUnavailable } from "./errors.js";
import type { TelephonyClient } from "./client.js";
import { unknownView } from "./state.js";

/** Bodies larger than this are refused (the worker's own limit is 16 KiB). */
export const BODY_LIMIT = 16 * 1024;

type Handler<C> = (request: Request, context: C) => Response | Promise<Response>;

/** Wraps a handler so telephony errors become the right answer instead of a 500. */
export function withTelephony<C = unknown>(handler: Handler<C>): (request: Request, context: C) => Promise<Response> {
  return async (request, context) => {
    try {
      return await handler(request, context);
    } catch (e) {
      return errorResponse(e);
    }
  };
}

/** The answer for anything a handler threw. */
export function errorResponse(e: unknown): Response {
  if (e instanceof TelephonyUnavailable) {
    return Response.json(
      { error: { code: e.code, message: e.message }, retryAfter: e.retryAfter },
      { status: e.status, headers: { "retry-after": String(e.retryAfter), "cache-control": "no-store" } },
    );
  }
  if (e instanceof TelephonyRequestError) {
    const error: Record<string, string> = { code: e.code, message: e.message };
    if (e.field) error.field = e.field;
    return Response.json({ error }, { status: e.status, headers: { "cache-control": "no-store" } });
  }
  // Not a telephony fault: the app's own bug. Its message stays in the server log, not the answer.
  console.error("dialtone: route handler failed:", e);
  return Response.json({ error: { code: "internal", message: "internal error" } }, { status: 500 });
}

/**
 * The request's JSON object body, or a `TelephonyRequestError` (400) saying what's wrong: not
 * JSON, not an object, too large.
 */
export async function readJson(request: Request): Promise<Record<string, unknown>> {
  const type = request.headers.get("content-type") ?? "";
  if (!type.toLowerCase().startsWith("application/json")) {
    throw new TelephonyRequestError("the body must be JSON (content-type: application/json)", 415, "unsupported_media_type");
  }
  const length = Number(request.headers.get("content-length") ?? "0");
  if (length > BODY_LIMIT) throw new TelephonyRequestError(`the body is larger than ${BODY_LIMIT} bytes`, 413, "too_large");
  let text: string;
  try {
    text = await request.text();
  } catch {
    throw new TelephonyRequestError("the body could not be read", 400, "bad_body");
  }
  if (text.length > BODY_LIMIT) throw new TelephonyRequestError(`the body is larger than ${BODY_LIMIT} bytes`, 413, "too_large");
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw new TelephonyRequestError(`the body is not valid JSON: ${e instanceof Error ? e.message : "parse error"}`, 400, "bad_body");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new TelephonyRequestError("the body must be a JSON object", 400, "bad_body");
  }
  return body as Record<string, unknown>;
}

/** A string field of a body read by `readJson`, or a 400 naming it. */
export function field(body: Record<string, unknown>, name: string, options: { optional?: boolean } = {}): string {
  const v = body[name];
  if (v === undefined && options.optional) return "";
  if (typeof v !== "string" || v === "") {
    throw new TelephonyRequestError(`${name} must be a non-empty string`, 400, "invalid_request", name);
  }
  return v;
}

type ClientSource = TelephonyClient | (() => TelephonyClient);
const resolve = (c: ClientSource): TelephonyClient => (typeof c === "function" ? c() : c);

/**
 * `GET` handler: the readiness answer for the client's service, passed on as it is (200, or 503
 * with `Retry-After`). With no answer at all, a 503 saying why, never a 500.
 */
export function statusRoute(client: ClientSource): (request: Request) => Promise<Response> {
  return async () => {
    let c: TelephonyClient;
    try {
      c = resolve(client);
    } catch (e) {
      return errorResponse(e);
    }
    let view;
    try {
      view = await c.status();
    } catch (e) {
      const u = e instanceof TelephonyUnavailable ? e : new TelephonyUnavailable(String(e));
      view = unknownView(c.namespace, c.service, u.message, u.retryAfter);
    }
    const headers: Record<string, string> = { "cache-control": "no-store" };
    if (!view.healthy) headers["retry-after"] = String(view.retryAfter ?? 5);
    return Response.json(view, { status: view.healthy ? 200 : 503, headers });
  };
}

/** Heartbeat comment for app streams (proxies often cut connections idle for 30–60 s). */
const HEARTBEAT_MS = 15_000;

/**
 * `GET` handler: a Server-Sent Events stream of the client's service, for the browser
 * (`@dialtone/react`'s `TelephonyProvider`). Each change is a `status` event carrying the
 * readiness answer; with none, a StatusView saying `unknown` and why. All browsers share the
 * client's one upstream subscription.
 */
export function eventsRoute(client: ClientSource): (request: Request) => Response {
  return (request) => {
    let c: TelephonyClient;
    try {
      c = resolve(client);
    } catch (e) {
      return errorResponse(e);
    }
    const encoder = new TextEncoder();
    let cleanup = () => {};
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        const send = (text: string) => {
          try {
            controller.enqueue(encoder.encode(text));
          } catch {
            cleanup(); // the browser has gone
          }
        };
        const unsubscribe = c.subscribe((s) => {
          const view = s.view ?? unknownView(c.namespace, c.service, s.message ?? "unknown", s.retryAfter ?? 5);
          send(`event: status\ndata: ${JSON.stringify(view)}\n\n`);
        });
        const beat = setInterval(() => send(": heartbeat\n\n"), HEARTBEAT_MS);
        cleanup = () => {
          clearInterval(beat);
          unsubscribe();
          cleanup = () => {};
        };
        request.signal?.addEventListener("abort", () => {
          cleanup();
          try {
            controller.close();
          } catch {
            // already closed
          }
        });
      },
      cancel() {
        cleanup();
      },
    });
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-store, no-transform",
        "x-accel-buffering": "no",
      },
    });
  };
}

/**
 * `GET` handler for an admin page: the readiness service's stream of every service it watches,
 * passed through (`TelephonyHealthMonitor` reads it). Unreachable: 503 with `Retry-After`.
 * Put it behind your admin auth: it lists every TelephonyService's status.
 */
export function fleetEventsRoute(readinessUrl: string, options: { fetch?: typeof fetch } = {}): (request: Request) => Promise<Response> {
  const url = `${readinessUrl.replace(/\/+$/, "")}/v1/watch`;
  const fetchFn = options.fetch ?? ((i: RequestInfo | URL, init?: RequestInit) => globalThis.fetch(i, init));
  return async (request) => {
    try {
      const upstream = await fetchFn(url, { headers: { accept: "text/event-stream" }, signal: request.signal, cache: "no-store" });
      if (!upstream.ok || upstream.body === null) {
        await upstream.body?.cancel().catch(() => undefined);
        throw new TelephonyUnavailable(`the readiness service answered ${upstream.status}`);
      }
      return new Response(upstream.body, {
        headers: { "content-type": "text/event-stream", "cache-control": "no-store, no-transform", "x-accel-buffering": "no" },
      });
    } catch (e) {
      return errorResponse(e instanceof TelephonyUnavailable ? e : new TelephonyUnavailable(`the readiness service is unreachable`, 503, 5, "unreachable"));
    }
  };
}
