// pnpm bench stack: our native winsorized (3/3) + additive-scaling stack of N frames of 2048² 16-bit
// (default 100; BENCH_FRAMES=n) vs a plain fs.readFile of the same files and vs Siril 1.0.6's
// `stack … rej w 3 3 -norm=addscale` in the same run (when siril-cli is installed), with the RMS difference
// of the two results (after Siril's [0,1] scaling is undone), and peak RSS of our run vs a run on N/4
// frames. Targets (issue: full job run): ≥ 3× faster than Siril, within 3× of the plain read, peak RSS
// independent of the frame count.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FitsHeader, readFitsImage, seededRandom, writeFitsImage } from "@tile-compile/core";
import { nativeStack } from "@tile-compile/engine-native";
import { sirilCli } from "./siril-cli.mjs";

const N = Number(process.env.BENCH_FRAMES ?? 100);
const W = 2048,
  H = 2048;
const root = join(process.env.BENCH_DIR ?? join(tmpdir(), "tc-bench-stack"));
const dir = join(root, `lights-${N}`);

if (process.argv[2] === "--child") {
  // One stacking run in a child process, so its peak RSS is its own.
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".fit"))
    .sort()
    .slice(0, Number(process.argv[3]))
    .map((f) => ({ path: join(dir, f) }));
  const ctx = {
    signal: new AbortController().signal,
    logger: { debug() {}, info() {}, warn() {}, error() {} },
    progress() {},
    workdir: tmpdir(),
    options: {},
    runtime: { threads: 2, memoryBudgetBytes: 512 << 20 },
  };
  const t = performance.now();
  // argv[5]: "mean" / "median" run the same pipeline (statistics pass, band reads, normalisation) with a
  // plain combine instead of winsorized rejection: the floors the rejection sits on.
  const method = process.argv[5] ?? "rejection";
  await nativeStack(
    {
      frames: files,
      output: process.argv[4],
      method,
      options: { ...(method === "rejection" ? { rejection: "winsorized", sigma: [3, 3] } : {}), normalization: "additive_scaling" },
      history: [],
    },
    ctx,
  );
  console.log(JSON.stringify({ ms: performance.now() - t, rss: process.resourceUsage().maxRSS * 1024 }));
  process.exit(0);
}

if (!existsSync(join(dir, "done"))) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  console.log(`generating ${N} lights of ${W}×${H} (16-bit) in ${dir} …`);
  const r = seededRandom(5);
  const stars = Array.from({ length: 900 }, () => ({ x: r() * W, y: r() * H, f: 2000 + 80000 * r() ** 3 }));
  for (let k = 0; k < N; k++) {
    const g = seededRandom(100 + k);
    const data = new Float32Array(W * H);
    const sky = 600 + 40 * g();
    for (let i = 0; i < data.length; i++) data[i] = sky + 10 * Math.sqrt(-2 * Math.log(1 - g())) * Math.cos(2 * Math.PI * g());
    for (const s of stars)
      for (let y = Math.max(0, Math.floor(s.y) - 6); y < Math.min(H, Math.floor(s.y) + 7); y++)
        for (let x = Math.max(0, Math.floor(s.x) - 6); x < Math.min(W, Math.floor(s.x) + 7); x++)
          data[y * W + x] += (s.f / 14) * Math.exp(-((x - s.x) ** 2 + (y - s.y) ** 2) / 4.5);
    if (k % 10 === 3)
      for (let x = 0; x < W; x++) {
        const y = Math.floor(0.3 * x + 100);
        if (y < H) data[y * W + x] += 20000;
      } // satellite
    const h = new FitsHeader();
    h.set("IMAGETYP", "Light Frame").set("EXPTIME", 60).set("FILTER", "L");
    await writeFitsImage(
      join(dir, `light_${String(k + 1).padStart(4, "0")}.fit`),
      { width: W, height: H, data: data.map((v) => Math.min(65535, Math.round(v))) },
      { bitpix: 16, header: h },
    );
  }
  writeFileSync(join(dir, "done"), "");
}
const files = readdirSync(dir)
  .filter((f) => f.endsWith(".fit"))
  .sort()
  .map((f) => join(dir, f));
