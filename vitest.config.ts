import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    projects: ["packages/*", "test"],
    globalSetup: ["./vitest.global-setup.ts"],
    clearMocks: true,
    restoreMocks: true,
  },
});
