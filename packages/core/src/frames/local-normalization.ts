/**
 * `stacking.normalization: local`: per frame a smooth map of scale and offset onto a clean reference,
 *
 *   x' = s_f(x, y) · (x − K_f) + K_f + o_f(x, y)   (K_f the frame's sky level),
 *
 * s_f from aperture photometry of the same stars in every frame (registered frames share their positions:
 * a cloud or haze over part of a frame dims its stars there), o_f from the sky levels of a grid of boxes
 * (a moon, a light dome or a sky glow that moves through the night). Both are low-degree polynomials in the
 * frame's coordinates — a few numbers per frame, not a frame — fitted robustly, so one box over a satellite
 * trail or one star on a cosmic does not bend them.
 */
import { LeastSquares } from "../registration/geometry.js";
import { MAD_TO_SIGMA, median } from "../util/stats.js";

/** Sky levels of a frame on a grid of square boxes (`normalization: local`). */
export interface SkyGrid {
  nx: number;
  ny: number;
  box: number;
  /** Row-major, NaN where a box has fewer than a quarter of its pixels finite. */
  values: number[];
}

/**
 * The sky level of each `box`-px box of a plane (the last row/column of boxes takes the remainder): the
 * median of its finite pixels after two clips at ±3σ (1.4826·MAD) about the median — stars, their halos
 * and hot pixels out; a faint nebula stays (it is in every frame, so it cancels between frames).
 */
export function skyGrid(plane: Float32Array, width: number, height: number, box: number): SkyGrid {
  const nx = Math.max(1, Math.round(width / box)),
    ny = Math.max(1, Math.round(height / box));
  const values: number[] = [];
  const buf = new Float64Array(Math.ceil(width / nx + 1) * Math.ceil(height / ny + 1)),
    dev = new Float64Array(buf.length),
    work = new Float64Array(buf.length);
  for (let j = 0; j < ny; j++)
    for (let i = 0; i < nx; i++) {
      const x0 = Math.floor((i * width) / nx),
        x1 = Math.floor(((i + 1) * width) / nx),
        y0 = Math.floor((j * height) / ny),
        y1 = Math.floor(((j + 1) * height) / ny);
      let k = 0;
      for (let y = y0; y < y1; y++)
        for (let x = x0; x < x1; x++) {
          const v = plane[y * width + x]!;
          if (Number.isFinite(v)) buf[k++] = v;
        }
      if (k < ((x1 - x0) * (y1 - y0)) / 4) {
        values.push(NaN);
        continue;
      }
      // The same medians as util/stats' median (a sort), by selection in scratch arrays: 2.8 s → well under
      // a second per 1080 × 1920 plane, none of it allocation.
      for (let pass = 0; pass < 2; pass++) {
        const m = selectMedian(work, buf, k);
        for (let q = 0; q < k; q++) dev[q] = Math.abs(buf[q]! - m);
        const s = MAD_TO_SIGMA * selectMedian(work, dev, k);
        if (!(s > 0)) break;
        let kept = 0;
        for (let q = 0; q < k; q++) if (Math.abs(buf[q]! - m) <= 3 * s) buf[kept++] = buf[q]!;
        k = kept;
      }
      values.push(selectMedian(work, buf, k));
    }
  return { nx, ny, box, values };
}

/**
 * The median of the first n values of `v` (finite; the mean of the two middle ones for an even n) — the value
 * util/stats' median gives — by quickselect on a copy in `work` (v is not reordered).
 */
function selectMedian(work: Float64Array, v: Float64Array, n: number): number {
  if (n === 0) return NaN;
  work.set(v.subarray(0, n));
  const kth = (k: number, lo0: number): number => {
    let lo = lo0,
      hi = n - 1;
    while (hi > lo) {
      const pivot = work[(lo + hi) >> 1]!;
      let i = lo,
        j = hi;
      while (i <= j) {
        while (work[i]! < pivot) i++;
        while (work[j]! > pivot) j--;
        if (i <= j) {
          const t = work[i]!;
          work[i++] = work[j]!;
          work[j--] = t;
        }
      }
      if (k <= j) hi = j;
      else if (k >= i) lo = i;
      else return work[k]!;
    }
    return work[k]!;
  };
  const h = n >> 1;
  const upper = kth(h, 0);
  if (n % 2) return upper;
  // After the selection every value below index h is ≤ the h-th: the lower middle is their maximum.
  let lower = -Infinity;
  for (let q = 0; q < h; q++) if (work[q]! > lower) lower = work[q]!;
  return (lower + upper) / 2;
}

