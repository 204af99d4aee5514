/**
 * Drizzle drops of one frame's source rows into one band of the output grid — twin of native/src/drizzle.rs
 * (the same f64 operations in the same order: the same bits). `p` is the parameter block of
 * {@link DRIZZLE_PARAMS} (contract.ts). Returns the number of values rejected against the 1× stack.
 */
const PATTERNS = [
  [0, 1, 1, 2],
  [1, 0, 2, 1],
  [1, 2, 0, 1],
  [2, 1, 1, 0],
];
const round = (x: number) => Math.floor(x + 0.5);

export function drizzleDeposit(
  src: Float32Array,
  sw: number,
  p: Float64Array,
  num: Float64Array,
  den: Float64Array,
  rf: Float32Array,
): number {
  const s = p[9]!,
    half = p[10]!;
  const srcY0 = p[11]!,
    rowFrom = p[12]!,
    rowTo = p[13]!;
  const bandY0 = p[14]!,
    bandRows = p[15]!,
    wo = p[16]!;
  const a = p[17]!,
    b = p[18]!,
    w = p[19]!,
    sig = p[20]!,
    lowT = p[21]!,
    highT = p[22]!;
  const cfa = p[23]!,
    ox = p[24]!,
    oy = p[25]!,
    ch = p[26]!;
  const refY0 = p[27]!,
    refW = p[28]!,
    refRows = p[29]!;
  const pat = cfa >= 0 ? PATTERNS[cfa]! : undefined;
  const blot = refRows > 0;
  let rejected = 0;
  for (let y = rowFrom; y < rowTo; y++) {
    const row = (y - srcY0) * sw;
    for (let x = 0; x < sw; x++) {
      if (pat && pat[((y + oy) & 1) * 2 + ((x + ox) & 1)] !== ch) continue;
      const v = src[row + x]!;
      if (!Number.isFinite(v)) continue;
      const q = p[6]! * x + p[7]! * y + p[8]!;
      const gx = (p[0]! * x + p[1]! * y + p[2]!) / q,
        gy = (p[3]! * x + p[4]! * y + p[5]!) / q;
      const u = (gx + 0.5) * s - 0.5,
        vv = (gy + 0.5) * s - 0.5;
      if (vv + half < bandY0 - 0.5 || vv - half > bandY0 + bandRows - 0.5) continue;
      const xv = a * v + b;
      if (blot) {
        const x0 = Math.floor(gx),
          yy0 = Math.floor(gy) - refY0;
        if (x0 >= 0 && x0 + 1 < refW && yy0 >= 0 && yy0 + 1 < refRows) {
          const fx = gx - x0,
            fy = gy - refY0 - yy0;
          const at = (yy: number, xx: number) => rf[yy * refW + xx]!;
          const c00 = at(yy0, x0),
            c01 = at(yy0, x0 + 1),
            c10 = at(yy0 + 1, x0),
            c11 = at(yy0 + 1, x0 + 1);
          // Rust's f64::min/max: a NaN operand is ignored (m is NaN then anyway, and nothing is rejected).
          const mn = (l: number, r: number) => (r < l || l !== l ? r : l),
            mx = (l: number, r: number) => (r > l || l !== l ? r : l);
          let lo = mn(mn(mn(c00, c01), c10), c11),
            hi = mx(mx(mx(c00, c01), c10), c11);
          if (x0 >= 1 && x0 + 2 < refW && yy0 >= 1 && yy0 + 2 < refRows)
            for (let yy = yy0 - 1; yy <= yy0 + 2; yy++)
              for (let xx = x0 - 1; xx <= x0 + 2; xx++) {
                const t = at(yy, xx);
                if (t < lo) lo = t;
                if (t > hi) hi = t;
              }
          const m = (1 - fy) * ((1 - fx) * c00 + fx * c01) + fy * ((1 - fx) * c10 + fx * c11);
          if (Number.isFinite(m)) {
            const range = hi - lo;
            const tol = Math.sqrt(sig * sig + 1.44 * range * range);
            if (xv < m - lowT * tol || xv > m + highT * tol) {
              rejected++;
              continue;
            }
          }
        }
      }
      if (half === 0) {
        const j = round(u),
          r = round(vv) - bandY0;
        if (j < 0 || j >= wo || r < 0 || r >= bandRows) continue;
        num[r * wo + j] = num[r * wo + j]! + w * xv;
        den[r * wo + j] = den[r * wo + j]! + w;
        continue;
      }
      const jx0 = Math.max(0, round(u - half)),
        jx1 = Math.min(wo - 1, round(u + half)),
        jy0 = Math.max(bandY0, round(vv - half)),
        jy1 = Math.min(bandY0 + bandRows - 1, round(vv + half));
      for (let jy = jy0; jy <= jy1; jy++) {
        const oyy = Math.min(vv + half, jy + 0.5) - Math.max(vv - half, jy - 0.5);
        if (!(oyy > 0)) continue;
        const base = (jy - bandY0) * wo;
        for (let jx = jx0; jx <= jx1; jx++) {
          const oxx = Math.min(u + half, jx + 0.5) - Math.max(u - half, jx - 0.5);
          if (!(oxx > 0)) continue;
          const wa = w * oxx * oyy;
          num[base + jx] = num[base + jx]! + wa * xv;
          den[base + jx] = den[base + jx]! + wa;
        }
      }
    }
  }
  return rejected;
}
