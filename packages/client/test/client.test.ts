import { readFileSync } from "node:fs";

import { compile } from "json-schema-to-typescript";
import { afterEach, describe, expect, it } from "vitest";

import { TelephonyRequestError, TelephonyUnavailable, createTelephonyClient, parseRetryAfter, type TelephonyState } from "../src/index.js";
import { DOWN, eventually, serve, sse, view, type TestServer } from "./serve.js";

const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});
async function server(handler: Parameters<typeof serve>[0]): Promise<TestServer> {
  const s = await serve(handler);
  servers.push(s);
  return s;
}

/** A readiness service answering `answer` for shop/calls, and a worker. */
async function scene(answer: { code: number; body: Record<string, unknown> }, worker: Parameters<typeof serve>[0]) {
  const w = await server(worker);
  const r = await server((req, res) => {
    if (req.url === "/v1/status/shop/calls") {
      res.writeHead(answer.code, { "content-type": "application/json" }).end(JSON.stringify({ ...answer.body, endpoint: w.url }));
    } else {
      res.writeHead(404, { "content-type": "application/json" }).end(`{"error":{"code":404,"message":"no TelephonyService"}}`);
    }
  });
  return { worker: w, client: createTelephonyClient({ readinessUrl: r.url, namespace: "shop", service: "calls", timeoutMs: 500 }) };
}

async function thrown(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected a rejection");
}

const json = (code: number, body: unknown, headers: Record<string, string> = {}) =>
  ((_req: unknown, res: import("node:http").ServerResponse) =>
    res.writeHead(code, { "content-type": "application/json", ...headers }).end(JSON.stringify(body)));

describe("parseRetryAfter", () => {
  it("reads seconds and HTTP dates, and nothing else", () => {
    expect(parseRetryAfter("7")).toBe(7);
    expect(parseRetryAfter(new Date(10_000 + 30_000).toUTCString(), 10_000)).toBe(30);
    expect(parseRetryAfter("soon")).toBeNull();
    expect(parseRetryAfter(null)).toBeNull();
    expect(parseRetryAfter("-3")).toBeNull();
  });
});

