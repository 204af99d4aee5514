/**
 * Streaming mean stack: frames are read band by band (rows of every frame for one band at a time), so
 * memory is bounded by `runtime.memoryBudgetBytes`, not by the number of frames. NaN pixels are left
 * out of the mean; a pixel NaN in every frame stays NaN. Sums are f64 in a fixed frame order, so the
 * result is bit-identical from run to run.
 */
import { TileCompileError } from "../errors/index.js";
import { FitsFile } from "../fits/reader.js";
import { FitsWriter } from "../fits/writer.js";
import { readFitsHeader, type FitsHeaderSummary } from "../fits/reader.js";
import type { EngineContext, StackingInput, StackingResult } from "../kernel/contracts.js";

/** Provenance keywords of a combined frame: NCOMBINE, STACKCNT, EXPTIME (mean), LIVETIME (sum), DATE-OBS/DATE-END. */
export function combinedKeywords(summaries: FitsHeaderSummary[]): { key: string; value: number | string; comment: string; float?: boolean }[] {
  const out: { key: string; value: number | string; comment: string; float?: boolean }[] = [
    { key: "NCOMBINE", value: summaries.length, comment: "number of frames combined" },
    { key: "STACKCNT", value: summaries.length, comment: "number of frames stacked" },
  ];
  const exps = summaries.map((s) => s.header.getNumber("EXPTIME") ?? s.header.getNumber("EXPOSURE")).filter((v): v is number => v !== undefined);
  if (exps.length === summaries.length && exps.length > 0) {
    const live = exps.reduce((a, b) => a + b, 0);
    out.push({ key: "EXPTIME", value: live / exps.length, comment: "[s] mean exposure of one frame", float: true });
    out.push({ key: "LIVETIME", value: live, comment: "[s] total exposure of all frames", float: true });
  }
  const dates = summaries.map((s) => s.header.getString("DATE-OBS")).filter((d): d is string => !!d).sort();
  if (dates.length > 0) {
    out.push({ key: "DATE-OBS", value: dates[0]!, comment: "start of the first frame" });
    out.push({ key: "DATE-END", value: dates[dates.length - 1]!, comment: "start of the last frame" });
  }
  return out;
}

export async function meanStack(input: StackingInput, ctx: EngineContext): Promise<StackingResult> {
  const { frames } = input;
  if (frames.length === 0) throw new TileCompileError("TC_INPUT_INVALID", { input: "stacking", reason: "no frames to stack" });
  const summaries: FitsHeaderSummary[] = [];
  for (const f of frames) {
    ctx.signal.throwIfAborted();
    summaries.push(await readFitsHeader(f.path));
  }
  const first = summaries[0]!;
  const { width, height, channels } = first;
  for (const s of summaries) {
    if (s.width !== width || s.height !== height || s.channels !== channels) {
      throw new TileCompileError("TC_INPUT_INVALID", {
        file: s.path,
        reason: `is ${s.width}×${s.height}×${s.channels}, but ${first.path} is ${width}×${height}×${channels}; frames of one stack must have the same size`,
        hint: "Register the frames onto one reference first, or stack each size separately.",
      });
    }
  }
  // Per band we hold one band of one frame (f32) plus f64 sums and u32 counts: 4 + 8 + 4 bytes per pixel.
  const bandRows = Math.max(1, Math.min(height, Math.floor(ctx.runtime.memoryBudgetBytes / (width * 16))));
  const header = first.header.clone();
  for (const k of combinedKeywords(summaries)) header.set(k.key, k.value, k.comment, k.float ? { numberFormat: "float" } : undefined);
  const writer = await FitsWriter.create(input.output, { width, height, channels }, { bitpix: -32, header, history: input.history, signal: ctx.signal });
  try {
    const bands = Math.ceil(height / bandRows);
    let done = 0;
    for (let c = 0; c < channels; c++) {
      for (let y0 = 0; y0 < height; y0 += bandRows) {
        const rows = Math.min(bandRows, height - y0);
        const n = rows * width;
        const sum = new Float64Array(n);
        const count = new Uint32Array(n);
        const buf = new Float32Array(n);
        for (const f of frames) {
          ctx.signal.throwIfAborted();
          const file = await FitsFile.open(f.path);
          try {
            await (await file.image(f.hdu)).readRows(y0, rows, c, buf);
          } finally {
            await file.close();
          }
          for (let i = 0; i < n; i++) {
            const v = buf[i]!;
            if (v === v) { sum[i]! += v; count[i]!++; }
          }
        }
        for (let i = 0; i < n; i++) buf[i] = count[i] === 0 ? NaN : sum[i]! / count[i]!;
        await writer.write(buf);
        ctx.progress(++done / (bands * channels), `rows ${y0 + rows}/${height}${channels > 1 ? ` channel ${c + 1}` : ""}`);
      }
    }
    await writer.commit();
  } catch (e) {
    await writer.abort();
    throw e;
  }
  return { frameCount: frames.length, width, height, channels };
}
