/** What the app branches on, derived from the readiness answer (or from having none). */

import { DEFAULT_RETRY_AFTER } from "./errors.js";
import type { Phase, StatusView, Word } from "./status.js";

export interface TelephonyState {
  /** The app may place calls. */
  available: boolean;
  /** `ready`, `degraded`, `failed`, `paused`, `pending`, or `unknown` (no trustworthy answer). */
  status: Word;
  phase: Phase | null;
  /** Why, in words, when not available (or what the operator last said). */
  message: string | null;
  /** Seconds before it's worth trying again; null while available. */
  retryAfter: number | null;
  /** The readiness service's full answer, when there is one. */
  view: StatusView | null;
}

export function stateOf(view: StatusView): TelephonyState {
  return {
    available: view.healthy,
    status: view.status,
    phase: view.phase ?? null,
    message: view.message ?? null,
    retryAfter: view.healthy ? null : (view.retryAfter ?? DEFAULT_RETRY_AFTER),
    view,
  };
}

/** No trustworthy answer: unavailable, with the reason. */
export function unknownState(message: string, retryAfter: number = DEFAULT_RETRY_AFTER): TelephonyState {
  return { available: false, status: "unknown", phase: null, message, retryAfter, view: null };
}

export const CONNECTING: TelephonyState = unknownState("connecting to the readiness service");

const WORDS: ReadonlySet<string> = new Set(["ready", "degraded", "failed", "paused", "pending", "unknown"]);

/**
 * Checks the fields the client relies on, so a malformed or foreign answer is refused instead of
 * being half-read. (The full shape is the generated `StatusView`.)
 */
export function isStatusView(v: unknown): v is StatusView {
  if (typeof v !== "object" || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    typeof o.namespace === "string" &&
    typeof o.name === "string" &&
    typeof o.status === "string" &&
    WORDS.has(o.status) &&
    typeof o.healthy === "boolean" &&
    typeof o.timestamp === "number" &&
    (o.retryAfter === undefined || o.retryAfter === null || typeof o.retryAfter === "number")
  );
}

/** A StatusView-shaped answer for a service nobody can vouch for (what the readiness service says when stale). */
export function unknownView(namespace: string, name: string, message: string, retryAfter = DEFAULT_RETRY_AFTER): StatusView {
  return {
    namespace,
    name,
    status: "unknown",
    healthy: false,
    timestamp: Date.now(),
    phase: null,
    readyReplicas: 0,
    replicas: 0,
    message,
    retryAfter,
    recentFailures: [],
  };
}

export function sameState(a: TelephonyState, b: TelephonyState): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
