import { defineConfig } from "vitest/config";

// The browser end-to-end test: run by scripts/web-e2e.sh, which sets up the cluster side and
// starts the app. Steps wait on real pods, so the timeouts are generous.
export default defineConfig({
  test: {
    name: "web-e2e",
    include: ["examples/nextjs-app/e2e/**/*.e2e.ts"],
    environment: "node",
    testTimeout: 240_000,
    hookTimeout: 120_000,
    fileParallelism: false,
  },
});
