import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError } from "../errors/index.js";
import { loadConfig, validateConfig } from "./load.js";
import { configJsonSchema, parseByteSize } from "./schema.js";
import { configReferenceMarkdown } from "./reference.js";

const dir = mkdtempSync(join(tmpdir(), "tc-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("tile_compile.yaml", () => {
  it("is found by cosmiconfig from a subfolder of the project, and defaults fill the rest", async () => {
    const project = join(dir, "project");
    mkdirSync(join(project, "nights", "a"), { recursive: true });
    writeFileSync(join(project, "package.json"), "{}");
    writeFileSync(join(project, "tile_compile.yaml"), "stacking:\n  method: average\nruntime:\n  memory_budget: 512MiB\n  threads: 2\n");
    const loaded = await loadConfig({ cwd: join(project, "nights", "a") });
    expect(loaded.file).toBe(join(project, "tile_compile.yaml"));
    expect(loaded.config.stacking.method).toBe("mean");
    expect(loaded.config.registration.engine).toBe("relative");
    expect(loaded.config.registration.registered_filename_pattern).toBe("reg_{index:05d}.fit");
    expect(loaded.runtime).toEqual({ threads: 2, memoryBudgetBytes: 512 * 1024 * 1024 });
  });

  it("lists every bad field with its path at once", async () => {
    const file = join(dir, "bad.yaml");
    writeFileSync(
      file,
      [
        "engines: [siril, 3]",
        "stacking:",
        "  method: mean",
        "  sigma: [3]",
        "  rejection: fancy",
        "  colour: red",
        "runtime:",
        "  threads: 0",
        "  memory_budget: lots",
        "registraton: {}",
      ].join("\n"),
    );
    const err = await loadConfig({ cwd: dir, file }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    const issues = (err as ConfigError).details.issues as string[];
    const paths = issues.map((i) => i.split(":")[0]).sort();
    expect(paths).toEqual(
      ["engines.1", "registraton", "runtime.memory_budget", "runtime.threads", "stacking.colour", "stacking.sigma"].sort(),
    );
    // `stacking.rejection: fancy` is the engine's to refuse (its options schema, when the stage is planned:
    // cli.test.ts), since an engine may offer rejection methods of its own.
    expect(issues).toContain("registraton: unknown key");
    expect((err as ConfigError).exitCode).toBe(78);
    expect((err as ConfigError).message).toContain(file);
  });

  it("reports YAML syntax errors with the file named", async () => {
    const file = join(dir, "syntax.yaml");
    writeFileSync(file, "stacking: [unclosed\n");
    await expect(loadConfig({ cwd: dir, file })).rejects.toMatchObject({ code: "TC_CONFIG_INVALID", details: { file } });
  });

  it("a missing --config file is TC_CONFIG_NOT_FOUND", async () => {
    await expect(loadConfig({ cwd: dir, file: "nope.yaml" })).rejects.toMatchObject({ code: "TC_CONFIG_NOT_FOUND" });
  });

  it("merges $import presets under the file, the file winning", async () => {
    writeFileSync(join(dir, "site.yaml"), "runtime:\n  threads: 7\n  memory_budget: 1GiB\nstacking:\n  method: median\n");
    writeFileSync(join(dir, "with-import.yaml"), "$import: site.yaml\nruntime:\n  threads: 3\n");
    const loaded = await loadConfig({ cwd: dir, file: "with-import.yaml" });
    expect(loaded.runtime).toEqual({ threads: 3, memoryBudgetBytes: 1024 ** 3 });
    expect(loaded.config.stacking.method).toBe("median");
  });

  it("rejects duplicate engines as a cross-field rule", () => {
    expect(() => validateConfig({ engines: ["siril", "siril"] })).toThrow(/siril listed more than once/);
  });

  it("synthetic.*: frames_max ≥ frames_min and an ordered cluster_count_range, with the path named", () => {
    expect(() => validateConfig({ synthetic: { frames_min: 20, frames_max: 10 } })).toThrow(
      /synthetic\.frames_max.*must be ≥ synthetic\.frames_min/,
    );
    expect(() => validateConfig({ synthetic: { clustering: { cluster_count_range: [30, 5] } } })).toThrow(
      /synthetic\.clustering\.cluster_count_range/,
    );
    expect(validateConfig({}).config.synthetic).toEqual({ frames_min: 15, frames_max: 30, clustering: { cluster_count_range: [5, 30] } });
  });

  it("parses byte sizes", () => {
    expect(parseByteSize("4GiB")).toBe(4 * 1024 ** 3);
    expect(parseByteSize("2 GB")).toBe(2e9);
    expect(parseByteSize(1234)).toBe(1234);
  });

  it("ships a JSON Schema generated from the zod schema (run `pnpm schema` after changing it)", () => {
    const shipped = JSON.parse(readFileSync(new URL("../../schema.json", import.meta.url), "utf8"));
    expect(shipped).toEqual(configJsonSchema());
    expect(shipped.additionalProperties).toBe(false);
    // …and the reference page generated from it.
    expect(readFileSync(new URL("../../../../docs/configuration.md", import.meta.url), "utf8")).toBe(configReferenceMarkdown());
  });
});
