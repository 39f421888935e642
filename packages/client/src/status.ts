/* Generated from status.schema.json (the readiness service's StatusView) by scripts/gen-client-types.sh. Do not edit. */

export type Phase = "Pending" | "Progressing" | "Ready" | "Degraded" | "Failed" | "Paused";
/**
 * The one word the app branches on.
 */
export type Word = "ready" | "degraded" | "failed" | "paused" | "pending" | "unknown";
export type Via = "primary" | "backup";

export interface StatusView {
  /**
   * Workers shutting down: they take no new calls while their live calls finish (absent when
   * none, or when the readiness service doesn't follow the workers' heartbeats).
   */
  draining?: DrainingWorker[];
  endpoint?: string | null;
  /**
   * The backup service named by `spec.failover`, as its own answer has it.
   */
  failover?: FailoverView | null;
  /**
   * True exactly when the answer is 200: the app may send calls.
   */
  healthy: boolean;
  lastFailure?: FailureView | null;
  lastTransitionTime?: string | null;
  message?: string | null;
  name: string;
  namespace: string;
  /**
   * When the operator next restarts or scales up the workers (RFC 3339), while backing off.
   */
  nextAttemptAt?: string | null;
  phase?: Phase | null;
  readyReplicas: number;
  /**
   * Failures inside the restart budget's window, oldest first.
   */
  recentFailures: FailureMark[];
  replicas: number;
  restarts?: Restarts | null;
  /**
   * Seconds the app should wait before trying again; set exactly when `healthy` is false, and
   * sent as the 503's `Retry-After` header too.
   */
  retryAfter?: number | null;
  status: Word;
  /**
   * When this was last confirmed against the Kubernetes API (ms since the epoch).
   */
  timestamp: number;
  /**
   * Where the app's calls go: this service's workers (`primary`) or its `failover` service's
   * (`backup`, whose address is then `endpoint`). Absent without `spec.failover`.
   */
  via?: Via | null;
}
export interface DrainingWorker {
  activeCalls: number;
  pod: string;
}
export interface FailoverView {
  endpoint?: string | null;
  healthy: boolean;
  name: string;
  namespace: string;
  /**
   * The backup's own word (`unknown` when the readiness service doesn't see it).
   */
  status: "ready" | "degraded" | "failed" | "paused" | "pending" | "unknown";
}
/**
 * One failure of a worker pod, as the operator recorded it.
 */
export interface FailureView {
  /**
   * RFC 3339.
   */
  at: string;
  message: string;
  pod: string;
  /**
   * `Error`, `OOMKilled`, `ErrImagePull`, `ReadinessTimeout`, ...
   */
  reason: string;
}
/**
 * A failure inside the restart budget's window: when, and why.
 */
export interface FailureMark {
  /**
   * RFC 3339.
   */
  at: string;
  reason: string;
}
export interface Restarts {
  max: number;
  resetsAt?: string | null;
  used: number;
  windowSeconds: number;
}
