/** One JSON request with a timeout, every failure mapped onto the client's two errors. */

import { DEFAULT_RETRY_AFTER, TelephonyRequestError, TelephonyUnavailable, describe, parseRetryAfter } from "./errors.js";

export type Fetch = typeof fetch;

export interface JsonAnswer {
  status: number;
  headers: Headers;
  body: unknown;
}

/**
 * Sends the request and reads a JSON body. Throws `TelephonyUnavailable` when there is no usable
 * answer (refused, timed out, not JSON); returns any JSON answer, whatever its status.
 */
export async function requestJson(
  fetchFn: Fetch,
  url: string,
  init: RequestInit,
  timeoutMs: number,
  what: string,
): Promise<JsonAnswer> {
  const signal = AbortSignal.timeout(timeoutMs);
  let res: Response;
  try {
    res = await fetchFn(url, { ...init, signal, cache: "no-store" });
  } catch (e) {
    if (signal.aborted) {
      throw new TelephonyUnavailable(`${what} did not answer within ${timeoutMs} ms`, 503, DEFAULT_RETRY_AFTER, "timeout");
    }
    throw new TelephonyUnavailable(`${what} is unreachable: ${describe(e)}`, 503, DEFAULT_RETRY_AFTER, "unreachable");
  }
  let text: string;
  try {
    text = await res.text();
  } catch (e) {
    throw new TelephonyUnavailable(`${what} broke off its answer: ${describe(e)}`, 503, DEFAULT_RETRY_AFTER, "unreachable");
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    const retry = parseRetryAfter(res.headers.get("retry-after")) ?? DEFAULT_RETRY_AFTER;
    throw new TelephonyUnavailable(
      `${what} answered ${res.status} without JSON (${snippet(text)})`,
      // An answer that isn't one is a bad gateway, unless the server said it's unavailable.
      [429, 503, 504].includes(res.status) ? 503 : 502,
      retry,
      "bad_answer",
    );
  }
  return { status: res.status, headers: res.headers, body };
}

/** The worker's error shape: `{"error": {"code", "message", "field"?}}`. */
interface ErrorBody {
  code?: unknown;
  message?: unknown;
  field?: unknown;
}

function errorOf(body: unknown): ErrorBody {
  if (typeof body === "object" && body !== null && "error" in body) {
    const e = (body as { error: unknown }).error;
    if (typeof e === "object" && e !== null) return e as ErrorBody;
  }
  return {};
}

/** Turns a non-2xx JSON answer into the error a caller can act on. */
export function errorFor(answer: JsonAnswer, what: string): Error {
  const e = errorOf(answer.body);
  const message = typeof e.message === "string" ? e.message : `${what} answered ${answer.status}`;
  const code = typeof e.code === "string" ? e.code : `http_${answer.status}`;
  const retry = parseRetryAfter(answer.headers.get("retry-after")) ?? DEFAULT_RETRY_AFTER;
  const s = answer.status;
  if (s === 429 || s === 502 || s === 503 || s === 504) {
    return new TelephonyUnavailable(message, s === 502 ? 502 : 503, retry, code);
  }
  if (s >= 400 && s < 500) {
    return new TelephonyRequestError(message, s, code, typeof e.field === "string" ? e.field : undefined);
  }
  // A 500 from a worker is its bug, not the caller's: unavailable, and upstream of the app.
  return new TelephonyUnavailable(`${what} failed (${s}): ${message}`, 502, retry, code);
}

function snippet(text: string): string {
  const t = text.replace(/\s+/g, " ").trim();
  if (t === "") return "empty body";
  return t.length > 60 ? `${t.slice(0, 60)}…` : t;
}
