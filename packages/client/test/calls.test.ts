import { afterEach, describe, expect, it } from "vitest";

import { createTelephonyClient, type CallEvent } from "../src/index.js";
import { eventually, serve, sse, view, type TestServer } from "./serve.js";

const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

const call = (id: string, state: string, extra: Record<string, unknown> = {}) => ({
  callControlId: id,
  state,
  startedAt: "2026-11-26T00:00:00Z",
  recording: false,
  ...extra,
});

/** A readiness service pointing at `worker`, and a client of both. */
async function clientFor(worker: TestServer, workerToken?: string) {
  const r = await serve((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ ...view(), endpoint: worker.url }));
  });
  servers.push(r);
  return createTelephonyClient({
    readinessUrl: r.url,
    namespace: "shop",
    service: "calls",
    timeoutMs: 500,
    backoff: { baseMs: 10, maxMs: 20 },
    workerToken,
  });
}

describe("onCallEvent", () => {
  it("delivers each call event once, resuming after a dropped stream from the last id", async () => {
    const lastIds: (string | undefined)[] = [];
    let connection = 0;
    const worker = await serve((req, res) => {
      if (req.url !== "/v1/events") return void res.writeHead(404).end();
      lastIds.push(req.headers["last-event-id"] as string | undefined);
      connection += 1;
      sse(res);
      const frame = (id: string, type: string, c: unknown) => res.write(`id: ${id}\nevent: ${type}\ndata: ${JSON.stringify({ type, call: c })}\n\n`);
      if (connection === 1) {
        frame("b-1", "call.dialed", call("v3:a", "dialed"));
        frame("b-2", "call.answered", call("v3:a", "answered"));
        res.write("event: call.answered\ndata: {not json\n\n"); // skipped
        res.end(); // dropped
      } else {
        frame("b-3", "call.ended", call("v3:a", "ended", { hangupCause: "normal_clearing" }));
      }
    });
    servers.push(worker);
    const client = await clientFor(worker);
    const seen: CallEvent[] = [];
    const close = client.onCallEvent((e) => seen.push(e));
    await eventually(() => expect(seen).toHaveLength(3));
    close();
    expect(seen.map((e) => e.type)).toEqual(["call.dialed", "call.answered", "call.ended"]);
    expect(lastIds).toEqual([undefined, "b-2"]);
    const ended = seen[2];
    expect(ended.type === "call.ended" && ended.call.hangupCause).toBe("normal_clearing");
  });

  it("says reset when the worker can't resend what was missed", async () => {
    const worker = await serve((_req, res) => {
      sse(res);
      res.write("event: reset\ndata: events were missed: refetch GET /v1/calls\n\n");
    });
    servers.push(worker);
    const client = await clientFor(worker);
    const seen: CallEvent[] = [];
    const close = client.onCallEvent((e) => seen.push(e));
    await eventually(() => expect(seen[0]).toEqual({ type: "reset", reason: "events were missed: refetch GET /v1/calls" }));
    close();
  });
});

describe("calls and recording", () => {
  it("lists and reads calls, and starts and stops recording by call id", async () => {
    const bodies: string[] = [];
    const worker = await serve((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        bodies.push(`${req.method} ${req.url} ${body}`);
        const send = (code: number, b: unknown) => res.writeHead(code, { "content-type": "application/json" }).end(JSON.stringify(b));
        if (req.url === "/v1/calls") return send(200, { active: 1, calls: [call("v3:a", "answered")] });
        if (req.url === "/v1/calls/v3%3Aa") return send(200, call("v3:a", "answered"));
        if (req.url === "/v1/calls/v3%3Agone") return send(404, { error: { code: "call_not_found", message: "this worker knows no call with that id" } });
        if (req.url?.includes("/recording/")) return send(200, { result: "ok" });
        send(500, {});
      });
    });
    servers.push(worker);
    const client = await clientFor(worker);
    expect((await client.calls()).map((c) => c.state)).toEqual(["answered"]);
    expect((await client.call("v3:a")).callControlId).toBe("v3:a");
    await expect(client.call("v3:gone")).rejects.toMatchObject({ status: 404, code: "call_not_found" });
    await client.startRecording("v3:a", { format: "wav" });
    await client.stopRecording("v3:a");
    expect(bodies).toContain(`POST /v1/calls/v3%3Aa/recording/start {"format":"wav"}`);
    expect(bodies).toContain("POST /v1/calls/v3%3Aa/recording/stop {}");
    await expect(client.call("")).rejects.toMatchObject({ status: 400, field: "callControlId" });
  });
});

