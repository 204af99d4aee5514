/**
 * `registration.write_registered: false` (issue 34, item 1) through `tile-compile run`: the demo library's
 * LRGB job stacked from the calibrated frames and their transforms gives every stack's pixels byte for byte
 * as the default run (registered frames written, then stacked), writes no registered frame, and the plan
 * refuses the combinations that cannot take that path (TBQR, Siril) with the reason.
 */
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readFitsImage } from "@tile-compile/core";
import { runCli } from "./program.js";

function capture() {
  const out: string[] = [],
    err: string[] = [];
  return { io: { out: (t: string) => void out.push(t), err: (t: string) => void err.push(t), interactive: false }, out, err };
}

const fits = (dir: string) => readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => /\.fit$/.test(f));

describe("registration.write_registered: false (the fused path) in a job", () => {
  it(
    "every stack's pixels byte-identical to writing the registered frames; no registered frame written; stack --transforms the same",
    { timeout: 300_000 },
    async () => {
      const { makeLibrary } = await import("@tile-compile/test-support/library");
      const a = mkdtempSync(join(tmpdir(), "tc-fused-job-a-"));
      await makeLibrary(a, { lightsPerNight: 4 });
      const b = mkdtempSync(join(tmpdir(), "tc-fused-job-b-"));
      cpSync(a, b, { recursive: true });
      writeFileSync(join(a, "tile_compile.yaml"), "runtime:\n  memory_budget: 8MiB\n");
      writeFileSync(join(b, "tile_compile.yaml"), "runtime:\n  memory_budget: 8MiB\nregistration:\n  write_registered: false\n");
      for (const base of [a, b]) {
        const c = capture();
        expect(await runCli(["run", join(base, "jobs", "M42_LRGB.json")], { io: c.io, cwd: base }), c.err.join("\n")).toBe(0);
      }
      const out = (base: string) => join(base, "M42/processed");
      const stacks = readdirSync(out(a)).filter((f) => /^stack_.*\.fit$/.test(f));
      expect(stacks.length).toBe(4);
      for (const s of stacks) {
        const x = await readFitsImage(join(out(a), s)),
          y = await readFitsImage(join(out(b), s));
        expect([y.width, y.height, y.channels]).toEqual([x.width, x.height, x.channels]);
        expect(Buffer.from(y.data.buffer).equals(Buffer.from(x.data.buffer)), s).toBe(true);
      }
      expect(fits(join(out(a), "registered")).length).toBeGreaterThan(0);
      expect(fits(join(out(b), "registered"))).toEqual([]);
      // The run record counts every frame as stacked (the stacker saw the calibrated ones).
      const runB = JSON.parse(readFileSync(join(out(b), "run.json"), "utf8"));
      for (const g of runB.stages.pipeline.groups as { frames: { stacked: boolean }[] }[])
        expect(g.frames.every((f) => f.stacked)).toBe(true);
      // transforms.json is still written: the stack reads its matrices.
      const transforms = readdirSync(join(out(b), "registered"), { recursive: true, encoding: "utf8" }).filter((f) =>
        f.endsWith("transforms.json"),
      );
      expect(transforms.length).toBe(4);
      for (const t of transforms) {
        const r = JSON.parse(readFileSync(join(out(b), "registered", t), "utf8"));
        expect(r.frames.every((f: { matrix?: number[]; output?: string }) => f.matrix && !f.output)).toBe(true);
      }
      // `tile-compile stack CALIBRATED --transforms transforms.json` against `tile-compile stack REGISTERED`, on one
      // group of the default run, with the job's transforms.json and with `tile-compile register`'s (frames keyed
      // by file name).
      const group = readdirSync(join(out(a), "registered"))[0]!;
      const calibrated = join(out(a), "calibrated", group);
      const cli = async (args: string[]) => {
        const c = capture();
        const code = await runCli(args, { io: c.io, cwd: a });
        return { code, err: c.err.join("\n") };
      };
      const same = async (x: string, y: string) => {
        const [p, q] = [await readFitsImage(x), await readFitsImage(y)];
        return Buffer.from(q.data.buffer).equals(Buffer.from(p.data.buffer));
      };
      const jobTransforms = join(out(a), "registered", group, "transforms.json");
      let r = await cli(["stack", calibrated, "--transforms", jobTransforms, "--out", join(a, "via-transforms.fit")]);
      expect(r.code, r.err).toBe(0);
      r = await cli(["stack", join(out(a), "registered", group), "--out", join(a, "via-registered.fit")]);
      expect(r.code, r.err).toBe(0);
      expect(await same(join(a, "via-registered.fit"), join(a, "via-transforms.fit"))).toBe(true);
      const regDir = join(a, "cli-registered");
      r = await cli(["register", calibrated, "-o", regDir]);
      expect(r.code, r.err).toBe(0);
      r = await cli(["stack", calibrated, "--transforms", join(regDir, "transforms.json"), "--out", join(a, "via-cli-transforms.fit")]);
      expect(r.code, r.err).toBe(0);
      r = await cli(["stack", regDir, "--out", join(a, "via-cli-registered.fit")]);
      expect(r.code, r.err).toBe(0);
      expect(await same(join(a, "via-cli-registered.fit"), join(a, "via-cli-transforms.fit"))).toBe(true);
      // A frame the transforms do not cover is named, not stacked unregistered.
      const other = join(out(a), "calibrated", readdirSync(join(out(a), "registered"))[1]!);
      r = await cli(["stack", other, "--transforms", jobTransforms, "--out", join(a, "bad.fit")]);
      expect(r.code).not.toBe(0);
      expect(r.err).toMatch(/has no entry in .*transforms\.json|was not registered/);
      rmSync(a, { recursive: true, force: true });
      rmSync(b, { recursive: true, force: true });
    },
  );

  it(
    "stacking.drizzle in a job: every stack drizzled onto the finer grid from the calibrated frames, with its coverage map",
    { timeout: 300_000 },
    async () => {
      const { makeLibrary } = await import("@tile-compile/test-support/library");
      const base = mkdtempSync(join(tmpdir(), "tc-drizzle-job-"));
      await makeLibrary(base, { lightsPerNight: 4 });
      writeFileSync(
        join(base, "tile_compile.yaml"),
        "runtime:\n  memory_budget: 16MiB\nstacking:\n  drizzle:\n    scale: 1.5\n    pixfrac: 0.8\n",
      );
      const c = capture();
      expect(
        await runCli(["run", join(base, "jobs", "M42_LRGB.json"), "--stage", "stack"], { io: c.io, cwd: base }),
        c.err.join("\n"),
      ).toBe(0);
      const out = join(base, "M42/processed");
      const stacks = readdirSync(out).filter((f) => /^stack_.*(?<!_coverage)\.fit$/.test(f));
      expect(stacks.length).toBe(4);
      for (const s of stacks) {
        const img = await readFitsImage(join(out, s));
        const cov = await readFitsImage(join(out, s.replace(/\.fit$/, "_coverage.fit")));
        const reg = JSON.parse(readFileSync(join(out, "registered", s.replace(/^stack_|\.fit$/g, ""), "transforms.json"), "utf8"));
        const ref = await readFitsImage(reg.frames[0].input);
        expect([img.width, img.height]).toEqual([Math.round(1.5 * ref.width), Math.round(1.5 * ref.height)]);
        expect(img.header.get("DRIZSCAL")).toBe(1.5);
        expect([cov.width, cov.height]).toEqual([img.width, img.height]);
      }
      // run.json and the report: the drizzle's figures per group, every registered frame counted as stacked,
      // the coverage map previewed.
      const run = JSON.parse(readFileSync(join(out, "run.json"), "utf8"));
      const groups = run.stages.pipeline.groups as {
        frames: { stacked: boolean }[];
        stack: { drizzle: { scale: number; emptyPixels: number; fwhmPx: { oneX: number; drizzled: number }; coverage: string } };
      }[];
      expect(groups.length).toBe(4);
      for (const g of groups) {
        expect(g.frames.every((f) => f.stacked)).toBe(true);
        expect(g.stack.drizzle.scale).toBe(1.5);
        expect(g.stack.drizzle.fwhmPx.drizzled).toBeGreaterThan(0);
        expect(g.stack.drizzle.fwhmPx.oneX).toBeGreaterThan(0);
        expect(existsSync(g.stack.drizzle.coverage)).toBe(true);
      }
      const html = readFileSync(join(out, "report.html"), "utf8");
      expect(html).toMatch(/Drizzle ×<[^>]*>1\.5</);
      expect(html).toMatch(/drizzle ×1\.5 coverage\)/);
      rmSync(base, { recursive: true, force: true });
    },
  );

  it("TBQR with write_registered: false is refused before anything runs, with the reason", { timeout: 120_000 }, async () => {
    const { makeLibrary } = await import("@tile-compile/test-support/library");
    const base = mkdtempSync(join(tmpdir(), "tc-fused-job-tbqr-"));
    await makeLibrary(base, { lightsPerNight: 4 });
    writeFileSync(join(base, "tile_compile.yaml"), "registration:\n  write_registered: false\nstacking:\n  method: tbqr\n");
    const c = capture();
    const code = await runCli(["run", join(base, "jobs", "M42_LRGB.json")], { io: c.io, cwd: base });
    expect(code).toBe(78);
    expect(c.err.join("\n")).toMatch(/write_registered: false needs the built-in mean, median, rejection stacking/);
    expect(existsSync(join(base, "M42/processed/calibrated"))).toBe(false);
    rmSync(base, { recursive: true, force: true });
  });
});
