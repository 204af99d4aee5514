import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { readFitsImage } from "@tile-compile/core";
import { makeLibrary } from "@tile-compile/test-support/library";
import { planJob, type JobPlan } from "@tile-compile/core";
import { runCalibrateStage } from "@tile-compile/core";
import { nativeCalibration } from "./native.js";
import type { EngineContext } from "@tile-compile/core";

const ENGINE = "@tile-compile/core@test";
let base: string;
beforeAll(async () => {
  base = mkdtempSync(join(tmpdir(), "tc-lib-"));
  await makeLibrary(base);
}, 120_000);

function testCtx(): EngineContext {
  return {
    signal: new AbortController().signal,
    logger: { debug() {}, info() {}, warn() {}, error() {} } as never,
    progress() {},
    workdir: tmpdir(),
    options: {},
    runtime: { threads: 2, memoryBudgetBytes: 64 << 20 },
  };
}
const stage = (plan: JobPlan) => runCalibrateStage(plan, { provider: nativeCalibration(ENGINE), ctx: testCtx(), engine: ENGINE });

describe("job validation and the calibration library", () => {
  it("validates the LRGB job: requirements, decisions with rejected candidates, masters to build", async () => {
    const plan = await planJob(join(base, "jobs", "M42_LRGB.json"), { engine: ENGINE });
    expect(plan.problems).toEqual([]);
    expect(plan.base).toBe(base);
    const L = plan.requirements.find((r) => r.filter === "L")!;
    expect(L).toMatchObject({ exposureSeconds: 180, count: 8, nights: ["2024_01_15", "2024_01_20"] });
    expect(L.temperatureMin!).toBeGreaterThanOrEqual(-11.5);
    expect(L.temperatureMax!).toBeLessThanOrEqual(-8.5);
    expect(plan.masters.map((m) => `${m.name}:${m.action}`).sort()).toEqual([
      "bias_2024_01_15.fit:build",
      "dark_180s_-10C_2024_01_15.fit:build",
      "dark_60s_-10C_2024_01_15.fit:build",
      "flat_B_2024_01_20.fit:build",
      "flat_G_2024_01_20.fit:build",
      "flat_L_2024_01_20.fit:build",
      "flat_R_2024_01_20.fit:build",
    ]);
    const dark = plan.decisions.find((d) => d.kind === "dark" && d.subject.startsWith("L"))!;
    expect(dark.chosen).toBe("dark_180s_-10C_2024_01_15.fit");
    expect(dark.rejected.map((r) => r.reason).join("\n")).toMatch(/exposure 300s, lights 180s/);
    expect(dark.rejected.map((r) => r.reason).join("\n")).toMatch(/temperature \d\.\d °C away/);
    const flat = plan.decisions.find((d) => d.kind === "flat" && d.subject === "filter L")!;
    expect(flat.rejected.some((r) => /filter H, lights L/.test(r.reason))).toBe(true);
    // Headers only: every light header is 2 blocks here; no pixel byte was read.
    expect(plan.headerBytesRead).toBe(plan.lights.length * 2880 * Math.round(plan.headerBytesRead / plan.lights.length / 2880));
    expect(plan.headerBytesRead / plan.lights.length).toBeLessThanOrEqual(5760);
  });

  it("builds exactly the masters needed, reuses all of them next time, rebuilds only a touched one", async () => {
    const job = join(base, "jobs", "M42_LRGB.json");
    const first = await stage(await planJob(job, { engine: ENGINE }));
    expect(first.mastersBuilt).toHaveLength(7);
    expect(readdirSync(join(base, "calibration", "masters", "darks")).sort()).toEqual([
      "dark_180s_-10C_2024_01_15.fit",
      "dark_60s_-10C_2024_01_15.fit",
    ]);
    const again = await planJob(job, { engine: ENGINE });
    expect(again.masters.every((m) => m.action === "reuse")).toBe(true);
    const rawDark = join(base, "calibration/raw/darks/2024_01_15_-10C/60/dark_2.fit");
    const t = new Date(Date.now() + 5000);
    utimesSync(rawDark, t, t);
    const third = await planJob(job, { engine: ENGINE });
    expect(third.masters.filter((m) => m.action !== "reuse").map((m) => `${m.name}:${m.action}`)).toEqual([
      "dark_60s_-10C_2024_01_15.fit:rebuild",
    ]);
    const run3 = await stage(third);
    expect(run3.mastersBuilt.map((p) => p.split("/").pop())).toEqual(["dark_60s_-10C_2024_01_15.fit"]);
    // A new engine version (recipe) makes every master stale.
    expect((await planJob(job, { engine: "@tile-compile/core@9.9.9" })).masters.every((m) => m.action === "rebuild")).toBe(true);
  }, 120_000);

  it("calibrated lights: hot pixels repaired, vignetting and dark current removed", async () => {
    const plan = await planJob(join(base, "jobs", "M42_LRGB.json"), { engine: ENGINE });
    const res = await stage(plan);
    const Lgroup = res.calibrated.find((g) => g.filter === "L")!;
    expect(Lgroup.frames).toHaveLength(8);
    const img = await readFitsImage(Lgroup.frames[0]!);
    // The sky was 200 ADU under a vignetting of up to 30 %; the master flat is normalised to mean 1, so a
    // calibrated sky is 200 × mean(vignetting) everywhere. Corner medians of 6×6 pixels (noise 4 ADU / 6 ≈
    // 0.7 ADU, dark-current shot noise not modelled) must sit within 3 ADU of that level (the raw corners
    // were ~60 ADU below the centre).
    const { model } = await import("@tile-compile/test-support/library");
    const m = model(1);
    let vm = 0;
    for (let y = 0; y < 64; y++) for (let x = 0; x < 96; x++) vm += m.vignette(x, y) / (96 * 64);
    const med = (x0: number, y0: number) => {
      const v: number[] = [];
      for (let y = y0; y < y0 + 6; y++) for (let x = x0; x < x0 + 6; x++) v.push(img.data[y * 96 + x]!);
      v.sort((a, b) => a - b);
      return (v[17]! + v[18]!) / 2;
    };
    for (const c of [med(0, 0), med(90, 0), med(0, 58), med(90, 58)]) expect(Math.abs(c - 200 * vm)).toBeLessThan(3);
    // Hot pixels (40 ADU/s × 180 s = 7200 ADU in the raw frame) are gone.
    for (const [x, y] of [
      [10, 10],
      [50, 20],
      [70, 40],
      [30, 55],
      [88, 5],
    ] as const)
      expect(img.data[y * 96 + x]!).toBeLessThan(600);
    expect(img.header.get("CALSTAT")).toBe("BDF");
    // run.json records the decisions with their rejected candidates.
    const run = JSON.parse((await import("node:fs")).readFileSync(join(base, "M42", "processed", "run.json"), "utf8"));
    expect(
      run.decisions.find((d: { kind: string; subject: string }) => d.kind === "dark" && d.subject.startsWith("L")).rejected.length,
    ).toBeGreaterThan(2);
    expect(run.kernels.backend).toMatch(/native|js/);
    expect(run.stages.calibrate.calibrated).toHaveLength(4);
  }, 120_000);

  it("the SHO job in YAML validates with filter aliases (Ha, OIII, SII)", async () => {
    const plan = await planJob(join(base, "jobs", "M42_SHO.yaml"), { engine: ENGINE });
    expect(plan.problems).toEqual([]);
    expect(plan.requirements.map((r) => `${r.filter}${r.exposureSeconds}`).sort()).toEqual(["H300", "O300", "S300"]);
    expect(plan.masters.map((m) => m.name)).toContain("flat_H_2024_01_20.fit");
  });
});

