"use client";

/**
 * `TelephonyProvider`: one live status subscription per page, shared by every `useTelephony()`.
 * It follows the app's own events route (`eventsRoute` from `@dialtone/client/routes`), so the
 * browser never talks to the cluster, and places calls through the app's call route.
 */

import {
  CONNECTING,
  DEFAULT_RETRY_AFTER,
  followStatus,
  parseRetryAfter,
  type Call,
  type Phase,
  type TelephonyState,
  type Word,
} from "@dialtone/client";
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from "react";

export interface TelephonyProviderProps {
  /** The app's SSE route for this service. Default `/api/telephony/events`. */
  eventsUrl?: string;
  /** The app's call route: `POST {"to"}` → the call. Default `/api/telephony/call`. */
  callUrl?: string;
  /** The app's hang-up route: `POST {"callControlId"}`. Default `/api/telephony/hangup`. */
  hangupUrl?: string;
  /** A lost stream turns "unavailable" after this long. Default 3000 ms. */
  unavailableAfterMs?: number;
  children?: ReactNode;
}

/** Why a call or hang-up didn't happen. */
export interface CallError {
  /** The HTTP status the app's route answered (0: no answer at all). */
  status: number;
  code: string;
  message: string;
  /** Seconds before it's worth trying again, when the route said. */
  retryAfter: number | null;
}

export type CallResult = { ok: true; call: Call } | { ok: false; error: CallError };

export interface Telephony {
  /** Calls may be placed now. */
  available: boolean;
  status: Word;
  phase: Phase | null;
  message: string | null;
  retryAfter: number | null;
  /** The call placed by `call()` and not yet hung up. */
  activeCall: Call | null;
  /** A `call()` or `hangup()` is in flight. */
  busy: boolean;
  /** The last failed `call()` or `hangup()`; cleared by the next success. */
  error: CallError | null;
  /** Places a call. Never rejects: the result says what happened. */
  call(to: string): Promise<CallResult>;
  /** Ends the active call. Never rejects. */
  hangup(): Promise<CallResult | null>;
}

interface Shared {
  state: TelephonyState;
  /** Bumped each time telephony becomes available again (error boundaries reset on it). */
  recoveries: number;
  callUrl: string;
  hangupUrl: string;
}

const Context = createContext<Shared | null>(null);

export function TelephonyProvider({
  eventsUrl = "/api/telephony/events",
  callUrl = "/api/telephony/call",
  hangupUrl = "/api/telephony/hangup",
  unavailableAfterMs,
  children,
}: TelephonyProviderProps) {
  const [state, setState] = useState<TelephonyState>(CONNECTING);
  const [recoveries, setRecoveries] = useState(0);
  const wasAvailable = useRef(false);
  useEffect(
    () =>
      followStatus({ watchUrl: eventsUrl, unavailableAfterMs }, (s) => {
        if (s.available && !wasAvailable.current) setRecoveries((n) => n + 1);
        wasAvailable.current = s.available;
        setState(s);
      }),
    [eventsUrl, unavailableAfterMs],
  );
  const value = useMemo(() => ({ state, recoveries, callUrl, hangupUrl }), [state, recoveries, callUrl, hangupUrl]);
  return <Context.Provider value={value}>{children}</Context.Provider>;
}

function useShared(): Shared {
  const shared = useContext(Context);
  if (!shared) throw new Error("useTelephony() must be used inside <TelephonyProvider>");
  return shared;
}

/** How many times telephony has come back (for resetting error boundaries); 0 outside a provider. */
export function useRecoveries(): number {
  return useContext(Context)?.recoveries ?? 0;
}

async function postJson(url: string, body: unknown): Promise<{ ok: true; body: unknown } | { ok: false; error: CallError }> {
  let res: Response;
  try {
    res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  } catch {
    return { ok: false, error: { status: 0, code: "unreachable", message: "the app's server did not answer", retryAfter: DEFAULT_RETRY_AFTER } };
  }
  let parsed: unknown = null;
  try {
    parsed = await res.json();
  } catch {
    // not JSON: described below
  }
  if (res.ok) return { ok: true, body: parsed };
  const e = (parsed as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  return {
    ok: false,
    error: {
      status: res.status,
      code: typeof e?.code === "string" ? e.code : `http_${res.status}`,
      message: typeof e?.message === "string" ? e.message : `the call route answered ${res.status}`,
      retryAfter: parseRetryAfter(res.headers.get("retry-after")),
    },
  };
}

/** The page's view of telephony, and the call controls. */
export function useTelephony(): Telephony {
  const { state, callUrl, hangupUrl } = useShared();
  const [activeCall, setActiveCall] = useState<Call | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<CallError | null>(null);

  const call = useCallback(
    async (to: string): Promise<CallResult> => {
      if (!state.available) {
        const refused: CallError = {
          status: 503,
          code: `service_${state.status}`,
          message: state.message ?? "telephony is unavailable",
          retryAfter: state.retryAfter,
        };
        setError(refused);
        return { ok: false, error: refused };
      }
      setBusy(true);
      const r = await postJson(callUrl, { to });
      setBusy(false);
      const callControlId = (r.ok ? (r.body as { callControlId?: unknown } | null)?.callControlId : undefined);
      if (r.ok && typeof callControlId === "string") {
        const placed = r.body as Call;
        setActiveCall(placed);
        setError(null);
        return { ok: true, call: placed };
      }
      const failed = r.ok ? { status: 502, code: "bad_answer", message: "the call route's answer has no callControlId", retryAfter: null } : r.error;
      setError(failed);
      return { ok: false, error: failed };
    },
    [state, callUrl],
  );

  const hangup = useCallback(async (): Promise<CallResult | null> => {
    if (!activeCall) return null;
    setBusy(true);
    const r = await postJson(hangupUrl, { callControlId: activeCall.callControlId });
    setBusy(false);
    // Ended either way when the call is already gone (409).
    if (r.ok || r.error.status === 409) {
      setActiveCall(null);
      setError(null);
      return { ok: true, call: activeCall };
    }
    setError(r.error);
    return { ok: false, error: r.error };
  }, [activeCall, hangupUrl]);

  return {
    available: state.available,
    status: state.status,
    phase: state.phase,
    message: state.message,
    retryAfter: state.retryAfter,
    activeCall,
    busy,
    error,
    call,
    hangup,
  };
}