/** The exponents (a, b) of the terms u^a·v^b of a degree-d polynomial, in a fixed order. */
function polyTerms(d: number): [number, number][] {
  const t: [number, number][] = [];
  for (let k = 0; k <= d; k++) for (let b = 0; b <= k; b++) t.push([k - b, b]);
  return t;
}

/** A polynomial surface's value at (u, v) (a {@link FrameSurfaces} frame's coefficients of this degree). */
export function surfaceValue(degree: number, c: readonly number[], u: number, v: number): number {
  return surfaceAt(polyTerms(degree), c, u, v);
}

/**
 * A polynomial surface along row y of a width × height frame, at every pixel centre
 * (u = (x + ½)/width − ½, v = (y + ½)/height − ½), into `out` (length ≥ width).
 */
export function surfaceRow(degree: number, c: readonly number[], y: number, width: number, height: number, out: Float64Array): void {
  const terms = polyTerms(degree);
  const rowC = new Float64Array(degree + 1);
  rowCoefficients(terms, c, (y + 0.5) / height - 0.5, rowC);
  for (let x = 0; x < width; x++) {
    const u = (x + 0.5) / width - 0.5;
    let s = 0;
    for (let a = degree; a >= 0; a--) s = s * u + rowC[a]!;
    out[x] = s;
  }
}

function surfaceAt(terms: readonly [number, number][], c: readonly number[], u: number, v: number): number {
  let s = 0;
  for (let k = 0; k < terms.length; k++) s += c[k]! * u ** terms[k]![0] * v ** terms[k]![1];
  return s;
}

/** A point (u, v) with a value z and a weight w for the surface fits. */
type Point = [u: number, v: number, z: number, w: number];

/** Weighted least-squares coefficients of `terms` through the points; the weighted mean alone when singular. */
function fitSurface(points: readonly Point[], terms: readonly [number, number][]): number[] {
  const ls = new LeastSquares(terms.length);
  for (const [u, v, z, w] of points) {
    const r = Math.sqrt(w);
    ls.add(
      terms.map(([a, b]) => r * u ** a * v ** b),
      r * z,
    );
  }
  const sw = points.reduce((s, p) => s + p[3], 0);
  return ls.solve() ?? terms.map((_, k) => (k === 0 && sw > 0 ? points.reduce((s, p) => s + p[2] * p[3], 0) / sw : 0));
}

/**
 * A robust surface through the points: a first weighted fit, then a second without the points more than 3σ
 * (1.4826·MAD of the residuals, each scaled by √(w / median w), so a faint star's larger scatter is not
 * taken for an outlier) off it. With fewer points than terms: the median of z as a constant.
 */
function robustSurface(points: readonly Point[], terms: readonly [number, number][]): number[] {
  if (points.length < terms.length) return terms.map((_, k) => (k === 0 && points.length ? median(points.map((p) => p[2])) : 0));
  let c = fitSurface(points, terms);
  const wm = median(points.map((p) => p[3]));
  const res = points.map(([u, v, z, w]) => (z - surfaceAt(terms, c, u, v)) * Math.sqrt(w / wm));
  const mr = median(res);
  const sd = MAD_TO_SIGMA * median(res.map((r) => Math.abs(r - mr)));
  const kept = sd > 0 ? points.filter((_, i) => Math.abs(res[i]! - mr) <= 3 * sd) : points;
  if (kept.length >= terms.length && kept.length < points.length) c = fitSurface(kept, terms);
  return c;
}

/** Per frame a smooth surface, a polynomial in the frame's coordinates u = x/W − ½, v = y/H − ½ (pixel centres). */
export interface FrameSurfaces {
  /** Polynomial degree (terms u^a·v^b, a + b ≤ degree, in the order k = 0…: 1, u, v, u², uv, v², u³, …). */
  degree: number;
  /** Per frame, the surface's coefficients. */
  coefficients: number[][];
  /** The frames the reference was built from or levelled to (0-based). */
  reference: number[];
}

/** The frames' local normalisation (one channel): per frame the offset surface o_f and, where stars allow, the scale surface ln s_f. */
export interface LocalNormalization extends FrameSurfaces {
  /** Boxes of the sky grid the offsets were fitted on. */
  nx: number;
  ny: number;
  /**
   * ln s_f per frame (s_f multiplies the frame before its offset is added), fitted on `stars` photometry
   * stars; absent where fewer than 5 stars were measured in most frames (scale 1: offsets only).
   */
  scale?: FrameSurfaces & {
    stars: number;
    /** Per frame, the level K_f the scale is applied about: x' = s_f·(x − K_f) + K_f + o_f. */
    pivot: number[];
  };
}

