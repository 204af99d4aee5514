import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "e2e",
    include: ["**/*.test.ts"],
    exclude: ["**/node_modules/**", "fixtures/**"],
    setupFiles: ["../vitest.setup.ts"],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    tags: [{ name: "slow", description: "end-to-end: packs, installs or runs external tools" }],
  },
});
