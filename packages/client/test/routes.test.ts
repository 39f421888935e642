import { afterEach, describe, expect, it } from "vitest";

import { TelephonyRequestError, TelephonyUnavailable, createTelephonyClient } from "../src/index.js";
import { eventsRoute, field, fleetEventsRoute, readJson, statusRoute, withTelephony } from "../src/routes.js";
import { DOWN, serve, sse, view, type TestServer } from "./serve.js";

const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

const post = (body: string, type = "application/json") =>
  new Request("http://app.test/api/telephony/call", { method: "POST", headers: { "content-type": type }, body });

/** A handler like the example app's call route. */
const callRoute = withTelephony(async (req: Request) => {
  const body = await readJson(req);
  const to = field(body, "to");
  if (to === "+15550000001") throw new TelephonyUnavailable("telephony is failed", 503, 300, "service_failed");
  if (to === "+15550000002") throw new TelephonyUnavailable("Telnyx failed", 502, 30, "upstream_error");
  if (to === "+15550000003") throw new TelephonyRequestError("the call has already ended", 409, "call_already_ended");
  if (to === "+15550000004") throw new Error("the app's own bug, with a secret: KEY123");
  return Response.json({ ok: true }, { status: 201 });
});

async function answer(res: Response) {
  return { status: res.status, retryAfter: res.headers.get("retry-after"), body: await res.json() };
}

describe("withTelephony", () => {
  it("turns telephony errors into 503/502 with Retry-After, 409, and a bad body into 400/415", async () => {
    expect((await answer(await callRoute(post(`{"to":"+15551234567"}`), {}))).status).toBe(201);
    expect(await answer(await callRoute(post(`{"to":"+15550000001"}`), {}))).toEqual({
      status: 503,
      retryAfter: "300",
      body: { error: { code: "service_failed", message: "telephony is failed" }, retryAfter: 300 },
    });
    expect(await answer(await callRoute(post(`{"to":"+15550000002"}`), {}))).toMatchObject({ status: 502, retryAfter: "30" });
    expect(await answer(await callRoute(post(`{"to":"+15550000003"}`), {}))).toMatchObject({ status: 409, retryAfter: null });
    for (const [body, type, status, message] of [
      [`{"to":`, "application/json", 400, /not valid JSON/],
      [`[1,2]`, "application/json", 400, /a JSON object/],
      [`{"to":7}`, "application/json", 400, /to must be a non-empty string/],
      [`to=+1555`, "application/x-www-form-urlencoded", 415, /must be JSON/],
      [JSON.stringify({ to: "x".repeat(20_000) }), "application/json", 413, /larger than/],
    ] as const) {
      const a = await answer(await callRoute(post(body, type), {}));
      expect(a.status, body.slice(0, 20)).toBe(status);
      expect(a.body.error.message).toMatch(message);
    }
  });

  it("an app bug is a 500 that doesn't leak its message", async () => {
    const a = await answer(await callRoute(post(`{"to":"+15550000004"}`), {}));
    expect(a).toEqual({ status: 500, retryAfter: null, body: { error: { code: "internal", message: "internal error" } } });
  });
});

describe("statusRoute", () => {
  it("passes the readiness answer on, 503 with Retry-After", async () => {
    const r = await serve((_req, res) => res.writeHead(503, { "content-type": "application/json" }).end(JSON.stringify(view(DOWN))));
    servers.push(r);
    const route = statusRoute(createTelephonyClient({ readinessUrl: r.url, namespace: "shop", service: "calls" }));
    expect(await answer(await route(new Request("http://app.test/")))).toMatchObject({ status: 503, retryAfter: "7", body: { status: "degraded" } });
  });

  it("an unreachable readiness service is a 503 saying so, never a 500", async () => {
    const route = statusRoute(() => createTelephonyClient({ readinessUrl: "http://127.0.0.1:9", namespace: "shop", service: "calls" }));
    const a = await answer(await route(new Request("http://app.test/")));
    expect(a).toMatchObject({ status: 503, retryAfter: "5", body: { status: "unknown", healthy: false, namespace: "shop", name: "calls" } });
    expect(a.body.message).toMatch(/unreachable/);
  });
});

describe("eventsRoute", () => {
  it("streams the service's answers as status events, and stops when the browser goes", async () => {
    const r = await serve((req, res) => {
      if (req.url === "/v1/watch") {
        sse(res);
        res.write(`event: status\ndata: ${JSON.stringify(view())}\n\n`);
        setTimeout(() => res.write(`event: status\ndata: ${JSON.stringify(view(DOWN))}\n\n`), 50);
      } else res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(view()));
    });
    servers.push(r);
    const abort = new AbortController();
    const route = eventsRoute(createTelephonyClient({ readinessUrl: r.url, namespace: "shop", service: "calls" }));
    const res = route(new Request("http://app.test/events", { signal: abort.signal }));
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes(`"status":"degraded"`)) text += (await reader.read()).value ?? "";
    const events = text.split("\n\n").filter((e) => e.startsWith("event: status"));
    expect(events.map((e) => JSON.parse(e.split("data: ")[1]!).status)).toEqual(["unknown", "ready", "degraded"]);
    abort.abort();
    expect((await reader.read()).done).toBe(true);
  });
});

describe("fleetEventsRoute", () => {
  it("unreachable: 503 with Retry-After", async () => {
    const a = await answer(await fleetEventsRoute("http://127.0.0.1:9")(new Request("http://app.test/")));
    expect(a).toMatchObject({ status: 503, retryAfter: "5", body: { error: { code: "unreachable" } } });
  });
});