describe("bad jobs: every problem at once, with file and field, nothing written", () => {
  const cases: [string, (b: string) => unknown, RegExp][] = [
    ["unknown key", () => ({ name: "x", type: "LRGB", lights: { L: "M42/2024_01_15/L180" }, colour: 1 }), /unknown key\(s\) "colour"/],
    [
      "bad date",
      () => ({ name: "x", type: "LRGB", calibration: { bias: "2024_02_30" }, lights: { L: "M42/2024_01_15/L180" } }),
      /calibration\.bias.*not a calendar date/,
    ],
    [
      "date with dashes",
      () => ({ name: "x", type: "LRGB", calibration: { darks: "2024-01-15" }, lights: { L: "M42/2024_01_15/L180" } }),
      /calibration\.darks.*YYYY_MM_DD/,
    ],
    ["unknown type", () => ({ name: "x", type: "LRGBX", lights: { L: "M42/2024_01_15/L180" } }), /\[type\]/],
    ["no lights", () => ({ name: "x", type: "LRGB", lights: {} }), /\[lights\].*at least one filter/],
    [
      "missing folder",
      () => ({ name: "x", type: "MONO", lights: { L: "M42/2024_01_15/L999" } }),
      /\[lights\.L\].*folder M42\/2024_01_15\/L999 does not exist/,
    ],
    [
      "path escaping the base",
      () => ({ name: "x", type: "MONO", lights: { L: "../outside" } }),
      /\[lights\.L\].*outside the base directory/,
    ],
    ["absolute path elsewhere", () => ({ name: "x", type: "MONO", lights: { L: "/etc" } }), /\[lights\.L\].*outside the base directory/],
    [
      "symlink out of the base",
      (b) => {
        symlinkSync(tmpdir(), join(b, "M42", "escape"));
        return { name: "x", type: "MONO", lights: { L: "M42/escape" } };
      },
      /\[lights\.L\].*through a symbolic link/,
    ],
    [
      "filter key vs header",
      () => ({ name: "x", type: "MONO", lights: { R: "M42/2024_01_15/G60" } }),
      /\[FILTER\]: header filter "G".*job key "R"/,
    ],
    [
      "dark only at another temperature",
      () => ({
        name: "x",
        type: "MONO",
        calibration: { darks: "2024_01_15" },
        lights: { L: "M42/2024_01_15/L180" },
        options: { temp_tolerance: 0.01 },
      }),
      /\[calibration\.darks\]: no dark for L 180s.*temperature .* away, tolerance 0\.01/,
    ],
    [
      "flat of another filter",
      (b) => {
        rmSync(join(b, "calibration/raw/flats/2024_01_20/B"), { recursive: true });
        return { name: "x", type: "MONO", calibration: { flats: "2024_01_20" }, lights: { B: "M42/2024_01_15/B60" } };
      },
      /\[calibration\.flats\]: no flat for filter B dated 2024_01_20 \(only flat/,
    ],
    [
      "bias of a missing date",
      () => ({ name: "x", type: "MONO", calibration: { bias: "2023_12_01" }, lights: { L: "M42/2024_01_15/L180" } }),
      /\[calibration\.bias\]: no bias set or master dated 2023_12_01.*available: 2024_01_15/,
    ],
    [
      "frames of different sizes in one group",
      async (b) => {
        const { writeFitsImage } = await import("@tile-compile/core");
        const { FitsHeader } = await import("@tile-compile/core");
        const h = new FitsHeader();
        h.set("IMAGETYP", "Light Frame").set("EXPTIME", 180).set("FILTER", "L").set("CCD-TEMP", -10);
        await writeFitsImage(
          join(b, "M42/2024_01_15/L180/odd.fit"),
          { width: 50, height: 40, data: new Float32Array(2000) },
          { header: h },
        );
        return { name: "x", type: "MONO", lights: { L: "M42/2024_01_15/L180" } };
      },
      /odd\.fit \[NAXIS1\/NAXIS2\]: is 50×40 but/,
    ],
    [
      "missing temperature",
      async (b) => {
        const { writeFitsImage } = await import("@tile-compile/core");
        const { FitsHeader } = await import("@tile-compile/core");
        const h = new FitsHeader();
        h.set("IMAGETYP", "Light Frame").set("EXPTIME", 180).set("FILTER", "L");
        await writeFitsImage(
          join(b, "M42/2024_01_15/L180/notemp.fit"),
          { width: 96, height: 64, data: new Float32Array(96 * 64) },
          { header: h },
        );
        return { name: "x", type: "MONO", calibration: { darks: "2024_01_15" }, lights: { L: "M42/2024_01_15/L180" } };
      },
      /notemp\.fit \[CCD-TEMP\]: has no sensor temperature/,
    ],
    [
      "empty folder",
      (b) => {
        mkdirSync(join(b, "M42/empty"), { recursive: true });
        return { name: "x", type: "MONO", lights: { L: "M42/empty" } };
      },
      /\[lights\.L\]: folder M42\/empty holds no FITS files/,
    ],
    [
      "non-FITS file among lights",
      (b) => {
        writeFileSync(join(b, "M42/2024_01_15/L180/notes.txt"), "seeing was bad");
        return { name: "x", type: "MONO", lights: { L: "M42/2024_01_15/L180" } };
      },
      /notes\.txt \[lights\.L\]: is not a FITS file/,
    ],
    [
      "damaged FITS among lights",
      (b) => {
        writeFileSync(join(b, "M42/2024_01_15/L180/broken.fit"), "SIMPLE  =                    T");
        return { name: "x", type: "MONO", lights: { L: "M42/2024_01_15/L180" } };
      },
      /broken\.fit: /,
    ],
    ["not JSON", () => "{ name: x", /cannot be parsed/],
  ];

  it.each(cases)(
    "%s",
    async (_name, make, expected) => {
      const b = mkdtempSync(join(tmpdir(), "tc-badjob-"));
      cpSync(base, b, { recursive: true, verbatimSymlinks: true });
      rmSync(join(b, "calibration", "masters"), { recursive: true, force: true });
      rmSync(join(b, "M42", "processed"), { recursive: true, force: true });
      const content = await make(b);
      const file = join(b, "jobs", "bad.json");
      writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content));
      const plan = await planJob(file, { engine: ENGINE });
      const text = plan.problems.map((p) => `${p.file}${p.field ? ` [${p.field}]` : ""}: ${p.message}`).join("\n");
      expect(text).toMatch(expected);
      for (const p of plan.problems) expect(p.file.length).toBeGreaterThan(0);
      await expect(stage(plan)).rejects.toMatchObject({ code: "TC_JOB_INVALID" });
      expect(existsSync(join(b, "calibration", "masters"))).toBe(false);
      expect(existsSync(join(b, "M42", "processed"))).toBe(false);
    },
    60_000,
  );

  it("reports all problems of a job at once", async () => {
    const b = mkdtempSync(join(tmpdir(), "tc-badjob-"));
    cpSync(base, b, { recursive: true });
    const file = join(b, "jobs", "many.json");
    writeFileSync(
      file,
      JSON.stringify({
        name: "x",
        type: "LRGB",
        calibration: { bias: "2023_12_01", flats: "2024_01_20" },
        lights: { L: "M42/nowhere", R: "../x", G: "M42/2024_01_15/B60" },
      }),
    );
    const plan = await planJob(file, { engine: ENGINE });
    expect(plan.problems.length).toBeGreaterThanOrEqual(4);
  });
});

