/**
 * `runtime.executor: rabbitmq` end to end through the CLI, on a private RabbitMQ node on loopback with
 * two `tile-compile worker` processes: a job (calibrate → register → stack → compose → stretch) and a
 * `reconstruct` (TBQR) give the same bytes as with the local executor; run.json counts the units and
 * names the workers.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FitsHeader, writeFitsImage } from "@tile-compile/core";
import { runCli } from "./program.js";
import { brokerAvailable, startTestBroker, type TestBroker } from "../../executor-rabbitmq/src/test-support/broker.js";

const MAIN = fileURLToPath(new URL("../dist/main.js", import.meta.url));
const available = brokerAvailable();
const hash = (p: string) => createHash("sha256").update(readFileSync(p)).digest("hex");

function capture() {
  const out: string[] = [],
    err: string[] = [];
  return { io: { out: (t: string) => void out.push(t), err: (t: string) => void err.push(t), interactive: false }, out, err };
}

interface Worker {
  proc: ChildProcess;
  out: string[];
  exited: Promise<number | null>;
}
function startWorker(url: string, name: string, extra: string[] = []): Promise<Worker> {
  const proc = spawn(process.execPath, [MAIN, "worker", "--broker", url, "--threads", "1", "--name", name, ...extra], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out: string[] = [];
  const exited = new Promise<number | null>((r) => proc.once("exit", (c) => r(c)));
  return new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`worker ${name} did not get ready: ${out.join("\n")}`)), 30_000);
    createInterface({ input: proc.stdout! }).on("line", (l) => {
      out.push(l);
      if (/ready on amqp/.test(l)) {
        clearTimeout(t);
        res({ proc, out, exited });
      }
    });
    createInterface({ input: proc.stderr! }).on("line", (l) => out.push(l));
  });
}

/**
 * Every file under `dir` (relative path → sha-256), leaving out run records, logs, reports and the
 * checkpoint state in `.tile-compile/` (its stamps hold file modification times); JSON files (which name
 * the frames by absolute path) with `root` replaced by a placeholder.
 */
function tree(dir: string, root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const p = join(e.parentPath, e.name);
    if (!e.isFile() || /^(run\.json|events\.jsonl|report\.html)$/.test(e.name) || p.includes("/.tile-compile/")) continue;
    out[p.slice(dir.length + 1)] = e.name.endsWith(".json")
      ? createHash("sha256").update(readFileSync(p, "utf8").replaceAll(root, "<root>")).digest("hex")
      : hash(p);
  }
  return out;
}