describe("failover", () => {
  it("sends calls to the backup's endpoint while the answer says via backup, even with workerUrl set", async () => {
    const hits: string[] = [];
    const worker = (who: string) =>
      serve((req, res) => {
        hits.push(`${who} ${req.method} ${req.url}`);
        res.writeHead(201, { "content-type": "application/json" }).end(JSON.stringify({ callControlId: `v3:${who}` }));
      });
    const primary = await worker("primary");
    const backup = await worker("backup");
    servers.push(primary, backup);
    let via = "backup";
    const r = await serve((_req, res) => {
      const endpoint = via === "backup" ? backup.url : primary.url;
      const body = { ...view(), status: via === "backup" ? "failed" : "ready", healthy: true, via, endpoint };
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
    });
    servers.push(r);
    const client = createTelephonyClient({ readinessUrl: r.url, namespace: "shop", service: "calls", workerUrl: primary.url, timeoutMs: 500 });
    expect(await client.dial({ to: "+15551234567", from: "+15557654321" })).toEqual({ callControlId: "v3:backup" });
    via = "primary";
    expect(await client.dial({ to: "+15551234567", from: "+15557654321" })).toEqual({ callControlId: "v3:primary" });
    expect(hits).toEqual(["backup POST /v1/calls", "primary POST /v1/calls"]);
  });
});

describe("workerToken", () => {
  it("goes to the worker on every request and stream, and never to the readiness service", async () => {
    const seen: { url: string | undefined; auth: string | undefined }[] = [];
    const worker = await serve((req, res) => {
      seen.push({ url: req.url, auth: req.headers.authorization });
      if (req.headers.authorization !== "Bearer t0ken-for-the-worker-42") {
        return void res.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ error: { code: "unauthorized", message: "needs a token" } }));
      }
      if (req.url === "/v1/events") {
        sse(res);
        return void res.write(`id: b-1\nevent: call.ended\ndata: ${JSON.stringify({ call: call("v3:a", "ended") })}\n\n`);
      }
      if (req.url === "/v1/calls" && req.method === "POST") {
        return void res.writeHead(201, { "content-type": "application/json" }).end(JSON.stringify({ callControlId: "v3:a" }));
      }
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ calls: [call("v3:a", "answered")] }));
    });
    servers.push(worker);
    const readinessAuth: (string | undefined)[] = [];
    const r = await serve((req, res) => {
      readinessAuth.push(req.headers.authorization);
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ ...view(), endpoint: worker.url }));
    });
    servers.push(r);
    const client = createTelephonyClient({
      readinessUrl: r.url,
      namespace: "shop",
      service: "calls",
      timeoutMs: 500,
      workerToken: "t0ken-for-the-worker-42",
    });
    await client.dial({ to: "+15551234567", from: "+15557654321" });
    expect(await client.calls()).toHaveLength(1);
    const events: CallEvent[] = [];
    const close = client.onCallEvent((e) => events.push(e));
    await eventually(() => expect(events).toHaveLength(1));
    close();
    expect(seen.map((s) => s.auth)).toEqual(Array(3).fill("Bearer t0ken-for-the-worker-42"));
    expect(readinessAuth.every((a) => a === undefined)).toBe(true);

    const without = await clientFor(worker);
    await expect(without.dial({ to: "+15551234567", from: "+15557654321" })).rejects.toMatchObject({ status: 401 });
  });
});
