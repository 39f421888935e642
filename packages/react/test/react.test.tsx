import type { ServerResponse } from "node:http";

import { act, cleanup, render, renderHook, screen, waitFor } from "@testing-library/react";
import type { ReactNode } from "react";
import { afterEach, describe, expect, it } from "vitest";

import { TelephonyErrorBoundary, TelephonyHealthMonitor, TelephonyProvider, useTelephony } from "../src/index.js";
import { DOWN, serve, sse, view, type TestServer } from "../../client/test/serve.js";

const servers: TestServer[] = [];
afterEach(async () => {
  cleanup();
  for (const s of servers.splice(0)) await s.close();
});

/** An app server: an events route whose stream the test drives, and a call route. */
async function app(callAnswer: (res: ServerResponse) => void = (res) => res.writeHead(201, { "content-type": "application/json" }).end(`{"callControlId":"v3:call-1"}`)) {
  const streams: ServerResponse[] = [];
  const s = await serve((req, res) => {
    res.setHeader("access-control-allow-origin", "*");
    res.setHeader("access-control-allow-headers", "content-type");
    if (req.method === "OPTIONS") return void res.writeHead(204).end();
    if (req.url === "/events") {
      sse(res);
      streams.push(res);
      res.write(`event: status\ndata: ${JSON.stringify(view())}\n\n`);
    } else if (req.url === "/call") callAnswer(res);
    else if (req.url === "/hangup") res.writeHead(409, { "content-type": "application/json" }).end(`{"error":{"code":"call_already_ended","message":"ended"}}`);
    else res.writeHead(404).end();
  });
  servers.push(s);
  const send = (v: Record<string, unknown>) => {
    for (const r of streams) r.write(`event: status\ndata: ${JSON.stringify(v)}\n\n`);
  };
  const wrapper = ({ children }: { children?: ReactNode }) => (
    <TelephonyProvider eventsUrl={`${s.url}/events`} callUrl={`${s.url}/call`} hangupUrl={`${s.url}/hangup`}>
      {children}
    </TelephonyProvider>
  );
  return { s, send, wrapper };
}

describe("useTelephony", () => {
  it("follows the service: available, then unavailable with why and when to retry", async () => {
    const { send, wrapper } = await app();
    const { result } = renderHook(() => useTelephony(), { wrapper });
    expect(result.current).toMatchObject({ available: false, status: "unknown" });
    await waitFor(() => expect(result.current.available).toBe(true));
    act(() => send(view(DOWN)));
    await waitFor(() => expect(result.current).toMatchObject({ available: false, status: "degraded", retryAfter: 7, message: "0/2 workers ready" }));
  });

  it("call() and hangup() never reject; a 503 from the route is a result with its Retry-After", async () => {
    let answer = 0;
    const { wrapper } = await app((res) => {
      answer += 1;
      if (answer === 1) res.writeHead(201, { "content-type": "application/json" }).end(`{"callControlId":"v3:call-1"}`);
      else if (answer === 2) res.writeHead(503, { "content-type": "application/json", "retry-after": "12" }).end(`{"error":{"code":"service_failed","message":"telephony is failed"}}`);
      else res.writeHead(500, { "content-type": "text/html" }).end("<html>oops</html>");
    });
    const { result } = renderHook(() => useTelephony(), { wrapper });
    await waitFor(() => expect(result.current.available).toBe(true));
    const placed = await act(() => result.current.call("+15551234567"));
    expect(placed).toEqual({ ok: true, call: { callControlId: "v3:call-1" } });
    expect(result.current.activeCall?.callControlId).toBe("v3:call-1");
    const refused = await act(() => result.current.call("+15551234567"));
    expect(refused).toEqual({ ok: false, error: { status: 503, code: "service_failed", message: "telephony is failed", retryAfter: 12 } });
    const broken = await act(() => result.current.call("+15551234567"));
    expect(broken).toMatchObject({ ok: false, error: { status: 500, code: "http_500" } });
    expect(result.current.error?.status).toBe(500);
    // The call had already ended (409): it's over either way.
    await act(() => result.current.hangup());
    expect(result.current.activeCall).toBeNull();
  });

  it("refuses a call while unavailable without a request", async () => {
    const { s, send, wrapper } = await app();
    const { result } = renderHook(() => useTelephony(), { wrapper });
    await waitFor(() => expect(result.current.available).toBe(true));
    act(() => send(view(DOWN)));
    await waitFor(() => expect(result.current.available).toBe(false));
    const r = await act(() => result.current.call("+15551234567"));
    expect(r).toMatchObject({ ok: false, error: { status: 503, retryAfter: 7 } });
    expect(s.requests.filter((r) => r.includes("/call"))).toEqual([]);
  });

  it("outside a provider it says what's missing", () => {
    expect(() => renderHook(() => useTelephony())).toThrow(/inside <TelephonyProvider>/);
  });
});