describe.skipIf(!available)("runtime.executor: rabbitmq through the CLI (real broker, tile-compile worker processes)", () => {
  let broker: TestBroker;
  const workers: Worker[] = [];
  let shared: string;
  const yaml = (extra = "") =>
    `runtime:\n  threads: 1\n  memory_budget: 4MiB\n  executor: rabbitmq\n  rabbitmq:\n    url: ${broker.url}\n    data: ${shared}\n    parallelism: 8\n${extra}`;

  beforeAll(async () => {
    broker = await startTestBroker();
    shared = mkdtempSync(join(tmpdir(), "tc-shared-"));
    // w2 runs two units at once: each in its own scratch lane (with one shared buffer per key, two band
    // units in flight overwrote each other's rows and the stacks differed from local).
    workers.push(await startWorker(broker.url, "w1"), await startWorker(broker.url, "w2", ["--concurrency", "2"]));
  }, 90_000);

  afterAll(async () => {
    for (const w of workers) if (w.proc.exitCode === null) w.proc.kill("SIGTERM");
    await Promise.all(workers.map((w) => w.exited));
    await broker?.stop();
  }, 60_000);

  it(
    "run JOB (local normalisation): every output file byte-identical to the local executor; run.json counts units and workers",
    { timeout: 300_000 },
    async () => {
      const { makeLibrary } = await import("@tile-compile/test-support/library");
      const local = mkdtempSync(join(tmpdir(), "tc-job-local-"));
      await makeLibrary(local, { lightsPerNight: 4 });
      const dist = mkdtempSync(join(tmpdir(), "tc-job-dist-"));
      cpSync(local, dist, { recursive: true });
      // Local normalisation on (its per-frame sky grids and surfaces travel as unit results and the shared plan).
      const stacking = "stacking:\n  normalization: local\n  local_normalization:\n    scale: 64\n";
      writeFileSync(join(local, "tile_compile.yaml"), `runtime:\n  threads: 1\n  memory_budget: 4MiB\n${stacking}`);
      writeFileSync(join(dist, "tile_compile.yaml"), yaml(stacking));
      const a = capture();
      expect(await runCli(["run", join(local, "jobs", "M42_LRGB.json")], { io: a.io, cwd: local }), a.err.join("\n")).toBe(0);
      const b = capture();
      expect(await runCli(["run", join(dist, "jobs", "M42_LRGB.json")], { io: b.io, cwd: dist }), b.err.join("\n")).toBe(0);
      const ta = tree(join(local, "M42/processed"), local),
        tb = tree(join(dist, "M42/processed"), dist);
      expect(Object.keys(ta).filter((k) => k.startsWith("stack_")).length).toBe(4);
      expect(Object.keys(tb).filter((k) => tb[k] !== ta[k])).toEqual([]);
      const run = JSON.parse(readFileSync(join(dist, "M42/processed/run.json"), "utf8"));
      expect(run.executor.executor).toBe("rabbitmq");
      // 20 lights calibrated (a unit each), registered (a unit each; the reference is auto: + a star-list
      // unit each), their statistics for 4 stacks, and ≥ 8 bands per stack.
      expect(run.executor.units).toBeGreaterThanOrEqual(20 + 2 * 20 + 20 + 4 * 8);
      expect(run.executor.redelivered).toBe(0);
      expect(run.executor.largestMessage).toBeLessThan(4096);
      expect(run.executor.workers.length).toBeGreaterThanOrEqual(1);
      expect(run.executor.workers.every((w: string) => w === "w1" || w === "w2")).toBe(true);
      expect(b.out.join("\n")).toMatch(/executor rabbitmq: \d+ units on \d worker\(s\)/);
      expect(JSON.parse(readFileSync(join(local, "M42/processed/run.json"), "utf8")).executor).toBeUndefined();
      rmSync(local, { recursive: true, force: true });
      rmSync(dist, { recursive: true, force: true });
    },
  );

  it(
    "reconstruct (TBQR, full mode): stacked.fit, tile weights, synthetic frames and metrics byte-identical to local",
    { timeout: 300_000 },
    async () => {
      const { catalog, render, knownTransform } = await import("@tile-compile/test-support/sky");
      const { seededRandom } = await import("@tile-compile/core");
      const base = mkdtempSync(join(tmpdir(), "tc-recon-"));
      const framesDir = join(base, "frames");
      const W = 192,
        H = 144;
      const cat = catalog(W, H, 60, 3, 8);
      for (let k = 0; k < 12; k++) {
        const r = seededRandom(40 + k);
        const data = render(cat, W, H, knownTransform(W, H, 0, 1, 3 * r() - 1.5, 3 * r() - 1.5), 100 + k, {
          sigma: 1.2 + 0.6 * r(),
          noise: 6,
        });
        const h = new FitsHeader();
        h.set("EXPTIME", 60);
        h.set("FILTER", "L");
        await writeFitsImage(
          join(framesDir, `light_${String(k).padStart(2, "0")}.fits`),
          { width: W, height: H, channels: 1, data },
          { header: h },
        );
      }
      const assumptions =
        "assumptions:\n  frames_min: 8\n  frames_reduced_threshold: 10\nsynthetic:\n  frames_min: 2\n  frames_max: 4\n  clustering:\n    cluster_count_range: [2, 4]\nvalidation:\n  min_fwhm_improvement_percent: -100\n  max_background_rms_increase_percent: 100\n  min_tile_weight_variance: 0\n  require_no_tile_pattern: false\n";
      writeFileSync(join(base, "local.yaml"), `runtime:\n  threads: 1\n  memory_budget: 4MiB\n${assumptions}`);
      writeFileSync(join(base, "dist.yaml"), `${yaml()}${assumptions}`);
      const a = capture();
      expect(
        await runCli(["--config", join(base, "local.yaml"), "reconstruct", framesDir, "--out", join(base, "local")], {
          io: a.io,
          cwd: base,
        }),
        a.err.join("\n"),
      ).toBe(0);
      const b = capture();
      expect(
        await runCli(["--config", join(base, "dist.yaml"), "reconstruct", framesDir, "--out", join(base, "dist")], { io: b.io, cwd: base }),
        b.err.join("\n"),
      ).toBe(0);
      const ta = tree(join(base, "local"), join(base, "local")),
        tb = tree(join(base, "dist"), join(base, "dist"));
      expect(Object.keys(ta)).toEqual(expect.arrayContaining(["stacked.fit", "tile_weights.fits", "frame_metrics.csv", "validation.json"]));
      expect(Object.keys(ta).filter((k) => k.startsWith("synthetic")).length).toBeGreaterThanOrEqual(2);
      expect(Object.keys(tb).filter((k) => tb[k] !== ta[k])).toEqual([]);
      const run = JSON.parse(readFileSync(join(base, "dist", "run.json"), "utf8"));
      expect(run.executor.executor).toBe("rabbitmq");
      expect(run.executor.units).toBeGreaterThanOrEqual(12 + 8);
      expect(run.executor.largestMessage).toBeLessThan(4096);
      rmSync(base, { recursive: true, force: true });
    },
  );

  it("tile-compile worker stops on SIGTERM with a summary and exit code 0", { timeout: 60_000 }, async () => {
    const w = workers[0]!;
    w.proc.kill("SIGTERM");
    expect(await w.exited).toBe(0);
    expect(w.out.join("\n")).toMatch(/worker w1 stopped: \d+ unit\(s\) run, 0 failed/);
  });
});
