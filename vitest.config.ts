import { defineConfig } from "vitest/config";

// Unit tests of the packages (no cluster needed). The browser e2e against the real cluster has
// its own config: examples/nextjs-app/e2e/vitest.config.ts.
export default defineConfig({
  test: {
    projects: [
      { test: { name: "client", include: ["packages/client/test/**/*.test.ts"], environment: "node" } },
      { test: { name: "react", include: ["packages/react/test/**/*.test.tsx"], environment: "jsdom" } },
      // npm pack + install in a fresh dir (needs `npm run build` and the npm registry or its cache).
      { test: { name: "pack", include: ["packages/pack.test.ts"], environment: "node" } },
    ],
  },
});
