import { afterEach, describe, expect, it } from "vitest";

import { backoffDelay, followAll, followStatus, type Fleet, type TelephonyState } from "../src/index.js";
import { DOWN, eventually, serve, sse, view, type TestServer } from "./serve.js";

let server: TestServer | undefined;
let close: (() => void) | undefined;
afterEach(async () => {
  close?.();
  await server?.close();
  server = close = undefined;
});

const fast = { backoff: { baseMs: 20, maxMs: 100 }, unavailableAfterMs: 300 };

function follow(url: string, extra: Record<string, unknown> = {}): TelephonyState[] {
  const seen: TelephonyState[] = [];
  close = followStatus({ watchUrl: `${url}/v1/watch`, match: { namespace: "shop", name: "calls" }, ...fast, ...extra }, (s) => seen.push(s));
  return seen;
}
const last = (seen: TelephonyState[]) => seen[seen.length - 1];

describe("backoff", () => {
  it("doubles its ceiling up to the maximum, with full jitter", () => {
    const b = { baseMs: 100, maxMs: 1000 };
    expect([0, 1, 2, 3, 10].map((n) => backoffDelay(n, b, () => 0.999))).toEqual([99, 199, 399, 799, 999]);
    expect(backoffDelay(5, b, () => 0)).toBe(0);
  });
});

