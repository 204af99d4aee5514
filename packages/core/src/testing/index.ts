/**
 * @tile-compile/core/testing — the conformance kit for engines. In an engine's test file:
 *
 * ```ts
 * import { runEngineConformance } from "@tile-compile/core/testing";
 * import engine from "../src/index.js";
 * runEngineConformance(() => engine);
 * ```
 *
 * Requires vitest (an optional peer dependency of @tile-compile/core).
 */
import { describe, expect, it } from "vitest";
import { tmpdir } from "node:os";
import { checkEngineConformance } from "./conformance.js";
import type { EngineContext, RuntimeLimits } from "../kernel/contracts.js";

export { checkEngineConformance, seededRandom, writeTinyFrames, type ConformanceCheck } from "./conformance.js";

/**
 * An EngineContext for calling a provider directly in a test: a fresh abort signal, a silent logger, no
 * progress, the OS temp folder, no engine options, 2 threads and 64 MiB unless `runtime` says otherwise.
 */
export function testEngineContext(runtime: Partial<RuntimeLimits> = {}): EngineContext {
  return {
    signal: new AbortController().signal,
    logger: { debug() {}, info() {}, warn() {}, error() {} },
    progress() {},
    workdir: tmpdir(),
    options: {},
    runtime: { threads: 2, memoryBudgetBytes: 1 << 26, ...runtime },
  };
}

/** Register vitest tests that check an engine against the contract. */
export function runEngineConformance(factory: () => unknown | Promise<unknown>, name = "engine"): void {
  describe(`engine conformance: ${name}`, () => {
    let results: Awaited<ReturnType<typeof checkEngineConformance>> | undefined;
    const get = async () => (results ??= await checkEngineConformance(factory));
    for (const check of ["meta", "capability map", "abort behaviour", "output shapes"]) {
      it(check, async () => {
        const found = (await get()).find((c) => c.name === check);
        // Skipped checks (after a contract failure) count as failures of the contract check itself.
        expect(found?.problems ?? ["not run: the meta or capability checks failed first"]).toEqual([]);
      });
    }
  });
}
