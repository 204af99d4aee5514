/**
 * Distributed runs against a real RabbitMQ node on loopback (test-support/broker.ts) with real worker
 * processes (dist/worker-main.js): output bytes identical to the local executor for 1, 2 and 4 workers,
 * for a winsorized stack and a TBQR reconstruction; a worker killed with SIGKILL mid-unit, a broker
 * restarted mid-run, a poisoned unit dead-lettered; the same stack with pixel data through an S3 store
 * (s3rver from npm on loopback) instead of a shared folder.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "amqplib";
import {
  FitsHeader,
  seededRandom,
  TileCompileError,
  writeFitsImage,
  type EngineContext,
  type Executor,
  type FrameRef,
} from "@tile-compile/core";
import { DEFAULT_TBQR, nativeStack, reconstructTbqr, stackBandTask } from "@tile-compile/engine-native";
import { createRabbitExecutor, DEAD_QUEUE, decode, UNITS_QUEUE } from "./index.js";
import { S3Store } from "./store.js";
import { brokerAvailable, startTestBroker, type TestBroker } from "./test-support/broker.js";

const WORKER = fileURLToPath(new URL("../dist/worker-main.js", import.meta.url));
/** The built-in engine's package folder: the worker runs its tasks (`--engine` takes a path). */
const NATIVE = fileURLToPath(new URL("../../engine-native", import.meta.url));
const available = brokerAvailable();
const W = 320,
  H = 240,
  C = 3,
  N = 16;
const hash = (p: string) => createHash("sha256").update(readFileSync(p)).digest("hex");
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const ctx = (executor?: Executor): EngineContext => ({
  signal: new AbortController().signal,
  logger: quiet as never,
  progress() {},
  workdir: tmpdir(),
  options: {},
  runtime: { threads: 1, memoryBudgetBytes: 4 << 20 },
  ...(executor ? { executor } : {}),
});