describe("followStatus", () => {
  it("follows one service's answers and ignores the others', malformed data and unknown events", async () => {
    server = await serve((_req, res) => {
      sse(res);
      res.write(`event: status\ndata: ${JSON.stringify(view({ name: "other", healthy: false, status: "failed" }))}\n\n`);
      res.write(`event: status\ndata: {not json\n\n`);
      res.write(`event: status\ndata: ${JSON.stringify({ namespace: "shop", name: "calls", status: "bogus" })}\n\n`);
      res.write(`event: party\ndata: {}\n\n`);
      res.write(`: heartbeat\n\n`);
      res.write(`event: status\ndata: ${JSON.stringify(view())}\n\n`);
      setTimeout(() => res.write(`event: status\ndata: ${JSON.stringify(view(DOWN))}\n\n`), 50);
    });
    const seen = follow(server.url);
    await eventually(() => expect(last(seen)?.status).toBe("degraded"));
    expect(seen.map((s) => s.status)).toEqual(["unknown", "ready", "degraded"]);
    expect(last(seen)).toMatchObject({ available: false, retryAfter: 7, message: "0/2 workers ready" });
  });

  it("a server that stops mid-event: unknown after the bound, available again once it's back", async () => {
    let connections = 0;
    let back = Infinity;
    server = await serve((req, res) => {
      connections += 1;
      if (connections === 1) {
        sse(res);
        res.write(`event: status\ndata: ${JSON.stringify(view())}\n\n`);
        res.write(`event: status\ndata: {"namespace":"sh`);
        setTimeout(() => {
          back = Date.now() + 700; // then refused mid-handshake for 0.7 s
          req.socket.destroy();
        }, 30);
      } else if (Date.now() < back) {
        req.socket.destroy();
      } else {
        sse(res);
        res.write(`event: status\ndata: ${JSON.stringify(view())}\n\n`);
      }
    });
    const seen = follow(server.url);
    await eventually(() => expect(seen.map((s) => s.status)).toEqual(["unknown", "ready", "unknown", "ready"]), 5000);
    expect(seen[2]?.message).toMatch(/no answer from the readiness service/);
    expect(connections).toBeGreaterThanOrEqual(3);
  });

  it("a silent stream (no heartbeat) is dropped as stale and reconnected", async () => {
    let connections = 0;
    server = await serve((_req, res) => {
      connections += 1;
      sse(res);
      if (connections === 1) res.write(`event: status\ndata: ${JSON.stringify(view())}\n\n`);
      // then nothing at all
    });
    const seen = follow(server.url, { staleAfterMs: 200 });
    await eventually(() => expect(last(seen)?.message).toMatch(/no data for/), 5000);
    expect(seen.map((s) => s.status)).toEqual(["unknown", "ready", "unknown"]);
    expect(connections).toBeGreaterThanOrEqual(2);
  });

  it("404s and HTML error pages are no answer: unknown, retried with backoff", async () => {
    server = await serve((req, res) => {
      if (server!.requests.length % 2) {
        res.writeHead(404, { "content-type": "application/json" }).end(`{"error":{"code":404,"message":"no such route"}}`);
      } else {
        res.writeHead(502, { "content-type": "text/html" }).end("<html><body>Bad Gateway</body></html>");
      }
    });
    const seen = follow(server.url);
    await eventually(() => expect(last(seen)?.message).toMatch(/HTTP (404|502)/), 3000);
    expect(last(seen)).toMatchObject({ available: false, status: "unknown", retryAfter: 5 });
    await new Promise((r) => setTimeout(r, 400));
    const n = server.requests.length;
    expect(n).toBeGreaterThan(2);
    expect(n).toBeLessThan(40); // backoff: not a hot loop
  });

  it("a 200 that isn't an event stream is no answer either", async () => {
    server = await serve((_req, res) => res.writeHead(200, { "content-type": "text/html" }).end("<html>login</html>"));
    const seen = follow(server.url);
    await eventually(() => expect(last(seen)?.message).toMatch(/not an event stream \(text\/html\)/));
  });

  it("resync makes it reconnect for a fresh snapshot; deleted makes it unknown", async () => {
    let connections = 0;
    server = await serve((_req, res) => {
      connections += 1;
      sse(res);
      if (connections === 1) {
        res.write(`event: status\ndata: ${JSON.stringify(view(DOWN))}\n\nevent: resync\ndata: {}\n\n`);
      } else {
        res.write(`event: status\ndata: ${JSON.stringify(view())}\n\n`);
        setTimeout(() => res.write(`event: deleted\ndata: {"namespace":"shop","name":"calls"}\n\n`), 50);
      }
    });
    const seen = follow(server.url);
    await eventually(() => expect(seen.map((s) => s.status)).toEqual(["unknown", "degraded", "ready", "unknown"]));
    expect(last(seen)?.message).toBe("TelephonyService shop/calls was deleted");
    expect(connections).toBe(2);
  });

  it("a subscriber that throws doesn't stop the stream", async () => {
    server = await serve((_req, res) => {
      sse(res);
      res.write(`event: status\ndata: ${JSON.stringify(view())}\n\n`);
      setTimeout(() => res.write(`event: status\ndata: ${JSON.stringify(view(DOWN))}\n\n`), 50);
    });
    const seen: string[] = [];
    close = followStatus({ watchUrl: `${server.url}/v1/watch`, ...fast }, (s) => {
      seen.push(s.status);
      throw new Error("the app's bug");
    });
    await eventually(() => expect(seen).toEqual(["unknown", "ready", "degraded"]));
  });
});

describe("followAll", () => {
  it("keeps every service, forgets deleted ones, and says when it's disconnected", async () => {
    let connections = 0;
    server = await serve((req, res) => {
      connections += 1;
      sse(res);
      if (connections === 1) {
        res.write(`event: status\ndata: ${JSON.stringify(view({ namespace: "b" }))}\n\n`);
        res.write(`event: status\ndata: ${JSON.stringify(view({ namespace: "a" }))}\n\n`);
        res.write(`event: deleted\ndata: {"namespace":"b","name":"calls"}\n\n`);
        setTimeout(() => req.socket.destroy(), 50);
      } else {
        res.write(`event: status\ndata: ${JSON.stringify(view({ namespace: "c" }))}\n\n`);
      }
    });
    const fleets: Fleet[] = [];
    close = followAll({ watchUrl: `${server.url}/v1/watch`, ...fast }, (f) => fleets.push(f));
    await eventually(() => expect(fleets.some((f) => !f.connected && f.services.length === 1)).toBe(true));
    await eventually(() => expect(fleets[fleets.length - 1]).toMatchObject({ connected: true, services: [{ namespace: "c" }] }));
    expect(fleets.find((f) => f.services.length === 2)?.services.map((s) => s.namespace)).toEqual(["a", "b"]);
  });
});
