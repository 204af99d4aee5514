import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "executor-rabbitmq",
    include: ["src/**/*.test.ts"],
    setupFiles: ["../../vitest.setup.ts"],
    testTimeout: 60_000,
  },
});
