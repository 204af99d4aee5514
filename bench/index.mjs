// pnpm bench <name>: benchmarks that print ratios against a reference run in the same process.
//   tbqr — TBQR vs a plain mean stack, and peak RSS for N vs N/4 frames (see tbqr.mjs).
//   stack — 100 × 2048² winsorized + additive_scaling vs a plain read and Siril (see stack.mjs).
//   calibrate — master dark from 50 × 2048² 16-bit frames vs a plain read (see calibrate.mjs).
//   register — relative registration of synthetic 2048² frames vs Siril's register (see register.mjs).
//   distributed — TBQR through RabbitMQ with 2 local workers vs the local executor (see distributed.mjs).
//   native — recon-native kernels: native vs TypeScript backend, and throughput vs a plain sum (see native.mjs).
//   fits — the 16 M 94 frames: header scan vs a plain read of the header bytes; full decode to
//          Float32Array vs a plain fs.readFile of the same files. Target: decode within 2× of the read.
import { readdirSync, existsSync } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { join } from "node:path";
import { readFitsHeader, readFitsImage } from "@tile-compile/core";

const which = process.argv[2] ?? "fits";
if (["native", "register", "calibrate", "stack", "tbqr", "distributed"].includes(which)) {
  await import(`./${which}.mjs`);
  process.exit(0);
}
const dataRoot = [process.env.TILE_COMPILE_DATA, new URL("../../shared/data", import.meta.url).pathname, "/work/shared/data"].find(
  (p) => p && existsSync(join(p, "seestar")),
);
if (!dataRoot) {
  console.error("bench fits needs the shared Seestar frames: set TILE_COMPILE_DATA to the folder holding seestar/");
  process.exit(1);
}

async function best(fn, runs = 7) {
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return { best: times[0], median: times[Math.floor(times.length / 2)] };
}

if (which === "fits") {
  const dir = join(dataRoot, "seestar", "M94", "2025_03_27");
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".fit"))
    .sort()
    .map((f) => join(dir, f));
  const headerBytes = (await readFitsHeader(files[0])).bytesRead;
  // Warm the page cache so both sides read from memory.
  for (const f of files) await readFile(f);
  const plainHeader = await best(async () => {
    for (const f of files) {
      const fh = await open(f, "r");
      await fh.read(Buffer.alloc(headerBytes), 0, headerBytes, 0);
      await fh.close();
    }
  });
  const scan = await best(async () => {
    for (const f of files) await readFitsHeader(f);
  });
  const plainRead = await best(async () => {
    for (const f of files) await readFile(f);
  });
  const decode = await best(async () => {
    for (const f of files) await readFitsImage(f);
  });
  const mb = (files.length * 1080 * 1920 * 2) / 1e6;
  const row = (name, t, ref) =>
    console.log(
      `${name.padEnd(44)} best ${t.best.toFixed(1).padStart(7)} ms  median ${t.median.toFixed(1).padStart(7)} ms  ratio ${(t.best / ref.best).toFixed(2)}×`,
    );
  console.log(`bench fits: ${files.length} Seestar frames (1080×1920, BITPIX 16, ${mb.toFixed(1)} MB of pixels), best of 7, warm cache`);
  row(`plain read of the header bytes (${headerBytes} B/file)`, plainHeader, plainHeader);
  row("readFitsHeader (parse + checks)", scan, plainHeader);
  row("plain fs.readFile of the files", plainRead, plainRead);
  row("readFitsImage → Float32Array (physical)", decode, plainRead);
  const ratio = decode.best / plainRead.best;
  console.log(`decode / plain read = ${ratio.toFixed(2)}× (target ≤ 2×): ${ratio <= 2 ? "met" : "NOT met"}`);
} else {
  console.error(`unknown benchmark "${which}"; available: fits, native, register, calibrate, stack, tbqr, distributed`);
  process.exit(1);
}
