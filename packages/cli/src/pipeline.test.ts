import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readFitsImage } from "@tile-compile/core";
import { runCli } from "./program.js";

function capture() {
  const out: string[] = [], err: string[] = [];
  return { io: { out: (t: string) => void out.push(t), err: (t: string) => void err.push(t), interactive: false }, out, err };
}

describe("tile-compile run JOB (full pipeline)", () => {
  it("LRGB on the generated library: stacks, composition, stretch, previews; a second run reuses every step", { timeout: 240_000 }, async () => {
    const { makeLibrary } = await import("../../core/src/test-support/library.js");
    const base = mkdtempSync(join(tmpdir(), "tc-pipe-"));
    await makeLibrary(base, { lightsPerNight: 5 });
    const job = join(base, "jobs", "M42_LRGB.json");
    const c = capture();
    const code = await runCli(["run", job], { io: c.io, cwd: base });
    expect(code, c.err.join("\n")).toBe(0);
    const text = c.out.join("\n");
    for (const f of ["stack_L_180s.fit", "stack_R_60s.fit", "stack_G_60s.fit", "stack_B_60s.fit", "M42_Jan2024_linear.fits".replace("M42_Jan2024", "M42_LRGB")]) expect(existsSync(join(base, "M42/processed", f)), f).toBe(true);
    expect(text).toMatch(/composed → M42\/processed\/M42_LRGB_linear\.fits/);
    expect(existsSync(join(base, "M42/processed/M42_LRGB_stretched.fits"))).toBe(true);
    expect(existsSync(join(base, "M42/processed/M42_LRGB_stretched.png"))).toBe(true);
    const composed = await readFitsImage(join(base, "M42/processed/M42_LRGB_linear.fits"));
    expect(composed.channels).toBe(3);
    const run = JSON.parse(readFileSync(join(base, "M42/processed/run.json"), "utf8"));
    expect(run.stages.pipeline.stacks).toHaveLength(4);
    const again = capture();
    expect(await runCli(["run", job], { io: again.io, cwd: base })).toBe(0);
    expect(again.out.join("\n")).toMatch(/steps run: 0, reused from an earlier run: \d+/);
  });
});
