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

const seestar = ["/work/shared/data/seestar", new URL("../../../../shared/data/seestar", import.meta.url).pathname].find((p) => existsSync(p));
if (!seestar) console.log("SKIP Seestar job tests: shared frames not found (../shared/data/seestar)");

describe.runIf(seestar)("the shared Seestar sets as jobs", () => {
  it("M 94 gives a colour stack and a preview; NGC 7023 gives two stacks (10 s, 20 s) and says why composition was skipped", { timeout: 300_000 }, async () => {
    const { cpSync, mkdirSync, writeFileSync } = await import("node:fs");
    const { decode } = await import("fast-png");
    const base = mkdtempSync(join(tmpdir(), "tc-seestar-job-"));
    mkdirSync(join(base, "calibration"), { recursive: true });
    for (const d of ["M94", "NGC7023"]) cpSync(join(seestar!, d), join(base, d), { recursive: true });
    mkdirSync(join(base, "jobs"));
    writeFileSync(join(base, "jobs/m94.json"), JSON.stringify({ name: "M94", type: "RGB", lights: { IRCUT: "M94/2025_03_27" }, output: "M94/processed" }));
    writeFileSync(join(base, "jobs/ngc7023.json"), JSON.stringify({ name: "NGC7023", type: "RGB", lights: { IRCUT: ["NGC7023/2024_07_30", "NGC7023/2025_06_30"] }, output: "NGC7023/processed" }));
    const m = capture();
    expect(await runCli(["run", join(base, "jobs/m94.json")], { io: m.io, cwd: base }), m.err.join("\n")).toBe(0);
    const stack = await readFitsImage(join(base, "M94/processed/stack_IRCUT_10s.fit"));
    expect(stack.channels).toBe(3);
    expect(stack.header.get("NCOMBINE")).toBe(16);
    const png = decode(readFileSync(join(base, "M94/processed/M94_stretched.png")));
    expect([png.width, png.height, png.channels]).toEqual([1080, 1920, 3]);
    const n = await runCli(["run", join(base, "jobs/ngc7023.json")], { io: capture().io, cwd: base });
    expect(n).toBe(0);
    const ng = capture();
    expect(await runCli(["run", join(base, "jobs/ngc7023.json")], { io: ng.io, cwd: base })).toBe(0);
    expect(existsSync(join(base, "NGC7023/processed/stack_IRCUT_10s.fit"))).toBe(true);
    expect(existsSync(join(base, "NGC7023/processed/stack_IRCUT_20s.fit"))).toBe(true);
    expect(ng.out.join("\n"), ng.out.join("\n")).toMatch(/composition skipped: HDR: IRCUT has (20 s and 10 s|10 s and 20 s) stacks .*set hdr\.blend: true/);
  });
});
