import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["**/dist/**", "**/node_modules/**", "**/*.d.ts", "test/fixtures/**", "coverage/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: "readonly",
        console: "readonly",
        Buffer: "readonly",
        URL: "readonly",
        performance: "readonly",
        DOMException: "readonly",
        AbortController: "readonly",
        AbortSignal: "readonly",
        setTimeout: "readonly",
      },
    },
    rules: {
      "@typescript-eslint/no-unsafe-function-type": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-restricted-imports": [
        "error",
        {
          paths: [
            {
              name: "tsyringe",
              importNames: ["container"],
              message: "Only packages/cli/src/container.ts may use the container (STYLE.md §8).",
            },
          ],
        },
      ],
    },
  },
  {
    // Rooms, not corridors: a function longer than this is a sequence of named phases waiting to be split.
    // A warning until the long ones (reconstructTbqr, runJobPipeline, planJob, …) are split (issue 32).
    files: ["packages/*/src/**/*.ts"],
    ignores: ["**/*.test.ts"],
    rules: { "max-lines-per-function": ["warn", { max: 120, skipBlankLines: true, skipComments: true, IIFEs: true }] },
  },
  {
    // Pixel data never leaves a package except through its public exports: no deep imports into another package.
    files: ["packages/*/src/**/*.ts"],
    ignores: ["**/*.test.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          paths: [
            {
              name: "tsyringe",
              importNames: ["container"],
              message: "Only packages/cli/src/container.ts may use the container (STYLE.md §8).",
            },
          ],
          patterns: [
            {
              group: ["@tile-compile/*/src/*", "@tile-compile/*/dist/*", "../../*/src/*"],
              message: "Import another package through its public exports.",
            },
          ],
        },
      ],
    },
  },
  { files: ["packages/cli/src/container.ts"], rules: { "no-restricted-imports": "off" } },
);
