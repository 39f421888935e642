/**
 * Live status: one service's state, or every service's answer, from an SSE stream of
 * `status` / `deleted` / `resync` events (the readiness service's `/v1/watch`, or an app route
 * that re-emits it). A lost stream becomes `unknown` after `unavailableAfterMs`, never a stale
 * "available".
 */

import { DEFAULT_RETRY_AFTER } from "./errors.js";
import type { StatusView } from "./status.js";
import { CONNECTING, isStatusView, sameState, stateOf, unknownState, type TelephonyState } from "./state.js";
import { Reconnect, eventStream, type StreamOptions } from "./stream.js";

export interface FollowOptions extends StreamOptions {
  /** The SSE stream. */
  watchUrl: string;
  /** Only this service's events count; omit when the stream carries one service only. */
  match?: { namespace: string; name: string };
  /**
   * Asked once per connection, so a service missing from the stream's snapshot still gets an
   * answer (`404`: no such service). Returns the answer, or a message for "unknown".
   */
  fetchStatus?: () => Promise<StatusView | string>;
  /** How long a lost stream may take to come back before the state turns `unknown`. Default 3 s. */
  unavailableAfterMs?: number;
}

export const DEFAULT_UNAVAILABLE_AFTER_MS = 3_000;

function parse(data: string): unknown {
  try {
    return JSON.parse(data);
  } catch {
    return undefined;
  }
}

/** Follows one service; `onChange` gets the first state and every change. Returns `close`. */
export function followStatus(options: FollowOptions, onChange: (state: TelephonyState) => void): () => void {
  const m = options.match;
  const matches = (v: { namespace?: unknown; name?: unknown }) => !m || (v.namespace === m.namespace && v.name === m.name);
  let last: TelephonyState | null = null;
  let downTimer: ReturnType<typeof setTimeout> | undefined;
  let eventsThisConnection = 0;
  let closed = false;
  const emit = (s: TelephonyState) => {
    if (closed || (last && sameState(last, s))) return;
    last = s;
    try {
      onChange(s);
    } catch {
      // The subscriber's bug: the stream goes on.
    }
  };
  const up = () => {
    clearTimeout(downTimer);
    downTimer = undefined;
  };
  emit(CONNECTING);
  const close = eventStream(
    options.watchUrl,
    {
      onOpen() {
        eventsThisConnection = 0;
        const fetchStatus = options.fetchStatus;
        if (!fetchStatus) return;
        fetchStatus().then(
          (answer) => {
            if (eventsThisConnection > 0) return; // the stream already said something newer
            up();
            emit(typeof answer === "string" ? unknownState(answer) : stateOf(answer));
          },
          () => undefined,
        );
      },
      onEvent(event, data) {
        const body = parse(data);
        if (event === "resync") throw new Reconnect();
        if (event === "status" && isStatusView(body) && matches(body)) {
          eventsThisConnection += 1;
          up();
          emit(stateOf(body));
        } else if (event === "deleted" && typeof body === "object" && body !== null && matches(body) && m) {
          eventsThisConnection += 1;
          up();
          emit(unknownState(`TelephonyService ${m.namespace}/${m.name} was deleted`));
        }
        // Anything else (other services, malformed data, unknown events) is not ours: ignored.
      },
      onDown(reason) {
        if (downTimer !== undefined) return;
        downTimer = setTimeout(() => {
          emit(unknownState(`no answer from the readiness service: ${reason}`, DEFAULT_RETRY_AFTER));
        }, options.unavailableAfterMs ?? DEFAULT_UNAVAILABLE_AFTER_MS);
      },
    },
    options,
  );
  return () => {
    closed = true;
    clearTimeout(downTimer);
    close();
  };
}

export interface Fleet {
  /** Every service the stream has told about, sorted by namespace and name. */
  services: StatusView[];
  /** False while the stream is lost (the last answers are then shown as what they are: old). */
  connected: boolean;
}

/** Follows every service on the stream (the admin view). Returns `close`. */
export function followAll(options: FollowOptions, onChange: (fleet: Fleet) => void): () => void {
  const services = new Map<string, StatusView>();
  let connected = false;
  const emit = () => {
    const sorted = [...services.values()].sort((a, b) =>
      a.namespace === b.namespace ? a.name.localeCompare(b.name) : a.namespace.localeCompare(b.namespace),
    );
    try {
      onChange({ services: sorted, connected });
    } catch {
      // The subscriber's bug: the stream goes on.
    }
  };
  return eventStream(
    options.watchUrl,
    {
      onOpen() {
        // The snapshot that follows is complete: forget what may have been deleted meanwhile.
        services.clear();
        connected = true;
        emit();
      },
      onEvent(event, data) {
        const body = parse(data);
        if (event === "resync") throw new Reconnect();
        if (event === "status" && isStatusView(body)) services.set(`${body.namespace}/${body.name}`, body);
        else if (event === "deleted" && typeof body === "object" && body !== null) {
          const d = body as { namespace?: unknown; name?: unknown };
          services.delete(`${String(d.namespace)}/${String(d.name)}`);
        } else return;
        emit();
      },
      onDown() {
        if (!connected) return;
        connected = false;
        emit();
      },
    },
    options,
  );
}