describe("TelephonyErrorBoundary", () => {
  it("shows the fallback for a crashed telephony component, and retries it when telephony comes back", async () => {
    const { send, wrapper } = await app();
    let crash = true;
    function Dialer() {
      const t = useTelephony();
      if (crash && !t.available) throw new Error("the SDK blew up");
      return <p>dialer {t.status}</p>;
    }
    const errors: string[] = [];
    render(
      <>
        <TelephonyErrorBoundary fallback={({ error }) => <p>fallback: {error.message}</p>} onError={(e) => errors.push(e.message)}>
          <Dialer />
        </TelephonyErrorBoundary>
        <p>the rest of the page</p>
      </>,
      { wrapper },
    );
    expect(await screen.findByText("fallback: the SDK blew up")).toBeTruthy();
    expect(screen.getByText("the rest of the page")).toBeTruthy();
    crash = false;
    await screen.findByText("dialer ready"); // available: the boundary reset itself
    crash = true;
    act(() => send(view(DOWN)));
    expect(await screen.findByText("fallback: the SDK blew up")).toBeTruthy();
    expect(errors.length).toBeGreaterThanOrEqual(2);
  });
});

describe("TelephonyHealthMonitor", () => {
  it("shows each service's phase, workers, budget, last failure and failures on the timeline", async () => {
    const now = Date.now();
    const failed = view({
      namespace: "shop",
      name: "calls",
      ...DOWN,
      status: "failed",
      phase: "Failed",
      replicas: 0,
      restarts: { used: 4, max: 3, windowSeconds: 600, resetsAt: new Date(now + 300_000).toISOString() },
      lastFailure: { reason: "Error", message: "container exited: Error (exit code 2)", pod: "calls-1", at: new Date(now - 5_000).toISOString() },
      recentFailures: [1, 2, 3, 4].map((i) => ({ reason: "Error", at: new Date(now - i * 60_000).toISOString() })),
    });
    const s = await serve((_req, res) => {
      res.setHeader("access-control-allow-origin", "*");
      sse(res);
      res.write(`event: status\ndata: ${JSON.stringify(view({ namespace: "billing", name: "ivr" }))}\n\n`);
      res.write(`event: status\ndata: ${JSON.stringify(failed)}\n\n`);
    });
    servers.push(s);
    render(<TelephonyHealthMonitor eventsUrl={`${s.url}/watch`} />);
    await waitFor(() => expect(screen.getAllByTestId("monitor-service")).toHaveLength(2));
    const [first, second] = screen.getAllByTestId("monitor-service");
    expect(first!.textContent).toContain("billing/ivr");
    expect(second!.dataset.status).toBe("failed");
    expect(second!.querySelector("[data-testid=monitor-budget]")!.textContent).toMatch(/^4\/3 used · resets in 5 min$/);
    expect(second!.querySelector("[data-testid=monitor-last-failure]")!.textContent).toMatch(/^Error 5 s ago: container exited/);
    expect(second!.querySelectorAll("[data-testid=monitor-timeline] line")).toHaveLength(4);
    expect(second!.textContent).toContain("4 failures in the budget window");
    await s.close();
    servers.splice(0);
    expect(await screen.findByTestId("monitor-disconnected")).toBeTruthy();
  });
});
