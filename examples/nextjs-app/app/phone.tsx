"use client";

import { TelephonyErrorBoundary, TelephonyProvider, useTelephony } from "@dialtone/react";
import { useState } from "react";

/** The call button: "Call" while telephony is available, "Calls unavailable" (and why) while not. */
function CallPanel() {
  const t = useTelephony();
  const [to, setTo] = useState("+15551234567");
  const [placed, setPlaced] = useState<string | null>(null);
  return (
    <section aria-label="Phone" data-testid="phone" data-available={t.available}>
      <label>
        Number <input value={to} onChange={(e) => setTo(e.target.value)} data-testid="number" />
      </label>{" "}
      {t.activeCall ? (
        <button onClick={() => void t.hangup()} disabled={t.busy} data-testid="call-button">
          Hang up
        </button>
      ) : (
        <button
          onClick={async () => {
            const r = await t.call(to);
            setPlaced(r.ok ? r.call.callControlId : null);
          }}
          disabled={!t.available || t.busy}
          data-testid="call-button"
        >
          {t.available ? "Call" : "Calls unavailable"}
        </button>
      )}
      <p data-testid="phone-status">
        {t.available ? "Telephony is available." : `${t.message ?? "Telephony is unavailable."}${t.retryAfter ? ` (retrying in about ${t.retryAfter} s)` : ""}`}
      </p>
      {placed && <p data-testid="call-placed">Call placed: {placed}</p>}
      {t.error && <p role="alert" data-testid="call-error">{t.error.message}</p>}
    </section>
  );
}

export function Phone() {
  return (
    <TelephonyProvider>
      <TelephonyErrorBoundary fallback={<p data-testid="phone-fallback">Calls are unavailable right now.</p>}>
        <CallPanel />
      </TelephonyErrorBoundary>
    </TelephonyProvider>
  );
}

/** Something that has nothing to do with telephony, and must keep working while it's down. */
export function Counter() {
  const [n, setN] = useState(0);
  return (
    <section aria-label="Counter">
      <button onClick={() => setN(n + 1)} data-testid="counter-button">
        Clicked {n} times
      </button>
    </section>
  );
}
