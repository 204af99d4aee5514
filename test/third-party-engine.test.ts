/**
 * Third-party engines from npm, for real: the fixture engine is packed with `pnpm pack`, installed with
 * npm into a fresh project next to the packed @tile-compile/* tarballs, named in that project's
 * tile_compile.yaml, listed by `tile-compile engines` and used by `tile-compile stack`.
 * Needs the packages built (`pnpm test` builds first) and the npm registry for third-party dependencies.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFitsImage } from "@tile-compile/core";
import { writeTinyFrames } from "@tile-compile/core/testing";
import { brokerAvailable, startTestBroker } from "../packages/executor-rabbitmq/src/test-support/broker.js";

const repo = new URL("..", import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), "tc-thirdparty-"));
const project = join(work, "project");
const tarballs = join(work, "tarballs");
afterAll(() => rmSync(work, { recursive: true, force: true }));

const cli = (...args: string[]) =>
  spawnSync(join(project, "node_modules", ".bin", "tile-compile"), args, { cwd: project, encoding: "utf8" });

describe("a packed third-party engine installed with npm", { tags: ["slow"] }, () => {
  beforeAll(() => {
    mkdirSync(tarballs);
    mkdirSync(project);
    for (const dir of [
      "packages/errors",
      "packages/fits",
      "packages/core",
      "packages/engine-native",
      "packages/recon-native",
      "packages/engine-siril",
      "packages/registration-wcs",
      "packages/executor-rabbitmq",
      "packages/cli",
      "test/fixtures/engine-maxstack",
    ]) {
      execFileSync("pnpm", ["pack", "--pack-destination", tarballs], { cwd: join(repo, dir), stdio: "pipe" });
    }
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "m94-project", private: true, type: "module" }));
    const files = readdirSync(tarballs).map((f) => join(tarballs, f));
    execFileSync("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error", ...files], {
      cwd: project,
      stdio: "pipe",
    });
    writeFileSync(
      join(project, "tile_compile.yaml"),
      "engines:\n  - tile-compile-engine-maxstack\nstacking:\n  engine: tile-compile-engine-maxstack\n  method: maximum\n",
    );
  }, 600_000);

  it("`tile-compile engines` lists it with its capabilities, from its manifest", () => {
    const r = cli("engines", "--json");
    expect(r.status, r.stderr).toBe(0);
    const list = JSON.parse(r.stdout).engines as { name: string; status: string; capabilities: string[]; version: string }[];
    expect(list).toContainEqual(
      expect.objectContaining({
        name: "tile-compile-engine-maxstack",
        status: "enabled",
        capabilities: ["stacking:maximum"],
        version: "1.0.0",
      }),
    );
    expect(list).toContainEqual(
      expect.objectContaining({
        name: "@tile-compile/engine-native",
        status: "built-in",
        capabilities: expect.arrayContaining(["stacking:mean", "stacking:rejection", "registration:relative", "calibration:native"]),
      }),
    );
  });

  it("a stacking stage runs through it and writes the per-pixel maximum", async () => {
    const frames = await writeTinyFrames(join(project, "frames"), 3, 16, 12, 99);
    const r = cli("stack", "frames", "--out", "out/max.fit", "--json");
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ engine: "tile-compile-engine-maxstack@1.0.0", method: "maximum", frameCount: 3 });
    const out = await readFitsImage(join(project, "out", "max.fit"));
    const inputs = await Promise.all(frames.map((f) => readFitsImage(f)));
    for (let i = 0; i < out.data.length; i++) expect(out.data[i]).toBe(Math.max(...inputs.map((x) => x.data[i]!)));
    expect(out.header.commentary("HISTORY").join("")).toMatch(
      /^tile-compile stacking:maximum tile-compile-engine-maxstack@1\.0\.0 options=[0-9a-f]{12}$/,
    );
  });

  it.runIf(brokerAvailable())(
    "its stage runs on two distributed workers (tile-compile worker --engine …) with the same bytes as locally",
    { timeout: 180_000 },
    async () => {
      await writeTinyFrames(join(project, "tall"), 3, 24, 400, 7); // 7 bands of 64 rows: 7 units
      const local = cli("stack", "tall", "--out", "out/tall-local.fit", "--json");
      expect(local.status, local.stderr).toBe(0);
      const broker = await startTestBroker();
      const workers: ChildProcess[] = [];
      try {
        for (const name of ["w1", "w2"]) {
          const w = spawn(
            join(project, "node_modules", ".bin", "tile-compile"),
            ["worker", "--broker", broker.url, "--engine", "tile-compile-engine-maxstack", "--threads", "1", "--name", name],
            { cwd: project, stdio: ["ignore", "pipe", "pipe"] },
          );
          workers.push(w);
          await new Promise<void>((res, rej) => {
            const t = setTimeout(() => rej(new Error(`worker ${name} did not get ready`)), 30_000);
            createInterface({ input: w.stdout! }).on("line", (l) => {
              if (/ready on amqp/.test(l)) {
                clearTimeout(t);
                res();
              }
            });
          });
        }
        const shared = mkdtempSync(join(tmpdir(), "tc-thirdparty-shared-"));
        writeFileSync(
          join(project, "dist.yaml"),
          `engines:\n  - tile-compile-engine-maxstack\nstacking:\n  engine: tile-compile-engine-maxstack\n  method: maximum\nruntime:\n  executor: rabbitmq\n  rabbitmq:\n    url: ${broker.url}\n    data: ${shared}\n    parallelism: 8\n`,
        );
        const dist = cli("--config", "dist.yaml", "stack", "tall", "--out", "out/tall-dist.fit", "--json");
        expect(dist.status, dist.stderr).toBe(0);
        const summary = JSON.parse(dist.stdout) as { executor: { executor: string; units: number; workers: string[] } };
        console.log(
          `third-party engine (stacking:maximum) on RabbitMQ: ${summary.executor.units} units on ${summary.executor.workers.join(", ")}; output byte-identical to the local run`,
        );
        expect(summary.executor).toMatchObject({ executor: "rabbitmq", units: 7 });
        expect(summary.executor.workers.length).toBeGreaterThanOrEqual(1);
        expect(summary.executor.workers.every((w) => w === "w1" || w === "w2")).toBe(true);
        expect(readFileSync(join(project, "out/tall-dist.fit")).equals(readFileSync(join(project, "out/tall-local.fit")))).toBe(true);
      } finally {
        for (const w of workers) w.kill("SIGTERM");
        await Promise.all(workers.map((w) => new Promise((r) => (w.exitCode !== null ? r(null) : w.once("exit", r)))));
        await broker.stop();
      }
    },
  );

  it("a method nobody provides fails before any pixel work with exit code 78 and names the providers", () => {
    const r = cli("stack", "frames", "--out", "out/x.fit", "--method", "median");
    expect(r.status).toBe(78);
    expect(r.stderr).toContain("TC_CAPABILITY_MISSING");
    expect(r.stderr).toContain("tile-compile-engine-maxstack");
  });
});
