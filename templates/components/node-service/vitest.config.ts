import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "node",
    include: ["test/**/*.test.ts"],
    testTimeout: 15_000,
    hookTimeout: 20_000,
    // Each file starts its own servers (and redis-server where needed) on free ports.
    fileParallelism: true,
  },
});
