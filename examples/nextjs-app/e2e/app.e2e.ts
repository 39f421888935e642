/**
 * The example app in headless Chromium, against real worker pods on the local cluster's real node.
 * scripts/web-e2e.sh installs the chart, applies the TelephonyService, starts `next start`, and
 * passes where everything is through the environment.
 */

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

import { Ajv2020 } from "ajv/dist/2020.js";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this test through scripts/web-e2e.sh`);
  return v;
}
const APP = env("DIALTONE_APP_URL");
const READINESS = env("DIALTONE_READINESS_URL");
const NS = env("DIALTONE_NAMESPACE");
const SOCK = env("DIALTONE_CONTAINERD_SOCK");
const OUT = env("DIALTONE_WEB_E2E_OUT");

const schema = JSON.parse(readFileSync(new URL("../../../packages/client/src/status.schema.json", import.meta.url), "utf8"));
const validate = new Ajv2020({ strict: false, validateFormats: false }).compile(schema);
function conforms(body: unknown): void {
  if (!validate(body)) throw new Error(`not a StatusView per the committed schema: ${JSON.stringify(validate.errors)} in ${JSON.stringify(body)}`);
}

function kubectl(...args: string[]): string {
  return execFileSync("kubectl", args, { encoding: "utf8" });
}

/** The worker containers, by containerd id, whose process is running. */
function runningWorkers(): string[] {
  const ids = kubectl("get", "pods", "-n", NS, "-l", "dialtone.dev/service=calls", "-o", "jsonpath={.items[*].status.containerStatuses[*].containerID}")
    .split(/\s+/)
    .filter(Boolean)
    .map((id) => id.replace("containerd://", ""));
  const tasks = execFileSync("ctr", ["--address", SOCK, "-n", "k8s.io", "tasks", "ls"], { encoding: "utf8" });
  const running = new Set(tasks.split("\n").filter((l) => l.includes("RUNNING")).map((l) => l.split(/\s+/)[0]));
  return ids.filter((id) => running.has(id));
}

/** SIGKILL to every running worker container (as the OOM killer or a crash would). */
function killWorkers(): number {
  const ids = runningWorkers();
  for (const id of ids) execFileSync("ctr", ["--address", SOCK, "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", id]);
  return ids.length;
}

async function until<T>(what: string, ms: number, f: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

beforeAll(async () => {
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
  page = await browser.newPage();
  page.on("pageerror", (e) => pageErrors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(`console.error: ${m.text()} (${m.location().url})`);
  });
  await page.goto(APP);
});

afterAll(async () => {
  await browser?.close();
});

const button = () => page.getByTestId("call-button");

describe.sequential("the example app on real worker pods", () => {
  it("shows telephony available, and places a call through the app's route, the worker and Telnyx", async () => {
    await expect.poll(() => button().textContent(), { timeout: 60_000 }).toBe("Call");
    expect(await button().isEnabled()).toBe(true);
    await button().click();
    await expect.poll(() => page.getByTestId("call-placed").textContent().catch(() => null), { timeout: 15_000 }).toMatch(/^Call placed: \S+/);
    expect(await button().textContent()).toBe("Hang up");
    await button().click();
    await expect.poll(() => button().textContent(), { timeout: 15_000 }).toBe("Call");
  });

  it("the credential route reaches the worker and the Telnyx mock; a bad body is a 400", async () => {
    const ok = await fetch(`${APP}/api/telephony/credential`, { method: "POST", headers: { "content-type": "application/json" }, body: `{"username":"agent-7"}` });
    expect(ok.status).toBe(201);
    const credential = (await ok.json()) as Record<string, string>;
    expect(Object.keys(credential).sort()).toEqual(["credentialId", "expiresAt", "sipUsername", "token"]);
    expect(credential.token!.length).toBeGreaterThan(0);
    const bad = await fetch(`${APP}/api/telephony/credential`, { method: "POST", headers: { "content-type": "application/json" }, body: `{"username":` });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(/not valid JSON/);
    const invalid = await fetch(`${APP}/api/telephony/credential`, { method: "POST", headers: { "content-type": "application/json" }, body: `{"username":"no spaces allowed"}` });
    expect(invalid.status).toBe(400); // the worker's own validation, passed on
    expect(((await invalid.json()) as { error: { field?: string } }).error.field).toBe("username");
  });

  it("the readiness service's live answers match the schema the client's types come from", async () => {
    const one = await fetch(`${READINESS}/v1/status/${NS}/calls`);
    expect(one.status).toBe(200);
    conforms(await one.json());
    const all = (await (await fetch(`${READINESS}/v1/status`)).json()) as { items: unknown[] };
    expect(all.items.length).toBeGreaterThan(0);
    all.items.forEach(conforms);
    conforms(await (await fetch(`${APP}/api/telephony/status`)).json());
  });

  it("every worker killed: the button turns to 'Calls unavailable', the page keeps working, the routes answer 503 with Retry-After; then it comes back", async () => {
    const admin = await browser.newPage();
    await admin.goto(`${APP}/admin`);
    await expect.poll(() => admin.getByTestId("monitor-status").first().textContent(), { timeout: 20_000 }).toBe("ready");

    const killed = killWorkers();
    const t0 = Date.now();
    expect(killed).toBe(2);
    // The readiness service's own answer, polled alongside: the page's time minus this is what
    // the app's hop (events route, SSE to the browser, React) adds.
    const readiness503 = until("the readiness 503", 10_000, async () =>
      (await fetch(`${READINESS}/v1/status/${NS}/calls`).catch(() => undefined))?.status === 503 ? Date.now() - t0 : undefined,
    );
    await expect.poll(() => button().textContent(), { timeout: 10_000, interval: 20 }).toBe("Calls unavailable");
    const seenAfter = Date.now() - t0;
    console.log(`every worker killed → readiness 503 after ${await readiness503} ms; the page showed "Calls unavailable" after ${seenAfter} ms`);
    expect(await button().isDisabled()).toBe(true);

    // Hold the outage: kill each worker again once the kubelet has restarted it (its next start
    // then waits out CrashLoopBackOff's 10 s).
    await until("the workers restarted", 30_000, () => (runningWorkers().length === 2 ? true : undefined));
    killWorkers();

    // The rest of the page doesn't care.
    const counter = page.getByTestId("counter-button");
    await counter.click();
    await counter.click();
    expect(await counter.textContent()).toBe("Clicked 2 times");

    // The app's API: 503 with Retry-After, never a 500.
    const status = await until("the status route's 503", 10_000, async () => {
      const r = await fetch(`${APP}/api/telephony/status`);
      return r.status === 503 ? r : undefined;
    });
    expect(Number(status.headers.get("retry-after"))).toBeGreaterThan(0);
    const body = (await status.json()) as { healthy: boolean; retryAfter: number };
    conforms(body);
    expect(body.healthy).toBe(false);
    const call = await fetch(`${APP}/api/telephony/call`, { method: "POST", headers: { "content-type": "application/json" }, body: `{"to":"+15551234567"}` });
    expect(call.status).toBe(503);
    expect(Number(call.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(((await call.json()) as { error: { code: string } }).error.code).toMatch(/^service_/);

    // The admin page during the outage: saved for people to look at.
    await expect.poll(() => admin.getByTestId("monitor-status").first().textContent(), { timeout: 10_000 }).not.toBe("ready");
    await expect.poll(() => admin.getByTestId("monitor-timeline").first().locator("line").count(), { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
    await admin.screenshot({ path: `${OUT}/health-monitor-outage.png`, fullPage: true });
    await admin.close();

    // The workers come back (after CrashLoopBackOff): so does the button.
    await expect.poll(() => button().textContent(), { timeout: 90_000, interval: 200 }).toBe("Call");
    expect(await button().isEnabled()).toBe(true);
    expect(pageErrors).toEqual([]);
  });
});
