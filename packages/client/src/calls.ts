/**
 * Calls after they are placed: what the worker knows of each (from Telnyx's signed webhooks), and
 * its call events, followed live and resumed after a reconnect (`Last-Event-ID`), so a hangup is
 * never missed silently: when the worker can't resend what was missed, the handler gets `reset`.
 */

import { eventStream, type StreamOptions } from "./stream.js";

export type CallState = "dialed" | "initiated" | "answered" | "ended";

export interface CallRecord {
  callControlId: string;
  callLegId?: string;
  callSessionId?: string;
  direction?: "outgoing" | "incoming" | string;
  from?: string;
  to?: string;
  state: CallState;
  /** RFC 3339. */
  startedAt: string;
  answeredAt?: string;
  endedAt?: string;
  /** Telnyx's cause (`normal_clearing`, `user_busy`, ...), or `drain_timeout` when the worker ended it. */
  hangupCause?: string;
  hangupSource?: string;
  durationSecs?: number;
  recording: boolean;
  recordings?: { format: string; url: string }[];
}

export type CallEventType =
  | "call.dialed"
  | "call.initiated"
  | "call.answered"
  | "call.ended"
  | "call.recording.started"
  | "call.recording.stopped"
  | "call.recording.saved";

export type CallEvent =
  | { type: CallEventType; call: CallRecord }
  /** Events were missed (the worker restarted, or dropped them): refetch `calls()`. */
  | { type: "reset"; reason: string };

const TYPES: ReadonlySet<string> = new Set<CallEventType>([
  "call.dialed",
  "call.initiated",
  "call.answered",
  "call.ended",
  "call.recording.started",
  "call.recording.stopped",
  "call.recording.saved",
]);

export function isCallRecord(v: unknown): v is CallRecord {
  const o = v as Record<string, unknown> | null;
  return typeof o === "object" && o !== null && typeof o.callControlId === "string" && typeof o.state === "string";
}

/** Follows `GET <workerUrl>/v1/events`; returns `close`. Malformed events are skipped. */
export function followCalls(workerUrl: string, onEvent: (e: CallEvent) => void, options: StreamOptions = {}): () => void {
  return eventStream(
    `${workerUrl.replace(/\/+$/, "")}/v1/events`,
    {
      onEvent(event, data) {
        if (event === "reset") {
          onEvent({ type: "reset", reason: data });
          return;
        }
        if (!TYPES.has(event)) return; // `lagged`: the stream ends and resumes by itself
        let parsed: unknown;
        try {
          parsed = JSON.parse(data);
        } catch {
          return;
        }
        const call = (parsed as { call?: unknown } | null)?.call;
        if (isCallRecord(call)) onEvent({ type: event as CallEventType, call });
      },
    },
    { ...options, resume: true },
  );
}
