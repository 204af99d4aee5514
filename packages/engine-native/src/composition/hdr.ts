/**
 * HDR blend of one filter's stacks at several exposures (`hdr.blend: true`). The shorter stack, already
 * registered onto the longest, is linearly matched to it — scale = flux ratio over bright unsaturated
 * structure and its surroundings, offset from the background (median of the pixels below the 40th
 * percentile) — and replaces the long stack where the long one nears its
 * saturation: weight w = smoothstep between 70 % and 90 % of the long stack's maximum. Output: one stack.
 */
import { loadRecon } from "@tile-compile/recon-native";
import { TileCompileError } from "@tile-compile/core";
import { readFitsImage } from "@tile-compile/core";
import { writeFitsImage, type CompositionProvider } from "@tile-compile/core";

export async function blendHdr(
  longPath: string,
  shortPaths: string[],
  output: string,
  signal: AbortSignal,
  history: string[] = [],
): Promise<{ scales: number[] }> {
  const recon = loadRecon();
  const long = await readFitsImage(longPath, { signal });
  const L = long.data;
  let max = -Infinity;
  for (const v of L) if (v > max) max = v;
  const lo = 0.7 * max,
    hi = 0.9 * max;
  const out = Float32Array.from(L);
  const scales: number[] = [];
  for (const sp of shortPaths) {
    const short = await readFitsImage(sp, { signal });
    if (short.width !== long.width || short.height !== long.height || short.channels !== long.channels)
      throw new TileCompileError("TC_INPUT_INVALID", {
        input: sp,
        reason: `is ${short.width}×${short.height}×${short.channels}, the long stack ${long.width}×${long.height}×${long.channels}`,
      });
    const S = short.data;
    // Background offsets, then the scale as the median ratio over well-exposed, unsaturated pixels.
    const bg = async (d: Float32Array) => {
      const s = d.filter((_, i) => i % 7 === 0);
      const [p40] = await recon.percentiles(s, [0.4], { signal });
      return (
        await recon.robustStats(
          s.filter((v) => v <= p40!),
          { iterations: 0, signal },
        )
      ).median;
    };
    const bL = await bg(L),
      bS = await bg(S);
    // Scale = flux ratio over bright, unsaturated structure and its surroundings (a mask of pixels 20 σ
    // above the sky, dilated by 6 px), so PSF differences between the stacks (seeing) cancel out.
    const n = long.width * long.height;
    const sL = (
      await recon.robustStats(
        L.filter((_, i) => i % 7 === 0),
        { iterations: 3, signal },
      )
    ).clippedSigma;
    const core = new Uint8Array(L.length);
    let saturatedNear = false;
    for (let i = 0; i < L.length; i++) if (L[i]! - bL > 20 * sL) core[i] = L[i]! < 0.5 * max ? 1 : 2;
    const W = long.width,
      R = 6;
    let sumL = 0,
      sumS = 0,
      count = 0;
    for (let i = 0; i < L.length; i++) {
      const c = Math.floor(i / n),
        p = i % n,
        x = p % W,
        y = Math.floor(p / W);
      let near = false,
        sat = false;
      for (let dy = -R; dy <= R && !sat; dy += 2)
        for (let dx = -R; dx <= R; dx += 2) {
          const xx = x + dx,
            yy = y + dy;
          if (xx < 0 || yy < 0 || xx >= W || yy >= long.height) continue;
          const q = core[c * n + yy * W + xx]!;
          if (q === 2) {
            sat = true;
            break;
          }
          if (q === 1) near = true;
        }
      if (sat) {
        saturatedNear = true;
        continue;
      }
      const l = L[i]! - bL,
        sv = S[i]! - bS;
      if (near && Number.isFinite(l) && Number.isFinite(sv)) {
        sumL += l;
        sumS += sv;
        count++;
      }
    }
    void saturatedNear;
    if (count < 50 || !(sumS > 0))
      throw new TileCompileError("TC_INPUT_INVALID", {
        input: sp,
        reason: "too little unsaturated structure shared with the long stack to match the exposures",
      });
    const a = sumL / sumS;
    scales.push(a);
    for (let i = 0; i < L.length; i++) {
      const t = Math.min(1, Math.max(0, (L[i]! - lo) / (hi - lo)));
      const w = t * t * (3 - 2 * t);
      if (w > 0 && Number.isFinite(S[i]!)) out[i] = (1 - w) * out[i]! + w * (bL + a * (S[i]! - bS));
    }
  }
  const header = long.header.withoutStructure();
  header.set(
    "HDRBLEND",
    `${shortPaths.length + 1} exposures; scales ${scales.map((s) => s.toFixed(4)).join(", ")}`,
    "HDR blend of exposures",
  );
  await writeFitsImage(output, { width: long.width, height: long.height, channels: long.channels, data: out }, { header, history, signal });
  return { scales };
}

/**
 * `composition:hdr`: the exposures of one filter blended into one stack. `channels` names them by their
 * order, longest exposure first ("0", "1", …); the result carries the factor each shorter one was scaled by.
 */
export const nativeHdrComposition: CompositionProvider = {
  async compose(input, ctx) {
    ctx.signal.throwIfAborted();
    const paths = Object.keys(input.channels)
      .sort((a, b) => Number(a) - Number(b))
      .map((k) => input.channels[k]!);
    if (paths.length < 2)
      throw new TileCompileError("TC_INPUT_INVALID", {
        input: "composition:hdr",
        reason: `an HDR blend needs two exposures or more, got ${paths.length}`,
      });
    const { scales } = await blendHdr(paths[0]!, paths.slice(1), input.output, ctx.signal, input.history);
    return { output: input.output, scales };
  },
};