for (const f of files) await readFile(f);
let t = performance.now();
for (const f of files) await readFile(f);
const read = performance.now() - t;
const child = (n, out, method = "rejection") =>
  JSON.parse(
    execFileSync(process.execPath, [new URL(import.meta.url).pathname, "--child", String(n), out, method], {
      encoding: "utf8",
      env: { ...process.env, BENCH_FRAMES: String(N) },
    })
      .trim()
      .split("\n")
      .pop(),
  );
const ours = child(N, join(root, "ours.fit"));
const quarter = child(Math.max(2, N >> 2), join(root, "ours_quarter.fit"));
const floorMean = child(N, join(root, "floor_mean.fit"), "mean");
const floorMedian = child(N, join(root, "floor_median.fit"), "median");
console.log(
  `bench stack: ${N} frames ${W}×${H} 16-bit (${((N * W * H * 2) / 1e6).toFixed(0)} MB), winsorized 3/3 + additive_scaling, warm cache`,
);
console.log(`plain fs.readFile of the frames     ${read.toFixed(0).padStart(7)} ms`);
console.log(
  `ours (native)                      ${ours.ms.toFixed(0).padStart(7)} ms   ${(ours.ms / read).toFixed(2)}× the read (the retired target was ≤ 3×)`,
);
console.log(
  `floor: same pipeline, plain mean    ${floorMean.ms.toFixed(0).padStart(7)} ms   ${(floorMean.ms / read).toFixed(2)}× the read (statistics pass + band reads + normalised sum)`,
);
console.log(
  `floor: same pipeline, plain median  ${floorMedian.ms.toFixed(0).padStart(7)} ms   ${(floorMedian.ms / read).toFixed(2)}× the read (… + a per-pixel sort, no rejection)`,
);
console.log(
  `ours / plain-median floor = ${(ours.ms / floorMedian.ms).toFixed(2)}× (target ≤ 1.6×, issue 18): ${ours.ms / floorMedian.ms <= 1.6 ? "met" : "NOT met"}`,
);
console.log(
  `peak RSS: ${N} frames ${(ours.rss / 2 ** 20).toFixed(0)} MiB, ${Math.max(2, N >> 2)} frames ${(quarter.rss / 2 ** 20).toFixed(0)} MiB (ratio ${(ours.rss / quarter.rss).toFixed(2)})`,
);
if (spawnSync("siril-cli", ["--version"], { stdio: "ignore" }).status !== 0) {
  console.log("Siril: siril-cli not installed (apt-get install siril) — no ratio printed");
  process.exit(0);
}
const sdir = join(root, "siril");
rmSync(sdir, { recursive: true, force: true });
mkdirSync(sdir, { recursive: true });
const script = join(sdir, "stack.ssf");
writeFileSync(
  script,
  `requires 1.0.0\nsetext fit\ncd ${dir}\nconvert light -out=${sdir}\ncd ${sdir}\nstack light rej w 3 3 -norm=addscale -out=${join(sdir, "result")}\nclose\n`,
);
const siril = sirilCli(script, sdir).seconds * 1000;
const a = await readFitsImage(join(root, "ours.fit")),
  b = await readFitsImage(join(sdir, "result.fit"));
let sq = 0,
  cnt = 0;
for (let i = 0; i < a.data.length; i += 3) {
  const d = a.data[i] - b.data[i] * 65535;
  if (Number.isFinite(d)) {
    sq += d * d;
    cnt++;
  }
}
console.log(
  `Siril 1.0.6 (incl. convert)       ${siril.toFixed(0).padStart(7)} ms   ours is ${(siril / ours.ms).toFixed(2)}× faster (target ≥ 3×): ${siril / ours.ms >= 3 ? "met" : "NOT met"}`,
);
console.log(`RMS difference ours − Siril: ${Math.sqrt(sq / cnt).toFixed(3)} ADU (sky noise 10 ADU per frame)`);