interface Worker {
  proc: ChildProcess;
  lines: string[];
  waitFor(re: RegExp, ms?: number): Promise<string>;
}
function startWorker(url: string, args: string[] = []): Promise<Worker> {
  const proc = spawn(process.execPath, [WORKER, "--broker", url, "--engine", NATIVE, "--log-units", "--quiet", ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  spawned.push(proc);
  const lines: string[] = [];
  const waiters: { re: RegExp; res: (l: string) => void }[] = [];
  createInterface({ input: proc.stdout! }).on("line", (l) => {
    lines.push(l);
    for (const w of [...waiters])
      if (w.re.test(l)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.res(l);
      }
  });
  const waitFor = (re: RegExp, ms = 30_000) =>
    new Promise<string>((res, rej) => {
      const hit = lines.find((l) => re.test(l));
      if (hit) return res(hit);
      const t = setTimeout(() => rej(new Error(`worker: no line matching ${re} within ${ms} ms`)), ms);
      waiters.push({
        re,
        res: (l) => {
          clearTimeout(t);
          res(l);
        },
      });
    });
  const w = { proc, lines, waitFor };
  return waitFor(/ready/).then(() => w);
}
const spawned: ChildProcess[] = [];
const running = (p: ChildProcess) => p.exitCode === null && p.signalCode === null;
const stopWorkers = async (ws: Worker[]) => {
  for (const w of ws)
    if (running(w.proc)) {
      const exited = new Promise((r) => w.proc.once("exit", r));
      w.proc.kill("SIGTERM");
      await exited;
    }
};

describe.skipIf(!available)("executor-rabbitmq on a real broker", () => {
  let broker: TestBroker;
  let dir: string;
  let frames: FrameRef[];
  const reference: Record<string, string> = {};
  const winsorized = (out: string) => ({
    frames,
    method: "rejection",
    options: { rejection: "winsorized", weighting: "noise", normalization: "additive_scaling" },
    output: out,
    history: [],
    rejectionMaps: { low: `${out}.lo.fits`, high: `${out}.hi.fits` },
  });
  let tbqrFrames: string[];
  const TBQR = { ...DEFAULT_TBQR, assumptions: { ...DEFAULT_TBQR.assumptions, framesMin: 8, framesReducedThreshold: 10 } };
  const outputs = (out: string) => [hash(out), hash(`${out}.lo.fits`), hash(`${out}.hi.fits`)].join(" ");

  beforeAll(async () => {
    broker = await startTestBroker();
    dir = mkdtempSync(join(tmpdir(), "tc-dist-"));
    frames = [];
    for (let f = 0; f < N; f++) {
      const rnd = seededRandom(500 + f);
      const d = new Float32Array(W * H * C);
      for (let i = 0; i < d.length; i++) d[i] = 800 + 11 * f + 25 * (rnd() + rnd() + rnd() - 1.5) + (rnd() < 0.002 ? 4000 * rnd() : 0);
      const path = join(dir, `light_${f}.fits`);
      await writeFitsImage(path, { width: W, height: H, channels: C, data: d });
      frames.push({ path });
    }
    const out = join(dir, "local.fits");
    await nativeStack(winsorized(out) as never, ctx());
    reference.winsorized = outputs(out);
    // A star field of 12 RGB frames with varying seeing and transparency (full mode: synthetic frames too).
    tbqrFrames = [];
    const r = seededRandom(9),
      TW = 200,
      TH = 150;
    const stars = Array.from({ length: 50 }, () => ({ x: 10 + r() * (TW - 20), y: 10 + r() * (TH - 20), f: 5000 + 30000 * r() }));
    for (let k = 0; k < 12; k++) {
      const g = seededRandom(700 + k),
        sg = 1 + 0.8 * g(),
        tr = 0.6 + 0.4 * g();
      const d = new Float32Array(TW * TH * C);
      for (let i = 0; i < d.length; i++) d[i] = 400 + 5 * Math.sqrt(-2 * Math.log(1 - g())) * Math.cos(2 * Math.PI * g());
      for (let c = 0; c < C; c++)
        for (const s of stars)
          for (let y = Math.floor(s.y) - 8; y <= Math.floor(s.y) + 8; y++)
            for (let x = Math.floor(s.x) - 8; x <= Math.floor(s.x) + 8; x++) {
              d[c * TW * TH + y * TW + x] =
                d[c * TW * TH + y * TW + x]! +
                ((tr * s.f * (c + 1)) / (2 * Math.PI * sg * sg)) * Math.exp(-((x - s.x) ** 2 + (y - s.y) ** 2) / (2 * sg * sg));
            }
      const path = join(dir, `tbqr_${k}.fits`);
      await writeFitsImage(path, { width: TW, height: TH, channels: C, data: d }, { header: new FitsHeader().set("EXPTIME", 60) });
      tbqrFrames.push(path);
    }
    const tOut = join(dir, "tbqr-local.fits");
    await reconstructTbqr(tbqrFrames, tOut, { ...TBQR, artifactsDir: join(dir, "tbqr-local") }, ctx());
    reference.tbqr = tbqrOutputs(tOut, join(dir, "tbqr-local"));
  }, 120_000);
  const tbqrOutputs = (out: string, art: string) =>
    [
      hash(out),
      hash(join(art, "tile_weights.fits")),
      hash(join(art, "synthetic", "syn_01.fits")),
      readFileSync(join(art, "frame_metrics.csv"), "utf8").replaceAll(dir, ""),
    ].join(" ");
  afterAll(async () => {
    for (const p of spawned) if (running(p)) p.kill("SIGKILL");
    await broker?.stop();
  });

  for (const k of [1, 2, 4]) {
    it(`winsorized stack with ${k} worker(s) is byte-identical to the local executor`, { timeout: 120_000 }, async () => {
      const ws = await Promise.all(Array.from({ length: k }, () => startWorker(broker.url)));
      const ex = await createRabbitExecutor({ url: broker.url, data: join(dir, "shared"), runId: `wins-${k}`, logger: quiet as never });
      try {
        const out = join(dir, `dist-${k}.fits`);
        const r = await nativeStack(winsorized(out) as never, ctx(ex));
        expect(outputs(out)).toBe(reference.winsorized);
        const s = ex.stats();
        console.log(
          `${k} worker(s): ${s.units} units, workers ${s.workers.length}, broker ${s.brokerBytes} B (largest message ${s.largestMessage} B), store ${s.storeBytes} B, redelivered ${s.redelivered}`,
        );
        expect(r.frameCount).toBe(N);
        expect(s.units).toBe(N + 16 * C); // frame statistics + at least 16 bands per channel
        expect(s.largestMessage).toBeLessThan(4096);
        expect(s.redelivered).toBe(0);
        if (k > 1) expect(s.workers.length).toBeGreaterThan(1);
      } finally {
        await ex.close();
        await stopWorkers(ws);
      }
      expect(existsSync(join(dir, "shared", `wins-${k}`))).toBe(false);
    });
  }

  for (const k of [1, 2, 4]) {
    it(
      `TBQR with ${k} worker(s) is byte-identical to the local executor (stack, weights, synthetic frames)`,
      { timeout: 120_000 },
      async () => {
        const ws = await Promise.all(Array.from({ length: k }, () => startWorker(broker.url)));
        const ex = await createRabbitExecutor({ url: broker.url, data: join(dir, "shared"), runId: `tbqr-${k}`, logger: quiet as never });
        try {
          const out = join(dir, `tbqr-${k}.fits`),
            art = join(dir, `tbqr-${k}`);
          const r = await reconstructTbqr(tbqrFrames, out, { ...TBQR, artifactsDir: art }, ctx(ex));
          expect(r.mode).toBe("full");
          expect(tbqrOutputs(out, art)).toBe(reference.tbqr);
          const s = ex.stats();
          console.log(
            `TBQR, ${k} worker(s): ${s.units} units, workers ${s.workers.length}, broker ${s.brokerBytes} B (largest message ${s.largestMessage} B), store ${s.storeBytes} B`,
          );
          // 8 seeing + 12 frame metrics + 16 bands per channel + the synthetic states.
          expect(s.units).toBeGreaterThanOrEqual(8 + 12 + 16 * C + 1);
          expect(s.largestMessage).toBeLessThan(4096);
          if (k > 1) expect(s.workers.length).toBeGreaterThan(1);
        } finally {
          await ex.close();
          await stopWorkers(ws);
        }
      },
    );
  }

  it("a worker killed with SIGKILL mid-unit: the unit is redelivered once, the output is identical", { timeout: 120_000 }, async () => {
    const slow = await startWorker(broker.url, ["--delay-ms", "3000"]);
    const ex = await createRabbitExecutor({ url: broker.url, data: join(dir, "shared"), runId: "kill9", logger: quiet as never });
    let fast: Worker | undefined;
    try {
      const out = join(dir, "kill9.fits");
      const run = nativeStack(winsorized(out) as never, ctx(ex));
      await slow.waitFor(/^start kill9 /);
      slow.proc.kill("SIGKILL");
      fast = await startWorker(broker.url);
      await run;
      expect(outputs(out)).toBe(reference.winsorized);
      const s = ex.stats();
      expect(s.redelivered).toBe(1);
      expect(slow.lines.filter((l) => l.startsWith("done")).length).toBe(0);
    } finally {
      await ex.close();
      await stopWorkers([slow, ...(fast ? [fast] : [])]);
    }
  });

  it("a broker restarted mid-run: master and workers reconnect, the output is identical", { timeout: 180_000 }, async () => {
    const ws = await Promise.all([startWorker(broker.url, ["--delay-ms", "150"]), startWorker(broker.url, ["--delay-ms", "150"])]);
    const ex = await createRabbitExecutor({ url: broker.url, data: join(dir, "shared"), runId: "restart", logger: quiet as never });
    try {
      const out = join(dir, "restart.fits");
      const run = nativeStack(winsorized(out) as never, ctx(ex));
      await ws[0]!.waitFor(/^done restart band\//);
      await broker.stop();
      await new Promise((r) => setTimeout(r, 1000));
      await broker.start();
      await run;
      expect(outputs(out)).toBe(reference.winsorized);
      const s = ex.stats();
      console.log(`broker restart: ${s.reconnects} reconnect(s), ${s.redelivered} redelivered, ${s.duplicates} duplicate result(s)`);
      expect(s.reconnects).toBeGreaterThanOrEqual(1);
    } finally {
      await ex.close();
      await stopWorkers(ws);
    }
  });

  it(
    "a poisoned unit ends in the dead-letter queue with its reason and fails the run with TC_UNIT_FAILED; nothing half-written",
    { timeout: 120_000 },
    async () => {
      const ws = [await startWorker(broker.url)];
      const ex = await createRabbitExecutor({ url: broker.url, data: join(dir, "shared"), runId: "poison", logger: quiet as never });
      // A frame cut short while the run goes (after the master's checks and the first band): the workers'
      // band reads fail on every attempt. On a copy, so the other tests keep their frames.
      const copies = frames.map((f, i) => {
        const p = join(dir, `poison_${i}.fits`);
        writeFileSync(p, readFileSync(f.path));
        return { path: p };
      });
      const out = join(dir, "poison.fits");
      let error: unknown,
        cut = false;
      const c = ctx(ex);
      c.progress = () => {
        if (!cut) {
          cut = true;
          truncateSync(copies[3]!.path, 2880 * 3);
        }
      };
      try {
        await nativeStack({ frames: copies, method: "mean", options: {}, output: out, history: [] } as never, c);
      } catch (e) {
        error = e;
      } finally {
        await ex.close();
        await stopWorkers(ws);
      }
      expect(error).toBeInstanceOf(TileCompileError);
      expect((error as TileCompileError).code).toBe("TC_UNIT_FAILED");
      expect((error as Error).message).toMatch(/poison_3\.fits/);
      expect((error as Error).message).toMatch(/after 3 attempt/);
      expect(existsSync(out)).toBe(false);
      // The dead unit is kept in tile-compile.dead with the reason.
      const conn = await connect(broker.url);
      const ch = await conn.createChannel();
      let found: { reason: string; unit: string } | undefined;
      for (let m = await ch.get(DEAD_QUEUE); m; m = await ch.get(DEAD_QUEUE)) {
        const h = m.properties.headers ?? {};
        if (h["x-tc-run"] === "poison") found = { reason: String(h["x-tc-error"]), unit: decode<{ unit: string }>(m.content).unit };
        ch.ack(m);
      }
      await conn.close();
      expect(found?.unit).toMatch(/^band\//);
      expect(found?.reason).toMatch(/poison_3\.fits/);
    },
  );

  it(
    "a cancelled run (Ctrl-C on the master): AbortError, workers skip its remaining units, nothing of it stays queued",
    { timeout: 60_000 },
    async () => {
      const ws = [await startWorker(broker.url, ["--delay-ms", "300"])];
      const ex = await createRabbitExecutor({ url: broker.url, data: join(dir, "shared"), runId: "cancel", logger: quiet as never });
      const ac = new AbortController();
      const out = join(dir, "cancel.fits");
      let error: unknown;
      try {
        const run = nativeStack(winsorized(out) as never, { ...ctx(ex), signal: ac.signal });
        await ws[0]!.waitFor(/^done cancel /);
        ac.abort(new DOMException("Cancelled by the user (SIGINT)", "AbortError"));
        await run.catch((e: unknown) => {
          error = e;
        });
        const started = () => ws[0]!.lines.filter((l) => l.startsWith("start cancel ")).length;
        const atCancel = started();
        await new Promise((r) => setTimeout(r, 2000));
        // At most the unit in the worker's hands finishes; no further unit of the run is started.
        expect(started()).toBeLessThanOrEqual(atCancel + 1);
        expect(atCancel).toBeLessThan(N + 16 * C);
      } finally {
        await ex.close();
        await stopWorkers(ws);
      }
      expect((error as Error).name).toBe("AbortError");
      expect(existsSync(out)).toBe(false);
      const conn = await connect(broker.url);
      const ch = await conn.createChannel();
      expect((await ch.checkQueue(UNITS_QUEUE)).messageCount).toBe(0);
      await conn.close();
    },
  );

  it(
    "a master killed with SIGKILL: its queues expire and the workers drop its remaining units instead of computing them",
    { timeout: 120_000 },
    async () => {
      const ws = [await startWorker(broker.url, ["--delay-ms", "600"])];
      // The packages by name (a devDependency and this package itself), as a user's script imports them.
      const req = createRequire(import.meta.url);
      const core = pathToFileURL(req.resolve("@tile-compile/engine-native")).href,
        self = pathToFileURL(req.resolve("@tile-compile/executor-rabbitmq")).href;
      const script = `import { nativeStack } from ${JSON.stringify(core)}; import { createRabbitExecutor } from ${JSON.stringify(self)};
      const ex = await createRabbitExecutor({ url: ${JSON.stringify(broker.url)}, data: ${JSON.stringify(join(dir, "shared"))}, runId: "orphan", orphanAfterSeconds: 2 });
      const q = { debug() {}, info() {}, warn() {}, error() {} };
      await nativeStack({ frames: ${JSON.stringify(frames)}, method: "mean", options: {}, output: ${JSON.stringify(join(dir, "orphan.fits"))}, history: [] }, { signal: new AbortController().signal, logger: q, progress() {}, workdir: ${JSON.stringify(dir)}, options: {}, runtime: { threads: 1, memoryBudgetBytes: 4 << 20 }, executor: ex });`;
      const master = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: "ignore" });
      spawned.push(master);
      try {
        // Killed once band units are queued: 32 of them (the window) at 0.6 s each, ≈ 19 s of work for nobody.
        await ws[0]!.waitFor(/^done orphan band\//, 40_000);
        master.kill("SIGKILL");
        const bands = () => ws[0]!.lines.filter((l) => l.startsWith("start orphan band/")).length;
        // Expiry after 2 s, the worker's next check within 5 s (+ one unit): by 14 s it has stopped starting the
        // run's units; without the check it would still be starting them (32 × 0.6 s ≈ 19 s of backlog).
        await new Promise((r) => setTimeout(r, 14_000));
        const after14 = bands();
        await new Promise((r) => setTimeout(r, 4_000));
        expect(bands()).toBe(after14);
        expect(after14).toBeLessThan(20);
        const conn = await connect(broker.url);
        const ch = await conn.createChannel();
        expect((await ch.checkQueue(UNITS_QUEUE)).messageCount).toBe(0);
        await conn.close();
      } finally {
        if (running(master)) master.kill("SIGKILL");
        await stopWorkers(ws);
      }
      expect(existsSync(join(dir, "orphan.fits"))).toBe(false);
    },
  );

  it("units of a stack need the shared plan: a unit with a wrong checksum is refused, not computed", { timeout: 60_000 }, async () => {
    const ws = [await startWorker(broker.url)];
    const ex = await createRabbitExecutor({ url: broker.url, data: join(dir, "shared"), runId: "checksum", logger: quiet as never });
    try {
      const ref = await ex.share("plan", {
        frames: frames.map((f) => ({ path: f.path })),
        width: W,
        method: "mean",
        rejection: "none",
        low: 3,
        high: 3,
        channels: [{ weights: null, norm: null }],
      });
      const forged = { ...ref, sha256: "0".repeat(64) };
      const it = ex.run([{ id: "band/0/0", task: stackBandTask as never, input: { plan: forged, c: 0, y0: 0, rows: 4 } }], {
        signal: new AbortController().signal,
      });
      await expect(
        (async () => {
          for await (const _ of it) {
            /* */
          }
        })(),
      ).rejects.toThrow(/checksum/);
    } finally {
      await ex.close();
      await stopWorkers(ws);
    }
  });

  describe("s3:// store on a loopback S3 endpoint (s3rver)", () => {
    let server: import("s3rver").default;
    let endpoint: string;
    const BUCKET = "tc-test";
    const env = { AWS_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY };
    beforeAll(async () => {
      const { default: S3rver } = await import("s3rver");
      server = new S3rver({
        port: 0,
        address: "127.0.0.1",
        directory: mkdtempSync(join(tmpdir(), "tc-s3-")),
        silent: true,
        configureBuckets: [{ name: BUCKET }],
      });
      endpoint = `http://127.0.0.1:${(await server.run()).port}`;
      // s3rver's fixed credentials; workers inherit them from the environment, as on a real machine.
      process.env.AWS_ACCESS_KEY_ID = "S3RVER";
      process.env.AWS_SECRET_ACCESS_KEY = "S3RVER";
    });
    afterAll(async () => {
      for (const [k, v] of Object.entries(env))
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      await server?.close();
    });

    it(
      "winsorized stack with 2 workers through s3:// refs is byte-identical; the run's objects are removed at close",
      { timeout: 120_000 },
      async () => {
        const ws = await Promise.all([
          startWorker(broker.url, ["--s3-endpoint", endpoint]),
          startWorker(broker.url, ["--s3-endpoint", endpoint]),
        ]);
        const ex = await createRabbitExecutor({
          url: broker.url,
          data: `s3://${BUCKET}/runs`,
          s3: { endpoint },
          runId: "s3",
          logger: quiet as never,
        });
        try {
          const out = join(dir, "s3.fits");
          await nativeStack(winsorized(out) as never, ctx(ex));
          expect(outputs(out)).toBe(reference.winsorized);
          const s = ex.stats();
          console.log(
            `s3 store: ${s.units} units, store ${s.storeBytes} B, broker ${s.brokerBytes} B (largest message ${s.largestMessage} B)`,
          );
          // The band results (≈ 30 kB of pixels each) and the plan went through the bucket, not the broker.
          expect(s.storeBytes).toBeGreaterThan(W * H * C * 4);
          expect(s.largestMessage).toBeLessThan(4096);
          expect(s.workers.length).toBe(2);
        } finally {
          await ex.close();
          await stopWorkers(ws);
        }
        const { S3Client, ListObjectsV2Command } = await import("@aws-sdk/client-s3");
        const listed = await new S3Client({ region: "us-east-1", endpoint, forcePathStyle: true }).send(
          new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "runs/s3/" }),
        );
        expect(listed.KeyCount ?? 0).toBe(0);
      },
    );

    it("an object changed after its reference was made is refused with TC_DATA_REF_INVALID", async () => {
      const store = new S3Store(`s3://${BUCKET}/check`, { endpoint });
      const ref = await store.put("r", "k", Buffer.from("the plan, as the master wrote it"));
      expect((await store.get(ref)).toString()).toBe("the plan, as the master wrote it");
      await store.put("r", "k", Buffer.from("the plan, as something else left it"));
      const err = await store.get(ref).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TileCompileError);
      expect((err as TileCompileError).code).toBe("TC_DATA_REF_INVALID");
      await store.clear("r");
    });
  });
});