describe("status()", () => {
  it("returns 200 and 503 answers alike", async () => {
    const { client } = await scene({ code: 503, body: view(DOWN) }, json(500, {}));
    expect(await client.status()).toMatchObject({ status: "degraded", healthy: false, retryAfter: 7 });
    expect(await client.state()).toMatchObject({ available: false, status: "degraded", retryAfter: 7 });
  });

  it("no such service, HTML error pages, refused connections and timeouts: TelephonyUnavailable", async () => {
    const missing = createTelephonyClient({ readinessUrl: (await scene({ code: 200, body: view() }, json(200, {}))).worker.url, namespace: "shop", service: "nope" });
    const nf = await thrown(missing.status());
    expect(nf).toBeInstanceOf(TelephonyUnavailable);

    const html = await server((_req, res) => res.writeHead(502, { "content-type": "text/html", "retry-after": "9" }).end("<html><h1>502 Bad Gateway</h1></html>"));
    const e = (await thrown(createTelephonyClient({ readinessUrl: html.url, namespace: "shop", service: "calls" }).status())) as TelephonyUnavailable;
    expect(e).toBeInstanceOf(TelephonyUnavailable);
    expect([e.code, e.retryAfter]).toEqual(["bad_answer", 9]);
    expect(e.message).toMatch(/502 without JSON \(<html><h1>502 Bad Gateway/);

    const closed = await server(() => undefined);
    const url = closed.url;
    await closed.close();
    servers.splice(servers.indexOf(closed), 1);
    const refused = (await thrown(createTelephonyClient({ readinessUrl: url, namespace: "shop", service: "calls" }).status())) as TelephonyUnavailable;
    expect([refused.name, refused.code, refused.status]).toEqual(["TelephonyUnavailable", "unreachable", 503]);

    const silent = await server(() => undefined); // accepts, never answers
    const slow = (await thrown(createTelephonyClient({ readinessUrl: silent.url, namespace: "shop", service: "calls", timeoutMs: 100 }).status())) as TelephonyUnavailable;
    expect([slow.code, slow.message]).toEqual(["timeout", "the readiness service did not answer within 100 ms"]);
    expect(await createTelephonyClient({ readinessUrl: silent.url, namespace: "shop", service: "calls", timeoutMs: 100 }).state()).toMatchObject({
      available: false,
      status: "unknown",
    });
  });
});

describe("worker calls", () => {
  it("a credential from the worker the readiness answer names", async () => {
    const credential = { credentialId: "c1", sipUsername: "gencred1", token: "tok", expiresAt: "2026-11-26T00:00:00Z" };
    const { client, worker } = await scene({ code: 200, body: view() }, json(201, credential));
    expect(await client.createCredential({ username: "agent-1" })).toEqual(credential);
    expect(await client.token("agent-1")).toEqual({ token: "tok", expiresAt: credential.expiresAt });
    expect(worker.requests).toEqual(["POST /v1/credentials", "POST /v1/credentials"]);
  });

  it("maps the worker's answers: 400 is the request's fault, 502/503 carry Retry-After, a 500 is upstream", async () => {
    const bad = await scene({ code: 200, body: view() }, json(400, { error: { code: "invalid_field", message: "to must be E.164", field: "to" } }));
    const e400 = (await thrown(bad.client.dial({ to: "123", from: "+15550000000" }))) as TelephonyRequestError;
    expect(e400).toBeInstanceOf(TelephonyRequestError);
    expect([e400.status, e400.field, e400.message]).toEqual([400, "to", "to must be E.164"]);

    const upstream = await scene({ code: 200, body: view() }, json(502, { error: { code: "upstream_error", message: "Telnyx failed" } }, { "retry-after": "30" }));
    const e502 = (await thrown(upstream.client.dial({ to: "+15551234567", from: "+15550000000" }))) as TelephonyUnavailable;
    expect([e502.status, e502.retryAfter, e502.code]).toEqual([502, 30, "upstream_error"]);

    const broken = await scene({ code: 200, body: view() }, (_req, res) => res.writeHead(500).end("panic"));
    const e500 = (await thrown(broken.client.hangup("v3:abc"))) as TelephonyUnavailable;
    expect([e500.name, e500.status]).toEqual(["TelephonyUnavailable", 502]);

    const odd = await scene({ code: 200, body: view() }, json(201, { surprise: true }));
    expect(((await thrown(odd.client.dial({ to: "+15551234567", from: "+15550000000" }))) as TelephonyUnavailable).code).toBe("bad_answer");
  });

  it("fails fast, without calling the worker, while the readiness service says it's down", async () => {
    const { client, worker } = await scene({ code: 503, body: view({ ...DOWN, status: "failed", phase: "Failed", retryAfter: 300, message: "budget exhausted" }) }, json(201, {}));
    const e = (await thrown(client.createCredential({ username: "agent-1" }))) as TelephonyUnavailable;
    expect([e.status, e.retryAfter, e.message, e.code]).toEqual([503, 300, "budget exhausted", "service_failed"]);
    expect(worker.requests).toEqual([]);
  });

  it("refuses a bad argument before sending anything", async () => {
    const { client, worker } = await scene({ code: 200, body: view() }, json(201, {}));
    const e = (await thrown(client.createCredential({ username: 42 as unknown as string }))) as TelephonyRequestError;
    expect([e.status, e.field]).toEqual([400, "username"]);
    expect(worker.requests).toEqual([]);
  });
});

describe("subscribe()", () => {
  it("shares one stream between subscribers, and closes it with the last", async () => {
    let streams = 0;
    const r = await server((req, res) => {
      if (req.url === "/v1/watch") {
        streams += 1;
        sse(res);
        res.write(`event: status\ndata: ${JSON.stringify(view())}\n\n`);
      } else json(200, view())(req, res);
    });
    const client = createTelephonyClient({ readinessUrl: r.url, namespace: "shop", service: "calls" });
    const a: TelephonyState[] = [];
    const b: TelephonyState[] = [];
    const offA = client.subscribe((s) => a.push(s));
    await eventually(() => expect(a[a.length - 1]?.available).toBe(true));
    const offB = client.subscribe((s) => b.push(s));
    expect(b.map((s) => s.status)).toEqual(["ready"]);
    offA();
    offB();
    expect(streams).toBe(1);
  });
});

describe("generated types", () => {
  it("status.ts is what the committed schema generates", async () => {
    const dir = new URL("../src/", import.meta.url);
    const schema = JSON.parse(readFileSync(new URL("status.schema.json", dir), "utf8"));
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8"));
    const banner = /--bannerComment "(.*)"$/.exec(pkg.scripts["gen:types"])![1]!.replace(/\\"/g, '"');
    const want = await compile(schema, "StatusView", { bannerComment: banner, additionalProperties: false });
    expect(readFileSync(new URL("status.ts", dir), "utf8")).toBe(want);
  });
});
