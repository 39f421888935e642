/** A real HTTP server on loopback, for the client's tests. */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export interface TestServer {
  url: string;
  requests: string[];
  close(): Promise<void>;
}

export async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<TestServer> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    handler(req, res);
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

export function sse(res: ServerResponse): void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  res.flushHeaders();
}

export function view(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    namespace: "shop",
    name: "calls",
    status: "ready",
    healthy: true,
    timestamp: 1,
    phase: "Ready",
    readyReplicas: 2,
    replicas: 2,
    recentFailures: [],
    retryAfter: null,
    ...over,
  };
}

export const DOWN = { status: "degraded", healthy: false, phase: "Degraded", readyReplicas: 0, retryAfter: 7, message: "0/2 workers ready" };

/** Waits until `check` passes (polling), or fails with its last error. */
export async function eventually(check: () => void, ms = 3000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      check();
      return;
    } catch (e) {
      if (Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
