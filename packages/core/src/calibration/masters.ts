/**
 * Master building with the built-in `native` calibration engine: winsorized (or, with
 * `calibration.rejection: sigma`, plain) sigma rejection (3, 3) mean of
 * the raw frames through recon-native's combine, streamed in bands of rows so memory stays within
 * `runtime.memory_budget` whatever the number of frames. Flats are bias-subtracted and each divided by its
 * own median first, and the master flat is normalised to mean 1 (so a light is simply divided by it).
 *
 * The master's header records what built it (TCINHASH: the raw frames' identities; TCRECIPE: the recipe
 * and engine version), so a later plan can tell a stale master. Writes are atomic (temporary file +
 * rename): two runs building the same master at once both write complete files and the last rename wins.
 */
import { basename } from "node:path";
import { loadRecon } from "@tile-compile/recon-native";
import { TileCompileError } from "../errors/index.js";
import { FitsFile, readFitsImage } from "@tile-compile/fits";
import { FitsWriter } from "@tile-compile/fits";
import { FitsHeader } from "@tile-compile/fits";
import type { MasterPlan } from "../jobs/plan.js";
import { recipeOf } from "../jobs/plan.js";
import { bandRows } from "../util/bands.js";
import type { MasterRejection } from "../config/schema.js";

export interface BuildMasterOptions {
  /** Flats: the offset master subtracted from each raw flat (a flat-dark master, or the bias). */
  bias?: string;
  /** Flats: a constant offset (ADU) when no offset master is given. */
  pedestal?: number;
  engine: string;
  /** Pixel rejection (3σ low and high); default winsorized. */
  rejection?: MasterRejection;
  memoryBudgetBytes: number;
  signal?: AbortSignal;
  history?: string[];
  onProgress?: (fraction: number) => void;
}

/**
 * The header of a master, whichever engine combined it: instrument keywords of the first raw frame,
 * IMAGETYP, mean EXPTIME and CCD-TEMP (with the spread), NCOMBINE, and the identity (TCINHASH) and recipe
 * (TCRECIPE) hashes a later plan compares to tell a stale master.
 */
export function masterHeader(
  kind: "bias" | "dark" | "flat",
  raw: readonly FitsHeader[],
  ids: { inputHash?: string; recipeHash: string },
): FitsHeader {
  const header = new FitsHeader();
  const h0 = raw[0]!;
  for (const k of [
    "INSTRUME",
    "TELESCOP",
    "XBINNING",
    "YBINNING",
    "GAIN",
    "OFFSET",
    "FILTER",
    "BAYERPAT",
    "XBAYROFF",
    "YBAYROFF",
    "XPIXSZ",
    "YPIXSZ",
  ]) {
    const v = h0.get(k);
    if (v !== undefined) header.set(k, v);
  }
  header.set("IMAGETYP", kind === "bias" ? "Master Bias" : kind === "dark" ? "Master Dark" : "Master Flat");
  const exps = raw.map((h) => h.getNumber("EXPTIME") ?? h.getNumber("EXPOSURE")).filter((v): v is number => v !== undefined);
  if (exps.length && kind !== "bias")
    header.set("EXPTIME", exps.reduce((a, b) => a + b, 0) / exps.length, "[s] mean exposure of the inputs");
  const temps = raw.map((h) => h.getNumber("CCD-TEMP") ?? h.getNumber("CCD_TEMP")).filter((v): v is number => v !== undefined);
  if (temps.length) {
    header.set(
      "CCD-TEMP",
      Number((temps.reduce((a, b) => a + b, 0) / temps.length).toFixed(3)),
      "[C] mean sensor temperature of the inputs",
    );
    header.set("TEMPSPRD", Number((Math.max(...temps) - Math.min(...temps)).toFixed(3)), "[C] max - min sensor temperature of the inputs");
  }
  header.set("NCOMBINE", raw.length, "raw frames combined");
  header.set("TCINHASH", ids.inputHash ?? "", "identity hash of the raw frames (names, sizes, times)");
  header.set("TCRECIPE", ids.recipeHash, "hash of the recipe and engine version");
  return header;
}

/**
 * Rows per band when combining `frames` raw frames of `width` × `height`: N frames × rows × width × 4
 * bytes, plus the same again for the combine, within the memory budget and the cache-sized band (see
 * util/bands.ts).
 */
export function masterBandRows(frames: number, width: number, height: number, memoryBudgetBytes: number): number {
  return bandRows(frames * width * 4 * 2 + width * 8, height, memoryBudgetBytes);
}

