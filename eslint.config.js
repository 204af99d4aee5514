import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["**/dist/**", "**/node_modules/**", "**/*.d.ts", "test/fixtures/**", "coverage/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: "readonly", console: "readonly", Buffer: "readonly", URL: "readonly", performance: "readonly", DOMException: "readonly", AbortController: "readonly", AbortSignal: "readonly", setTimeout: "readonly" } },
    rules: {
      "@typescript-eslint/no-unsafe-function-type": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-restricted-imports": ["error", { paths: [{ name: "tsyringe", importNames: ["container"], message: "Only packages/cli/src/container.ts may use the container (STYLE.md §8)." }] }],
    },
  },
  { files: ["packages/cli/src/container.ts"], rules: { "no-restricted-imports": "off" } },
);
