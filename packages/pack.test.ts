/**
 * What a user installs: `npm pack` of each package, installed with its dependencies in a fresh
 * directory, imported from plain Node ESM and type-checked by a strict TypeScript project.
 * (Needs `npm run build` first; scripts/test.sh does it.)
 */
import { execFileSync } from "node:child_process";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

import { afterAll, describe, expect, it } from "vitest";

const root = new URL("..", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "dialtone-pack-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = (cmd: string, args: string[], cwd = dir) => execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

describe("npm pack", () => {
  it("each tarball holds the built code and types, and installs and works in a fresh project", () => {
    const packed = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", dir, "-w", "@dialtone/client", "-w", "@dialtone/react"], root)) as {
      filename: string;
      files: { path: string }[];
    }[];
    const files = Object.fromEntries(packed.map((p) => [p.filename, p.files.map((f) => f.path)]));
    expect(files["dialtone-client-0.1.0.tgz"]).toEqual(expect.arrayContaining(["dist/index.js", "dist/index.d.ts", "dist/routes.js", "src/status.schema.json", "package.json"]));
    expect(files["dialtone-react-0.1.0.tgz"]).toEqual(expect.arrayContaining(["dist/index.js", "dist/index.d.ts"]));
    expect(Object.values(files).flat().filter((f) => /test|\.tsbuildinfo/.test(f))).toEqual([]);

    const app = join(dir, "app");
    run("mkdir", ["-p", app]);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "fresh-app", private: true, type: "module" }));
    run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error",
      "../dialtone-client-0.1.0.tgz", "../dialtone-react-0.1.0.tgz",
      "react@19.3.1", "react-dom@19.3.1", "typescript@5.9.3", "@types/react@19.3.0", "@types/react-dom@19.3.0"], app);

    // Plain Node ESM: the client, the route helpers, and the React bindings rendered on the server.
    writeFileSync(join(app, "smoke.mjs"), `
      import { createTelephonyClient, TelephonyUnavailable } from "@dialtone/client";
      import { statusRoute } from "@dialtone/client/routes";
      import { TelephonyProvider, useTelephony } from "@dialtone/react";
      import { createElement as h } from "react";
      import { renderToString } from "react-dom/server";
      const client = createTelephonyClient({ readinessUrl: "http://127.0.0.1:9", namespace: "shop", service: "calls", timeoutMs: 200 });
      const res = await statusRoute(client)(new Request("http://app/"));
      function Button() { const t = useTelephony(); return h("button", { disabled: !t.available }, t.available ? "Call" : "Calls unavailable"); }
      console.log(JSON.stringify({
        status: res.status, retryAfter: res.headers.get("retry-after"),
        error: new TelephonyUnavailable("x").name,
        html: renderToString(h(TelephonyProvider, null, h(Button))),
      }));
    `);
    expect(JSON.parse(run("node", ["smoke.mjs"], app))).toEqual({
      status: 503,
      retryAfter: "5",
      error: "TelephonyUnavailable",
      html: '<button disabled="">Calls unavailable</button>',
    });

    // The declarations, as a strict TypeScript project sees them.
    writeFileSync(join(app, "tsconfig.json"), JSON.stringify({
      compilerOptions: { strict: true, noEmit: true, module: "NodeNext", moduleResolution: "NodeNext", target: "ES2022", jsx: "react-jsx", lib: ["ES2022", "DOM"], skipLibCheck: false },
      include: ["*.tsx"],
    }));
    writeFileSync(join(app, "page.tsx"), `
      import { createTelephonyClient, type StatusView, type TelephonyState } from "@dialtone/client";
      import { withTelephony, readJson, field } from "@dialtone/client/routes";
      import { TelephonyErrorBoundary, TelephonyHealthMonitor, TelephonyProvider, useTelephony } from "@dialtone/react";
      const client = createTelephonyClient({ readinessUrl: "http://r", namespace: "n", service: "s" });
      export const POST = withTelephony(async (req: Request) => Response.json(await client.dial({ to: field(await readJson(req), "to"), from: "+15550001111" })));
      const word: StatusView["status"] = "ready";
      const off: () => void = client.subscribe((s: TelephonyState) => { const n: number | null = s.retryAfter; void n; });
      function Panel() { const t = useTelephony(); return <button onClick={() => void t.call("+15551234567")}>{t.available ? "Call" : t.message}</button>; }
      export const Page = () => <TelephonyProvider><TelephonyErrorBoundary fallback={({ error }) => <p>{error.message}</p>}><Panel /></TelephonyErrorBoundary><TelephonyHealthMonitor /></TelephonyProvider>;
      void word; void off;
    `);
    run(join(app, "node_modules/.bin/tsc"), ["-p", "."], app);
    expect(readdirSync(join(app, "node_modules/@dialtone")).sort()).toEqual(["client", "react"]);
  }, 180_000);

  it("the README's app section, pasted into a fresh Next.js app, builds and answers 503 with Retry-After, not 500", async () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("## Use it from your app"), readme.indexOf("## The worker"));
    const blocks = [...section.matchAll(/```tsx?\n\/\/ file: (\S+)\n([\s\S]*?)```/g)].map((m) => ({ path: m[1]!, code: m[2]! }));
    expect(blocks.map((b) => b.path).sort()).toEqual([
      "app/admin/page.tsx",
      "app/api/telephony/admin/events/route.ts",
      "app/api/telephony/call/route.ts",
      "app/api/telephony/credential/route.ts",
      "app/api/telephony/events/route.ts",
      "app/api/telephony/status/route.ts",
      "app/phone.tsx",
      "lib/telephony.ts",
    ]);
    const app = join(dir, "next-app");
    // What create-next-app gives (trimmed): a layout, a page, the "@/*" path alias.
    const files: Record<string, string> = {
      "package.json": JSON.stringify({ name: "fresh-next-app", private: true }),
      "tsconfig.json": JSON.stringify({
        compilerOptions: { target: "ES2017", lib: ["dom", "dom.iterable", "esnext"], strict: true, noEmit: true, module: "esnext", moduleResolution: "bundler", jsx: "react-jsx", esModuleInterop: true, skipLibCheck: true, isolatedModules: true, resolveJsonModule: true, incremental: true, plugins: [{ name: "next" }], paths: { "@/*": ["./*"] } },
        include: ["next-env.d.ts", "**/*.ts", "**/*.tsx", ".next/types/**/*.ts"],
        exclude: ["node_modules"],
      }),
      "app/layout.tsx": `export default function RootLayout({ children }: { children: React.ReactNode }) { return <html lang="en"><body>{children}</body></html>; }\n`,
      "app/page.tsx": `import { Phone } from "./phone";\nexport default function Home() { return <main><h1>My app</h1><Phone /></main>; }\n`,
    };
    for (const b of blocks) files[b.path] = b.code;
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(app, path)), { recursive: true });
      writeFileSync(join(app, path), text);
    }
    run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error",
      "../dialtone-client-0.1.0.tgz", "../dialtone-react-0.1.0.tgz", "next@16.4.6", "react@19.3.1", "react-dom@19.3.1",
      "typescript@5.9.3", "@types/react@19.3.0", "@types/node@20.19.43"], app);
    const env = { ...process.env, NEXT_TELEMETRY_DISABLED: "1", DIALTONE_READINESS_URL: "http://127.0.0.1:9" };
    execFileSync(join(app, "node_modules/.bin/next"), ["build"], { cwd: app, env, stdio: "pipe" });

    const port = 23100 + Math.floor(Math.random() * 800);
    const server = spawn(join(app, "node_modules/.bin/next"), ["start", "-H", "127.0.0.1", "-p", String(port)], { cwd: app, env, stdio: "ignore", detached: true });
    try {
      let res: Response | undefined;
      for (let i = 0; i < 100 && !res; i++) {
        res = await fetch(`http://127.0.0.1:${port}/api/telephony/status`).catch(() => undefined);
        if (!res) await new Promise((r) => setTimeout(r, 200));
      }
      expect(res?.status).toBe(503); // no readiness service at 127.0.0.1:9: unavailable, said clearly
      expect(res?.headers.get("retry-after")).toBe("5");
      const call = await fetch(`http://127.0.0.1:${port}/api/telephony/call`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
      expect(call.status).toBe(400);
      expect(((await call.json()) as { error: { field: string } }).error.field).toBe("to");
      const page = await (await fetch(`http://127.0.0.1:${port}/`)).text();
      expect(page).toContain("Calls unavailable"); // server-rendered before the stream connects
    } finally {
      process.kill(-server.pid!, "SIGTERM");
    }
  }, 240_000);
});