/** Aperture fluxes of the photometry stars in every frame (NaN where not measured), for the scale maps. */
export interface LocalPhotometry {
  stars: readonly { x: number; y: number }[];
  /** Per frame, per star. */
  fluxes: readonly ArrayLike<number>[];
  width: number;
  height: number;
}

/**
 * Order frames by how flat their deviation from a common pattern is, fit each of the flattest fifth (at
 * least 3) onto the flattest, and take the per-point median: a clean reference with the flattest frame's
 * shape (not a mix of several frames' gradients, which would put every direction into every frame) and
 * any one frame's defect voted out. `values[f][p]` per frame and point; returns the reference per point
 * and the frames it was built from.
 */
function cleanReference(
  values: readonly ArrayLike<number>[],
  points: readonly { u: number; v: number; w: number }[],
  terms: readonly [number, number][],
  pattern: readonly number[],
): { ref: number[]; best: number[] } {
  const N = values.length,
    P = points.length;
  const dev = (f: number) => {
    const d: number[] = [];
    for (let p = 0; p < P; p++) {
      const x = values[f]![p]! - pattern[p]!;
      if (Number.isFinite(x)) d.push(x);
    }
    return d;
  };
  const spread = Array.from({ length: N }, (_, f) => {
    const d = dev(f);
    if (d.length === 0) return Infinity;
    const m = median(d);
    return median(d.map((x) => Math.abs(x - m)));
  });
  const order = [...Array(N).keys()].sort((a, b) => spread[a]! - spread[b]! || a - b);
  const best = order.slice(0, Math.min(N, Math.max(3, Math.round(N / 5))));
  const anchor = values[best[0]!]!;
  const aligned = best.map((f) => {
    const c = fitOnto(values[f]!, anchor, points, terms);
    return Array.from({ length: P }, (_, p) => values[f]![p]! + surfaceAt(terms, c, points[p]!.u, points[p]!.v));
  });
  const ref = Array.from({ length: P }, (_, p) => {
    const v = aligned.map((a) => a[p]!).filter(Number.isFinite);
    return v.length ? median(v) : NaN;
  });
  return { ref, best: [...best].sort((a, b) => a - b) };
}

/** The robust surface that takes `values` onto `target` (over the points both have). */
function fitOnto(
  values: ArrayLike<number>,
  target: ArrayLike<number>,
  points: readonly { u: number; v: number; w: number }[],
  terms: readonly [number, number][],
): number[] {
  const pts: Point[] = [];
  points.forEach((q, p) => {
    const z = target[p]! - values[p]!;
    if (Number.isFinite(z)) pts.push([q.u, q.v, z, q.w]);
  });
  return robustSurface(pts, terms);
}

/**
 * ln s_f per frame from the photometry stars' fluxes: s_f(x, y) takes frame f's star fluxes onto a clean
 * reference, levelled to the clearest frames (the stack has a clear frame's fluxes). The reference is the
 * stars' median ln flux over all frames less the frames' consensus shape (see referenceFrom): unlike the sky
 * (where the flattest frame's box levels are nearly noiseless), one frame's star fluxes carry percent-level
 * noise that a single reference frame would pass into every frame's map. Stars weigh by their own scatter
 * over the frames.
 * Degree 2 with ≥ 60 stars, 1 with ≥ 20, a constant with ≥ 5: clouds and haze vary smoothly over a frame, and a surface through a few
 * dozen stars must not follow their noise. Stars measured in fewer than half the frames (at an edge of the
 * registered footprint) are left out. Undefined with fewer than 5 usable stars.
 */
