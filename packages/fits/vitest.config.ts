import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "fits",
    include: ["src/**/*.test.ts"],
    setupFiles: ["../../vitest.setup.ts"],
    testTimeout: 60_000,
  },
});