describe("masters under concurrency", () => {
  it("two runs building the same master at once leave one complete, correct master", async () => {
    const plan = await planJob(join(base, "jobs", "M42_LRGB.json"), { engine: "@tile-compile/core@concurrency" });
    const bias = plan.masters.find((m) => m.kind === "bias")!;
    const { buildMaster } = await import("@tile-compile/core");
    await Promise.all([0, 1].map(() => buildMaster(bias, { engine: "@tile-compile/core@concurrency", memoryBudgetBytes: 1 << 20 })));
    const img = await readFitsImage(bias.path);
    expect(img.header.get("NCOMBINE")).toBe(6);
    expect(Math.abs(img.data[500]! - (1000 + 3 * Math.sin((500 % 96) / 5)))).toBeLessThan(6);
    expect(readdirSync(join(base, "calibration", "masters", "biases")).filter((f) => f.includes(".tmp"))).toEqual([]);
  }, 60_000);
});

describe("validate reads headers only", () => {
  it("500 lights: exactly the header bytes are read", async () => {
    const b = mkdtempSync(join(tmpdir(), "tc-500-"));
    const { writeFitsImage } = await import("@tile-compile/core");
    const { FitsHeader } = await import("@tile-compile/core");
    mkdirSync(join(b, "calibration"), { recursive: true });
    mkdirSync(join(b, "T/2024_01_15/L60"), { recursive: true });
    const data = new Float32Array(256 * 256);
    for (let i = 0; i < 500; i++) {
      const h = new FitsHeader();
      h.set("IMAGETYP", "Light Frame").set("EXPTIME", 60).set("FILTER", "L").set("CCD-TEMP", -10);
      await writeFitsImage(
        join(b, `T/2024_01_15/L60/l_${String(i).padStart(3, "0")}.fit`),
        { width: 256, height: 256, data },
        { bitpix: 16, header: h },
      );
    }
    writeFileSync(join(b, "job.json"), JSON.stringify({ name: "t", type: "MONO", lights: { L: "T/2024_01_15/L60" } }));
    const plan = await planJob(join(b, "job.json"));
    expect(plan.problems).toEqual([]);
    expect(plan.lights).toHaveLength(500);
    const size = statSync(join(b, "T/2024_01_15/L60/l_000.fit")).size;
    expect(size).toBeGreaterThan(100_000);
    expect(plan.headerBytesRead).toBe(500 * 2880);
  }, 120_000);
});