export async function buildMaster(m: MasterPlan, o: BuildMasterOptions): Promise<{ path: string; frames: number }> {
  if (m.inputs.length === 0) throw new TileCompileError("TC_INPUT_INVALID", { input: m.name, reason: "no raw frames to build it from" });
  const recon = loadRecon();
  const files = await Promise.all(m.inputs.map((p) => FitsFile.open(p)));
  try {
    const readers = await Promise.all(files.map((f) => f.image()));
    const { width, height, channels } = readers[0]!;
    for (const [i, r] of readers.entries()) {
      if (r.width !== width || r.height !== height || r.channels !== channels) {
        throw new TileCompileError("TC_INPUT_INVALID", {
          input: m.inputs[i]!,
          reason: `is ${r.width}×${r.height}×${r.channels}, the other frames of ${m.name} are ${width}×${height}×${channels}`,
        });
      }
    }
    // Flats: per-frame bias and median, measured first (one frame in memory at a time).
    let bias: Float32Array | undefined;
    const scale = new Float64Array(readers.length).fill(1);
    const rawMedians: number[] = [],
      offsetMedians: number[] = [];
    if (m.kind === "flat") {
      if (o.bias) {
        const b = await readFitsImage(o.bias, { ...(o.signal ? { signal: o.signal } : {}) });
        if (b.width !== width || b.height !== height)
          throw new TileCompileError("TC_INPUT_INVALID", {
            input: o.bias,
            reason: `the master bias is ${b.width}×${b.height}, the flats ${width}×${height}`,
          });
        bias = b.data;
      }
      for (const [i, r] of readers.entries()) {
        const d = await r.readAll(o.signal ? { signal: o.signal } : {});
        rawMedians.push((await recon.robustStats(d, { iterations: 0, ...(o.signal ? { signal: o.signal } : {}) })).median);
        if (bias) for (let k = 0; k < d.length; k++) d[k] = d[k]! - bias[k % bias.length]!;
        else if (o.pedestal !== undefined) for (let k = 0; k < d.length; k++) d[k] = d[k]! - o.pedestal;
        const med = (await recon.robustStats(d, { iterations: 0, ...(o.signal ? { signal: o.signal } : {}) })).median;
        if (!(med > 0))
          throw new TileCompileError("TC_INPUT_INVALID", {
            input: m.inputs[i]!,
            reason: `flat median ${med} after bias subtraction is not positive (wrong frame type or over-subtracted bias?)`,
          });
        scale[i] = 1 / med;
        offsetMedians.push(med);
      }
    }
    const header = masterHeader(
      m.kind,
      readers.map((r) => r.header),
      { recipeHash: m.recipeHash, ...(m.inputHash ? { inputHash: m.inputHash } : {}) },
    );
    if (m.kind === "flat") {
      // Exposure of the raw flats, for the calibration health check (saturated / under-exposed flats).
      const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
      header.set("FLATRAW", Number(mean(rawMedians).toFixed(2)), "[ADU] mean median of the raw flats");
      header.set("FLATSIG", Number(mean(offsetMedians).toFixed(2)), "[ADU] mean median of the flats less their offset");
      header.set("FLATMAXR", Number(Math.max(...rawMedians).toFixed(2)), "[ADU] highest raw flat median");
      header.set("FLATBPX", readers[0]!.header.getNumber("BITPIX") ?? 16, "BITPIX of the raw flats");
    }
    const history = [
      ...(o.history ?? []),
      `${m.kind} master: ${recipeOf(m.kind, o.engine, o.rejection)}`,
      `inputs: ${m.inputs
        .map((p) => basename(p))
        .join(", ")
        .slice(0, 2000)}`,
    ];
    const writer = await FitsWriter.create(
      m.path,
      { width, height, channels },
      { header, history, ...(o.signal ? { signal: o.signal } : {}) },
    );
    try {
      const rows = masterBandRows(readers.length, width, height, o.memoryBudgetBytes);
      let flatSum = 0,
        flatCount = 0;
      const planes: Float32Array[] = [];
      // Two buffers per frame, reused band after band (fresh ones cost page zeroing and GC per band): the
      // next band is read and decoded while the native combine (off the main thread) works on this one.
      const buffers = [0, 1].map(() => readers.map(() => new Float32Array(rows * width)));
      let combining: Promise<void> | undefined;
      try {
        let k = 0;
        for (let c = 0; c < channels; c++) {
          const plane = m.kind === "flat" ? new Float32Array(width * height) : undefined;
          for (let y = 0; y < height; y += rows, k++) {
            o.signal?.throwIfAborted();
            const n = Math.min(rows, height - y);
            const set = buffers[k & 1]!;
            const band = await Promise.all(
              readers.map((r, i) => r.readRows(y, n, c, n === rows ? set[i] : set[i]!.subarray(0, n * width))),
            );
            if (m.kind === "flat") {
              for (const [i, b] of band.entries()) {
                const ped = bias ? 0 : (o.pedestal ?? 0);
                for (let q = 0; q < b.length; q++) b[q] = (b[q]! - (bias ? bias[c * width * height + y * width + q]! : ped)) * scale[i]!;
              }
            }
            // The previous band's combine and write finish first: bands are written in order.
            await combining;
            combining = (async () => {
              const { data } = await recon.combine(band, {
                rejection: o.rejection ?? "winsorized",
                low: 3,
                high: 3,
                ...(o.signal ? { signal: o.signal } : {}),
              });
              if (plane) {
                plane.set(data, y * width);
                for (const v of data)
                  if (Number.isFinite(v)) {
                    flatSum += v;
                    flatCount++;
                  }
              } else await writer.write(data);
              o.onProgress?.((c * height + y + n) / (channels * height));
            })();
          }
          await combining;
          combining = undefined;
          if (plane) planes.push(plane);
        }
      } catch (e) {
        // A band combine still running must not end as an unhandled rejection.
        await combining?.catch(() => {});
        throw e;
      }
      if (m.kind === "flat") {
        // Normalise to mean 1 so calibration is a plain division.
        const mean = flatSum / flatCount;
        for (const p of planes) {
          for (let k = 0; k < p.length; k++) p[k] = p[k]! / mean;
          await writer.write(p);
        }
      }
      await writer.commit();
    } catch (e) {
      await writer.abort();
      throw e;
    }
    return { path: m.path, frames: readers.length };
  } finally {
    await Promise.all(files.map((f) => f.close()));
  }
}
