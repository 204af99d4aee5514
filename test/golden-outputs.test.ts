/**
 * Output bytes pinned across refactors (issue 32: the built-in engine moves out of core, one run driver —
 * behaviour unchanged, same bytes). Three runs, each hashed file by file against `golden-outputs.json`:
 *
 * - the demo (`tile-compile demo`: the generated LRGB and HDR jobs with the built-in engines),
 * - a TBQR `reconstruct` (full mode, tile weights and synthetic frames) of a generated 12-frame set,
 * - a job with Siril (siril-cli 1.0.6) for calibration, registration and stacking.
 *
 * A distributed run is pinned through these: packages/cli/src/distributed.test.ts asserts that a job and
 * a `reconstruct` through RabbitMQ give the same bytes as the local executor.
 *
 * What is compared: every FITS, PNG, CSV and JSON output (not run.json, events.jsonl, report.html or the
 * checkpoint state, which hold times). In FITS headers the masters' cache keys are left out (TCINHASH hashes
 * the raw frames' modification times, TCRECIPE the engine's package name), and the built-in engine's package name is written as
 * `<native>`: the provenance HISTORY line names the engine's package, and that name is what the move
 * changes (`@tile-compile/core` → `@tile-compile/engine-native`); everything else, pixels included, must be
 * the same bytes. The hashes depend on the kernels (native SIMD vs the TypeScript backend); the file records
 * the backend it was written with and the test says so and skips on another.
 *
 * Regenerate (only when an output is meant to change, and say why in the commit):
 * `TILE_COMPILE_WRITE_GOLDEN=1 pnpm vitest run test/golden-outputs.test.ts`.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FitsHeader, seededRandom, writeFitsImage } from "@tile-compile/core";
import { generateDemoLibrary } from "@tile-compile/cli";
import { loadRecon } from "@tile-compile/recon-native";
import { runCli } from "@tile-compile/cli";
import { catalog, knownTransform, render } from "@tile-compile/test-support/sky";

const GOLDEN = new URL("./golden-outputs.json", import.meta.url).pathname;
const write = process.env.TILE_COMPILE_WRITE_GOLDEN === "1";
const recon = loadRecon();
const backend = `${recon.kind}/${recon.simd}`;
type Golden = { backend: string; runs: Record<string, Record<string, string>> };
const golden: Golden = existsSync(GOLDEN) ? (JSON.parse(readFileSync(GOLDEN, "utf8")) as Golden) : { backend, runs: {} };
const sameKernels = write || golden.backend === backend;
if (!sameKernels)
  console.log(
    `SKIP golden outputs: recorded with ${golden.backend} kernels, this machine has ${backend} (build the native addon: pnpm build)`,
  );
const siril = spawnSync("siril-cli", ["--version"], { stdio: "ignore" }).status === 0;
if (!siril) console.log("SKIP the golden Siril job: siril-cli not installed — apt-get install siril");

const ENGINE = /@tile-compile\/(core|engine-native)@/g;

/** sha-256 of a FITS file with each HDU's header normalised (cards trimmed, HISTORY joined, the run's folder as `<root>`, the built-in engine's package named `<native>`) and its data as written. */
function fitsDigest(bytes: Buffer, root: string): string {
  const h = createHash("sha256");
  let at = 0;
  while (at < bytes.length) {
    const cards: string[] = [];
    let history = "";
    let end = false;
    let size = 1,
      bitpix = 8,
      pcount = 0,
      gcount = 1,
      naxis = 0;
    for (; !end && at < bytes.length; at += 2880) {
      for (let c = 0; c < 36; c++) {
        const card = bytes.subarray(at + 80 * c, at + 80 * c + 80).toString("latin1");
        const key = card.slice(0, 8).trim();
        if (key === "END") {
          end = true;
          break;
        }
        if (key === "HISTORY") {
          history += card.slice(8).replace(/\s+/g, "");
          continue;
        }
        const m = /^\S+\s*=\s*(-?\d+)/.exec(card);
        if (m) {
          if (key === "BITPIX") bitpix = Number(m[1]);
          else if (key === "NAXIS") naxis = Number(m[1]);
          else if (/^NAXIS\d$/.test(key) && Number(key.slice(5)) <= naxis) size *= Number(m[1]);
          else if (key === "PCOUNT") pcount = Number(m[1]);
          else if (key === "GCOUNT") gcount = Number(m[1]);
        }
        // Cache keys, not content: the raw frames' identity (names, sizes, modification times) and the recipe with the engine's package name.
        if (key === "TCINHASH" || key === "TCRECIPE") continue;
        if (key) cards.push(card.trimEnd());
      }
    }
    // Long strings continue over CONTINUE cards (the break falls anywhere in a path): joined before the run's folder is replaced.
    h.update(
      cards
        .join("\n")
        .replace(/&'\nCONTINUE {2}'/g, "")
        .replaceAll(root, "<root>")
        .replace(ENGINE, "@tile-compile/<native>@"),
    );
    h.update(history.replaceAll(root, "<root>").replace(ENGINE, "@tile-compile/<native>@"));
    const dataBytes = naxis === 0 ? 0 : (Math.abs(bitpix) / 8) * gcount * (pcount + size);
    const padded = Math.ceil(dataBytes / 2880) * 2880;
    h.update(bytes.subarray(at, at + padded));
    at += padded;
  }
  return h.digest("hex");
}