export function localScales(ph: LocalPhotometry): (FrameSurfaces & { stars: number }) | undefined {
  const N = ph.fluxes.length;
  const all = ph.stars.map((s, k) => {
    const l: number[] = [];
    for (let f = 0; f < N; f++) {
      const F = ph.fluxes[f]![k]!;
      if (F > 0 && Number.isFinite(F)) l.push(Math.log(F));
    }
    return { s, k, n: l.length, p: l.length ? median(l) : NaN };
  });
  const use = all.filter((a) => a.n >= N / 2 && Number.isFinite(a.p));
  if (use.length < 5) return undefined;
  const degree = use.length >= 60 ? 2 : use.length >= 20 ? 1 : 0;
  const terms = polyTerms(degree);
  const values = ph.fluxes.map((fl) =>
    use.map((a) => {
      const F = fl[a.k]!;
      return F > 0 && Number.isFinite(F) ? Math.log(F) : NaN;
    }),
  );
  const at = (w: readonly number[]) =>
    use.map((a, i) => ({ u: (a.s.x + 0.5) / ph.width - 0.5, v: (a.s.y + 0.5) / ph.height - 0.5, w: w[i]! }));
  /**
   * Every frame fitted onto `target`; the consensus shape (per term, the median over the frames of their
   * surfaces' non-constant coefficients) taken out of the target: the clean reference. Frames under clear
   * sky share one shape relative to the median pattern (the tilt the cloudy frames put into it); a cloud
   * gives its frame a shape of its own. So the consensus is the clear frames' shape as long as no single
   * cloud direction holds most frames — where a per-star median of aligned frames (tried first) kept
   * the pattern's tilt: every aligned frame had been given the pattern's shape.
   */
  const referenceFrom = (target: readonly number[], points: ReturnType<typeof at>) => {
    const fits = values.map((v) => fitOnto(v, target, points, terms));
    const consensus = terms.map((_, k) => (k === 0 ? 0 : median(fits.map((c) => c[k]!))));
    const ref = target.map((x, p) => x - surfaceAt(terms, consensus, points[p]!.u, points[p]!.v));
    const aligned = values.map((v, f) => v.map((x, p) => x + surfaceAt(terms, fits[f]!, points[p]!.u, points[p]!.v)));
    return { aligned, ref };
  };
  // Pass 1, each star weighing by its flux (capped at the 90th percentile), onto the stars' median pattern
  // (the median over all frames: the stars' noise averages out, where one "best" frame's noise, a percent or
  // more per star, would tilt every frame's map the same way).
  const flux = use.map((a) => Math.exp(a.p));
  const cap = [...flux].sort((x, y) => x - y)[Math.floor(0.9 * (flux.length - 1))]!;
  const pattern = use.map((a) => a.p);
  const first = referenceFrom(pattern, at(flux.map((F) => Math.min(F, cap) / cap)));
  // Pass 2: each star weighs by its own measured scatter over the frames about the pattern, each frame
  // aligned (1/variance, capped at 10× the median weight): a star near a brighter one, on the nebula or
  // simply faint counts for what it is worth, whatever its flux says.
  const variance = use.map((_, p) => {
    const r = first.aligned.map((a) => a[p]! - pattern[p]!).filter(Number.isFinite);
    const m = median(r);
    return (MAD_TO_SIGMA * median(r.map((x) => Math.abs(x - m)))) ** 2;
  });
  const wRaw = variance.map((v) => (v > 0 ? 1 / v : NaN));
  const wMed = median(wRaw.filter(Number.isFinite));
  const points = at(wRaw.map((w) => (Number.isFinite(w) ? Math.min(w, 10 * wMed) : 10 * wMed) / wMed));
  const { ref } = referenceFrom(pattern, points);
  const coefficients = values.map((v) => fitOnto(v, ref, points, terms));
  // Levelled to the clearest fifth of the frames (at least 3; the median of their mean ln scale over the
  // stars): clouds and haze only ever dim a frame, so the stack keeps a clear frame's fluxes. (Levelling to
  // frame 0 instead passed frame 0's own photometric noise, 0.5–1 % with 30 stars, to every frame, and a
  // cloudy frame 0 would dim the whole stack.)
  const mean = coefficients.map((c) => points.reduce((sum, q) => sum + surfaceAt(terms, c, q.u, q.v), 0) / points.length);
  const clearest = [...mean.keys()].sort((x, y) => mean[x]! - mean[y]! || x - y).slice(0, Math.min(N, Math.max(3, Math.round(N / 5))));
  const shift = median(clearest.map((f) => mean[f]!));
  for (const c of coefficients) c[0] = c[0]! - shift;
  return { degree, coefficients, reference: [...clearest].sort((x, y) => x - y), stars: use.length };
}

/**
 * `normalization: local` for one channel. Scale first (localScales, when photometry is given and enough
 * stars were measured), then the offsets on the scaled sky grids: each frame's box levels B_f(b), multiplied
 * by s_f at the box centre, are fitted onto a clean reference sky R(b) — the flattest frame's (the frame
 * whose box levels spread least about their own median), cleaned with the next flattest (cleanReference),
 * levelled to frame 0's sky as `additive` levels every frame to it — so o_f(b) = R(b) − s_f(b)·B_f(b): the
 * frame's own gradient out, the reference's sky in; a nebula is in both at the same (scaled) brightness and
 * cancels. The offsets are a polynomial surface of degree 3 where there are ≥ 20 boxes (fewer terms on
 * smaller grids; boxes off by > 3σ left out of a second fit): sky gradients are smooth, and the fit
 * averages the boxes' own noise instead of following it.
 */
