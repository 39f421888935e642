/**
 * The two errors the client raises. Everything else (a refused connection, a timeout, an HTML
 * error page, a malformed body) is mapped onto one of them, so callers never see a raw fetch error.
 */

/** Telephony can't serve this now: try again after `retryAfter` seconds. */
export class TelephonyUnavailable extends Error {
  override readonly name = "TelephonyUnavailable";
  constructor(
    message: string,
    /** The HTTP status to pass on: 503, or 502 when Telnyx (upstream) failed. */
    readonly status: number = 503,
    /** Seconds to wait before trying again. */
    readonly retryAfter: number = DEFAULT_RETRY_AFTER,
    /** A stable, machine-readable reason: `not_ready`, `worker_unreachable`, `timeout`, `upstream_error`... */
    readonly code: string = "unavailable",
  ) {
    super(message);
  }
}

/** The request itself was wrong (400, 404, 409...): retrying it unchanged won't help. */
export class TelephonyRequestError extends Error {
  override readonly name = "TelephonyRequestError";
  constructor(
    message: string,
    readonly status: number = 400,
    readonly code: string = "invalid_request",
    /** The offending field, when the worker named one. */
    readonly field?: string,
  ) {
    super(message);
  }
}

/** When nothing better is known (the readiness service's own default). */
export const DEFAULT_RETRY_AFTER = 5;

/** `Retry-After` as seconds: delta-seconds or an HTTP date; null when absent or unreadable. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | null {
  if (value === null || value.trim() === "") return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Math.min(Number(v), 86_400);
  if (!/[a-z]/i.test(v)) return null; // an HTTP date names its day and month
  const at = Date.parse(v);
  if (Number.isNaN(at)) return null;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

/** A short description of anything thrown, without stack traces or request bodies. */
export function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    const detail = cause instanceof Error && cause.message ? `: ${cause.message}` : "";
    return `${error.message}${detail}`;
  }
  return String(error);
}
