"use client";

/**
 * `TelephonyHealthMonitor`: the admin view of every TelephonyService, live over SSE: phase,
 * ready/desired workers, restart budget, the last failure, and a timeline of the failures in the
 * budget's window. Point it at the app's admin events route (`fleetEventsRoute`).
 */

import { followAll, type Fleet, type StatusView, type Word } from "@dialtone/client";
import { useEffect, useState, type CSSProperties } from "react";

export interface TelephonyHealthMonitorProps {
  /** Default `/api/telephony/admin/events`. */
  eventsUrl?: string;
  /** Extra class on the root element. */
  className?: string;
}

const COLORS: Record<Word, string> = {
  ready: "#15803d",
  degraded: "#b45309",
  failed: "#b91c1c",
  paused: "#6b7280",
  pending: "#1d4ed8",
  unknown: "#6b7280",
};

export function TelephonyHealthMonitor({ eventsUrl = "/api/telephony/admin/events", className }: TelephonyHealthMonitorProps) {
  const [fleet, setFleet] = useState<Fleet>({ services: [], connected: false });
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => followAll({ watchUrl: eventsUrl }, setFleet), [eventsUrl]);
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  return (
    <section className={className} aria-label="Telephony health" style={{ fontFamily: "system-ui, sans-serif" }}>
      {!fleet.connected && (
        <p role="status" data-testid="monitor-disconnected" style={{ color: COLORS.failed }}>
          Live updates lost: reconnecting… {fleet.services.length > 0 && "(the answers below may be out of date)"}
        </p>
      )}
      {fleet.connected && fleet.services.length === 0 && <p>No TelephonyServices yet.</p>}
      <div style={{ display: "grid", gap: 12, gridTemplateColumns: "repeat(auto-fill, minmax(340px, 1fr))" }}>
        {fleet.services.map((v) => (
          <ServiceCard key={`${v.namespace}/${v.name}`} view={v} now={now} />
        ))}
      </div>
    </section>
  );
}

const card: CSSProperties = { border: "1px solid #d1d5db", borderRadius: 8, padding: 12, background: "#fff" };

function ServiceCard({ view, now }: { view: StatusView; now: number }) {
  const color = COLORS[view.status];
  const budget = view.restarts;
  const failure = view.lastFailure;
  return (
    <article style={{ ...card, borderTop: `4px solid ${color}` }} data-testid="monitor-service" data-status={view.status}>
      <header style={{ display: "flex", justifyContent: "space-between", alignItems: "baseline" }}>
        <strong>
          {view.namespace}/{view.name}
        </strong>
        <span style={{ color, fontWeight: 600 }} data-testid="monitor-status">
          {view.status}
        </span>
      </header>
      <dl style={{ display: "grid", gridTemplateColumns: "max-content 1fr", gap: "2px 12px", margin: "8px 0" }}>
        <dt>Phase</dt>
        <dd style={{ margin: 0 }}>{view.phase ?? "—"}</dd>
        <dt>Workers ready</dt>
        <dd style={{ margin: 0 }} data-testid="monitor-ready">
          {view.readyReplicas}/{view.replicas}
        </dd>
        <dt>Restart budget</dt>
        <dd style={{ margin: 0 }} data-testid="monitor-budget">
          {budget ? `${budget.used}/${budget.max} used` : "—"}
          {budget?.resetsAt && budget.used > 0 && ` · resets ${relative(Date.parse(budget.resetsAt), now)}`}
        </dd>
        {!view.healthy && view.retryAfter != null && (
          <>
            <dt>Retry after</dt>
            <dd style={{ margin: 0 }}>{view.retryAfter} s</dd>
          </>
        )}
        <dt>Last failure</dt>
        <dd style={{ margin: 0 }} data-testid="monitor-last-failure">
          {failure ? `${failure.reason} ${relative(Date.parse(failure.at), now)}: ${failure.message}` : "none"}
        </dd>
      </dl>
      {view.message && <p style={{ margin: "4px 0", color: "#374151" }}>{view.message}</p>}
      <Timeline view={view} now={now} />
    </article>
  );
}

const WIDTH = 320;
const HEIGHT = 34;

/** The budget's window as a strip, now at the right; one mark per failure in it. */
function Timeline({ view, now }: { view: StatusView; now: number }) {
  const windowSecs = view.restarts?.windowSeconds ?? 600;
  const start = now - windowSecs * 1000;
  const x = (ms: number) => Math.max(0, Math.min(WIDTH, ((ms - start) / (windowSecs * 1000)) * WIDTH));
  const marks = view.recentFailures.map((f) => ({ ...f, ms: Date.parse(f.at) })).filter((f) => f.ms >= start);
  return (
    <figure style={{ margin: 0 }}>
      <svg width={WIDTH} height={HEIGHT} role="img" aria-label={`${marks.length} failures in the last ${minutes(windowSecs)}`} data-testid="monitor-timeline">
        <rect x={0} y={10} width={WIDTH} height={14} fill="#f3f4f6" rx={3} />
        {marks.map((f, i) => (
          <g key={`${f.at}-${i}`}>
            <line x1={x(f.ms)} x2={x(f.ms)} y1={4} y2={30} stroke={COLORS.failed} strokeWidth={3} />
            <title>{`${f.reason} at ${new Date(f.ms).toLocaleTimeString()}`}</title>
          </g>
        ))}
      </svg>
      <figcaption style={{ fontSize: 12, color: "#6b7280", display: "flex", justifyContent: "space-between", width: WIDTH }}>
        <span>−{minutes(windowSecs)}</span>
        <span>
          {marks.length} failure{marks.length === 1 ? "" : "s"} in the budget window
        </span>
        <span>now</span>
      </figcaption>
    </figure>
  );
}

function minutes(secs: number): string {
  return secs % 60 === 0 ? `${secs / 60} min` : `${secs} s`;
}

function relative(ms: number, now: number): string {
  if (Number.isNaN(ms)) return "";
  const s = Math.round((ms - now) / 1000);
  if (Math.abs(s) < 2) return "just now";
  const amount = Math.abs(s) < 120 ? `${Math.abs(s)} s` : `${Math.round(Math.abs(s) / 60)} min`;
  return s < 0 ? `${amount} ago` : `in ${amount}`;
}