export function localNormalization(grids: readonly SkyGrid[], photometry?: LocalPhotometry): LocalNormalization {
  const { nx, ny } = grids[0]!;
  const nb = nx * ny;
  const scale = photometry ? localScales(photometry) : undefined;
  let degree = 3;
  while (degree > 0 && ((degree + 1) * (degree + 2)) / 2 > nb / 2) degree--;
  const terms = polyTerms(degree);
  const points = Array.from({ length: nb }, (_, b) => ({ u: ((b % nx) + 0.5) / nx - 0.5, v: (Math.floor(b / nx) + 0.5) / ny - 0.5, w: 1 }));
  const sTerms = scale ? polyTerms(scale.degree) : [];
  // The scale multiplies the frame about its own sky level K_f (x − K_f is signal plus the gradient, a few
  // percent of the sky at most): scaling the whole value would make the offsets cancel s_f·K_f, ~100× larger
  // than the gradients, so any misfit of that product would land in the stack.
  const pivot = grids.map((g) => median(g.values.filter(Number.isFinite)));
  const scaled = grids.map((g, f) =>
    scale
      ? g.values.map(
          (v, b) => pivot[f]! + (v - pivot[f]!) * Math.exp(surfaceAt(sTerms, scale.coefficients[f]!, points[b]!.u, points[b]!.v)),
        )
      : g.values,
  );
  const level = scaled.map((g) => median(g.filter(Number.isFinite)));
  const pattern = new Array<number>(nb).fill(0);
  const { ref: ref0, best } = cleanReference(
    scaled.map((g, f) => g.map((v) => v - level[f]!)),
    points,
    terms,
    pattern,
  );
  // Levelled to frame 0's sky (a constant: the reference keeps the flattest frame's shape).
  const ref = ref0.map((r) => r + level[0]!);
  const coefficients = scaled.map((g) => fitOnto(g, ref, points, terms));
  return { nx, ny, degree, coefficients, reference: best, ...(scale ? { scale: { ...scale, pivot } } : {}) };
}

/**
 * Frame f's scale at the centre of the frame's sky grid, averaged over the grid's boxes: what `weighting:
 * noise` multiplies the frame's σ by.
 */
export function meanLocalScale(model: LocalNormalization, f: number): number {
  if (!model.scale) return 1;
  const terms = polyTerms(model.scale.degree);
  let s = 0;
  for (let j = 0; j < model.ny; j++)
    for (let i = 0; i < model.nx; i++)
      s += Math.exp(surfaceAt(terms, model.scale.coefficients[f]!, (i + 0.5) / model.nx - 0.5, (j + 0.5) / model.ny - 0.5));
  return s / (model.nx * model.ny);
}

/** A polynomial surface along one row: per power a of u, Σ_b c_ab·v^b (so the value at u is Σ_a rowC[a]·u^a). */
function rowCoefficients(terms: readonly [number, number][], c: readonly number[], v: number, rowC: Float64Array): void {
  rowC.fill(0);
  terms.forEach(([a, b], k) => (rowC[a] = rowC[a]! + c[k]! * v ** b));
}

/**
 * Frame f's local normalisation on rows [y0, y0 + rows) of a width × height plane, in place:
 * x' = s_f·(x − K_f) + K_f + o_f (NaN stays NaN).
 */
export function applyLocalNormalization(
  data: Float32Array,
  width: number,
  height: number,
  y0: number,
  rows: number,
  model: LocalNormalization,
  f: number,
): void {
  const sc = model.scale?.coefficients[f],
    K = model.scale?.pivot[f] ?? 0;
  const off = new Float64Array(width),
    ln = new Float64Array(width);
  for (let r = 0; r < rows; r++) {
    surfaceRow(model.degree, model.coefficients[f]!, y0 + r, width, height, off);
    if (sc) surfaceRow(model.scale!.degree, sc, y0 + r, width, height, ln);
    const base = r * width;
    if (sc) for (let x = 0; x < width; x++) data[base + x] = Math.exp(ln[x]!) * (data[base + x]! - K) + K + off[x]!;
    else for (let x = 0; x < width; x++) data[base + x] = data[base + x]! + off[x]!;
  }
}
