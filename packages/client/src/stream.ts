/**
 * A Server-Sent Events stream over `fetch`, reconnected for ever with backoff and jitter until
 * closed. Works in browsers and in Node (which has no `EventSource`). Unlike `EventSource` it
 * notices a stream that has gone silent: the readiness service sends a heartbeat every 15 s, so
 * no byte for `staleAfterMs` means the connection is dead even if TCP hasn't said so.
 */

import { createParser } from "eventsource-parser";

import { describe } from "./errors.js";
import type { Fetch } from "./http.js";

export interface StreamHandlers {
  /** One event; `event` is `message` when the server named none; `id` when the server gave one. */
  onEvent(event: string, data: string, id?: string): void;
  /** Connected: an event stream is flowing (the server's snapshot follows). */
  onOpen?(): void;
  /** The connection failed or was lost; a reconnect is scheduled. */
  onDown?(reason: string): void;
}

export interface Backoff {
  /** First delay's ceiling, doubled per failed attempt (full jitter: 0 to the ceiling). */
  baseMs: number;
  maxMs: number;
}

export interface StreamOptions {
  fetch?: Fetch;
  /** No byte for this long: the stream is dead. Default 35 s (two missed heartbeats, plus slack). */
  staleAfterMs?: number;
  backoff?: Backoff;
  /** For tests: the jitter's randomness. */
  random?: () => number;
  /** Reconnect with `Last-Event-ID` (the last id seen), so the server resends what was missed. */
  resume?: boolean;
  /** Sent with every request of the stream (e.g. the worker's `authorization`). */
  headers?: Record<string, string>;
}

export const DEFAULT_BACKOFF: Backoff = { baseMs: 250, maxMs: 10_000 };
export const DEFAULT_STALE_AFTER_MS = 35_000;

/** Delay before attempt `n` (0-based): uniformly random up to min(max, base * 2^n). */
export function backoffDelay(n: number, b: Backoff = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const ceiling = Math.min(b.maxMs, b.baseMs * 2 ** Math.min(n, 30));
  return Math.floor(random() * ceiling);
}

/** Signals from a handler: the server asked for a fresh start (`resync`). */
export class Reconnect extends Error {}

/** Starts following `url`; returns `close`, which stops it for good. */
export function eventStream(url: string, handlers: StreamHandlers, options: StreamOptions = {}): () => void {
  const fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
  const staleAfterMs = options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
  let closed = false;
  let current: AbortController | null = null;
  let wake: (() => void) | null = null;
  const position: Position = { resume: options.resume === true };

  const loop = async (): Promise<void> => {
    let failures = 0;
    while (!closed) {
      current = new AbortController();
      const { reason, delivered } = await connectOnce(fetchFn, url, options.headers ?? {}, handlers, current, staleAfterMs, position);
      if (closed) return;
      failures = delivered ? 0 : failures + 1;
      safely(() => handlers.onDown?.(reason));
      // After a stream that delivered: soon (≤ base); else doubling, so a dead server isn't hammered.
      const delay = backoffDelay(failures, options.backoff, options.random);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
    }
  };
  void loop();
  return () => {
    closed = true;
    current?.abort();
    wake?.();
  };
}

/** Where a resumable stream got to. */
interface Position {
  resume: boolean;
  lastEventId?: string;
}

interface Outcome {
  reason: string;
  /** At least one event arrived: the next attempt starts without delay. */
  delivered: boolean;
}

async function connectOnce(
  fetchFn: Fetch,
  url: string,
  extraHeaders: Record<string, string>,
  handlers: StreamHandlers,
  abort: AbortController,
  staleAfterMs: number,
  position: Position,
): Promise<Outcome> {
  let delivered = false;
  let stale = false;
  let reconnect = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      stale = true;
      abort.abort();
    }, staleAfterMs);
  };
  try {
    arm();
    const headers: Record<string, string> = { ...extraHeaders, accept: "text/event-stream" };
    if (position.resume && position.lastEventId !== undefined) headers["last-event-id"] = position.lastEventId;
    const res = await fetchFn(url, {
      headers,
      signal: abort.signal,
      cache: "no-store",
    });
    const type = res.headers.get("content-type") ?? "";
    if (!res.ok || !type.startsWith("text/event-stream") || res.body === null) {
      await res.body?.cancel().catch(() => undefined);
      return { reason: res.ok ? `not an event stream (${type || "no content type"})` : `HTTP ${res.status}`, delivered };
    }
    safely(() => handlers.onOpen?.());
    const parser = createParser({
      onEvent(message) {
        delivered = true;
        if (message.id !== undefined) position.lastEventId = message.id;
        try {
          handlers.onEvent(message.event ?? "message", message.data, message.id);
        } catch (e) {
          if (e instanceof Reconnect) {
            reconnect = true;
            abort.abort();
          }
          // Any other handler error is the handler's: the stream goes on.
        }
      },
    });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { reason: "the server ended the stream", delivered };
      arm();
      parser.feed(value);
    }
  } catch (e) {
    if (reconnect) return { reason: "the server asked for a resync", delivered: true };
    if (stale) return { reason: `no data for ${Math.round(staleAfterMs / 1000)} s`, delivered: false };
    return { reason: describe(e), delivered };
  } finally {
    clearTimeout(timer);
  }
}

function safely(f: () => void): void {
  try {
    f();
  } catch {
    // A handler's bug must not stop the stream.
  }
}