/** Every output under `dir`: relative path → digest (JSON and CSV with `root` written as `<root>`). */
function digests(dir: string, root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const p = join(e.parentPath, e.name);
    if (!e.isFile() || /^(run\.json|events\.jsonl|report\.html)$/.test(e.name) || p.includes("/.tile-compile/")) continue;
    const rel = p.slice(dir.length + 1);
    if (/\.(fits?|fts)$/i.test(e.name)) out[rel] = fitsDigest(readFileSync(p), root);
    else if (/\.(json|csv)$/i.test(e.name))
      out[rel] = createHash("sha256")
        .update(readFileSync(p, "utf8").replaceAll(root, "<root>").replace(ENGINE, "@tile-compile/<native>@"))
        .digest("hex");
    else if (/\.png$/i.test(e.name)) out[rel] = createHash("sha256").update(readFileSync(p)).digest("hex");
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

function capture() {
  const out: string[] = [],
    err: string[] = [];
  return { io: { out: (t: string) => void out.push(t), err: (t: string) => void err.push(t), interactive: false }, out, err };
}

function check(name: string, got: Record<string, string>): void {
  if (write) {
    golden.backend = backend;
    golden.runs[name] = got;
    writeFileSync(GOLDEN, `${JSON.stringify(golden, null, 1)}\n`);
    return;
  }
  const want = golden.runs[name];
  expect(want, `no golden hashes for ${name}: run with TILE_COMPILE_WRITE_GOLDEN=1`).toBeDefined();
  expect(Object.keys(got)).toEqual(Object.keys(want!));
  expect(
    Object.keys(got).filter((k) => got[k] !== want![k]),
    `${name}: outputs whose bytes changed`,
  ).toEqual([]);
}

describe.runIf(sameKernels)("output bytes pinned (golden-outputs.json)", () => {
  it("the demo: LRGB and HDR jobs with the built-in engines", { timeout: 300_000 }, async () => {
    const base = mkdtempSync(join(tmpdir(), "tc-golden-demo-"));
    const c = capture();
    expect(await runCli(["demo", join(base, "d")], { io: c.io, cwd: base }), c.err.join("\n")).toBe(0);
    const got = digests(join(base, "d"), join(base, "d"));
    expect(Object.keys(got).filter((k) => k.endsWith("_stretched.png")).length).toBeGreaterThanOrEqual(3);
    check("demo", got);
    rmSync(base, { recursive: true, force: true });
  });

  it("a TBQR reconstruct (full mode: tile weights, synthetic frames, metrics)", { timeout: 300_000 }, async () => {
    const base = mkdtempSync(join(tmpdir(), "tc-golden-tbqr-"));
    const framesDir = join(base, "frames");
    mkdirSync(framesDir);
    const W = 192,
      H = 144;
    const cat = catalog(W, H, 60, 3, 8);
    for (let k = 0; k < 12; k++) {
      const r = seededRandom(40 + k);
      const data = render(cat, W, H, knownTransform(W, H, 0, 1, 3 * r() - 1.5, 3 * r() - 1.5), 100 + k, {
        sigma: 1.2 + 0.6 * r(),
        noise: 6,
      });
      await writeFitsImage(
        join(framesDir, `light_${String(k).padStart(2, "0")}.fits`),
        { width: W, height: H, channels: 1, data },
        { header: new FitsHeader().set("EXPTIME", 60).set("FILTER", "L") },
      );
    }
    writeFileSync(
      join(base, "tile_compile.yaml"),
      "runtime:\n  threads: 1\n  memory_budget: 4MiB\nassumptions:\n  frames_min: 8\n  frames_reduced_threshold: 10\nsynthetic:\n  frames_min: 2\n  frames_max: 4\n  clustering:\n    cluster_count_range: [2, 4]\nvalidation:\n  min_fwhm_improvement_percent: -100\n  max_background_rms_increase_percent: 100\n  min_tile_weight_variance: 0\n  require_no_tile_pattern: false\n",
    );
    const c = capture();
    expect(await runCli(["reconstruct", framesDir, "--out", join(base, "out")], { io: c.io, cwd: base }), c.err.join("\n")).toBe(0);
    const got = digests(join(base, "out"), join(base, "out"));
    expect(Object.keys(got)).toEqual(expect.arrayContaining(["stacked.fit", "tile_weights.fits"]));
    check("reconstruct", got);
    rmSync(base, { recursive: true, force: true });
  });

  it.runIf(siril)("a job with Siril for calibration, registration and stacking", { timeout: 600_000 }, async () => {
    const base = mkdtempSync(join(tmpdir(), "tc-golden-siril-"));
    const { jobs } = await generateDemoLibrary(base, { width: 400, height: 300, framesPerSet: 6 });
    writeFileSync(
      join(base, "tile_compile.yaml"),
      "calibration:\n  method: siril\nregistration:\n  engine: siril\n  reference: 0\nstacking:\n  engine: siril\n  method: rejection\ncomposition:\n  palette: RGB\n",
    );
    const c = capture();
    expect(await runCli(["run", jobs[0]!], { io: c.io, cwd: base }), c.err.join("\n")).toBe(0);
    const got = digests(join(base, "M42/processed"), base);
    expect(Object.keys(got).filter((k) => k.startsWith("stack_")).length).toBe(4);
    check("siril-job", got);
    rmSync(base, { recursive: true, force: true });
  });
});
